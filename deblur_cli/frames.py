"""Image sequences in and out: natural-sorted folders, BT.601 full-range YCbCr, bit depth, alpha.

An image is split into what the network sees (full-range luma in [0, 1]) and what it must not
touch (Cb/Cr, alpha, the sample type); :func:`merge_image` puts them back together. Files are
read and written through cv2.imdecode/imencode on bytes, so any file name works and write
errors surface as ordinary OSErrors. No tensors here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deblur_cli.color import rgb_to_ycbcr, ycbcr_to_rgb
from deblur_cli.errors import InputNotFoundError, InvalidMediaError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Quality for lossy outputs: high, because the point of the tool is detail.
ENCODE_PARAMS = {
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
}
SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key under which frame2 comes before frame10 (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.casefold())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, naturally sorted; hidden files are skipped."""
    folder = Path(folder)
    if not folder.exists():
        raise InputNotFoundError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder} is not a folder (use `deblur video` for a video file)")
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    ]
    if not files:
        kinds = ", ".join(s[1:] for s in IMAGE_SUFFIXES)
        raise InvalidMediaError(f"no images ({kinds}) in {folder}")
    return sorted(files, key=lambda p: natural_key(p.name))


def read_image(path: Path) -> np.ndarray:
    """An image as RGB(A) or gray, in its stored sample type (uint8, uint16 or float32)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InvalidMediaError(f"cannot read {path}: {exc.strerror or exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InvalidMediaError(f"{path} is not a readable image")
    if image.dtype not in SCALES and image.dtype != np.float32:
        raise InvalidMediaError(f"{path}: unsupported sample type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        order = [2, 1, 0, 3][: image.shape[2]]  # OpenCV's BGR(A) -> RGB(A)
        image = image[:, :, order]
    return image


def write_image(path: Path, image: np.ndarray, shown: Path | None = None) -> None:
    """Encode by the file's suffix and write the bytes; failures become OutputError.

    ``shown`` is the name messages use when ``path`` is a temporary file the user never sees.
    """
    shown = shown or path
    if image.ndim == 3:
        order = [2, 1, 0, 3][: image.shape[2]]
        image = np.ascontiguousarray(image[:, :, order])
    ok, encoded = cv2.imencode(
        path.suffix.lower(), image, ENCODE_PARAMS.get(path.suffix.lower(), [])
    )
    if not ok:
        raise OutputError(f"cannot encode {shown.name} as {path.suffix}")
    try:
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from exc


@dataclass
class ImageParts:
    """Everything of an image except its luma: restored luma + these = the output image."""

    dtype: np.dtype
    chroma: tuple[np.ndarray, np.ndarray] | None  # Cb, Cr (None for grayscale)
    alpha: np.ndarray | None


def split_image(image: np.ndarray) -> tuple[np.ndarray, ImageParts]:
    """Image -> (luma in [0, 1] as float32, the parts the network must not touch)."""
    scale = SCALES.get(image.dtype, 1.0)
    if image.ndim == 2:
        return image.astype(np.float32) / scale, ImageParts(image.dtype, None, None)
    if image.ndim != 3 or image.shape[2] not in (2, 3, 4):
        raise InvalidMediaError(f"unsupported image shape {image.shape}")
    alpha = image[:, :, -1].copy() if image.shape[2] in (2, 4) else None
    if image.shape[2] == 2:  # gray + alpha
        return image[:, :, 0].astype(np.float32) / scale, ImageParts(image.dtype, None, alpha)
    rgb = image[:, :, :3].astype(np.float32) / scale
    y, cb, cr = rgb_to_ycbcr(rgb)
    return y, ImageParts(image.dtype, (cb, cr), alpha)


def merge_image(luma: np.ndarray, parts: ImageParts) -> np.ndarray:
    """Inverse of :func:`split_image` with a restored luma plane."""
    channels = luma if parts.chroma is None else ycbcr_to_rgb(luma, *parts.chroma)
    if parts.dtype in SCALES:
        scale = SCALES[parts.dtype]
        channels = np.clip(np.rint(channels * scale), 0, scale).astype(parts.dtype)
    else:
        channels = channels.astype(parts.dtype)
    if parts.alpha is None:
        return channels
    if channels.ndim == 2:
        channels = channels[:, :, None]
    return np.concatenate([channels, parts.alpha[:, :, None]], axis=2)
