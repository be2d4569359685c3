"""Does a model use its neighbour frames well on blur it has not seen? (issue 4 diagnosis)

For each weights file and validation set, on whole clips (Y PSNR of every frame):
- gain with the real 5-frame windows (what `deblur video` does);
- gain when every window holds five copies of its centre frame (no temporal information);
- the worst frame, and the share of frames made more than 1 dB worse.
If the copies beat the real windows, the network fuses neighbours in a way that does not
transfer. Run from the repository root after training/make_data.py:

    python training/fusion_check.py weights/dblrnet-fast.safetensors [more weights...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from deblur_cli.datasets import dvd_sequences, load_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.metrics import psnr
from deblur_cli.weights import load_model

SETS = ("val_other", "val_own")


def unit_psnr(image: np.ndarray, truth: np.ndarray) -> float:
    return psnr(np.clip(np.rint(image * 255), 0, 255), np.rint(truth * 255))


def frame_scores(engine: Deblurrer, data: Path) -> np.ndarray:
    """Rows of (input, real windows, centre copies) PSNR, one per frame."""
    rows = []
    for sequence in dvd_sequences(data, split="all"):
        blurry = [load_luma(p) for p in sequence.blurry]
        sharp = [load_luma(p) for p in sequence.sharp]
        restored = [plane for _, plane in engine.stream(enumerate(blurry))]
        copies = engine.run_windows(np.stack([np.stack([b] * engine.window) for b in blurry]))
        for k, truth in enumerate(sharp):
            rows.append([unit_psnr(x, truth) for x in (blurry[k], restored[k], copies[k])])
    return np.array(rows)


def main(weights: list[str], root: Path = Path("data")) -> None:
    columns = ("weights", "set", "gain, real windows", "gain, centre copies", "worst frame")
    print(f"| {' | '.join(columns)} | frames > 1 dB worse |")
    print("|---|---|---|---|---|---|")
    for path in weights:
        engine = Deblurrer(load_model(path))
        for name in SETS:
            scores = frame_scores(engine, root / name)
            real, copies = scores[:, 1] - scores[:, 0], scores[:, 2] - scores[:, 0]
            print(
                f"| {Path(path).name} | {name} | {real.mean():+.3f} | {copies.mean():+.3f} | "
                f"{real.min():+.2f} | {np.mean(real < -1):.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
