"""Colour conversions between stored pixels and the network's unit-range luma.

The network always sees luma scaled so that black is 0.0 and nominal white is 1.0, whatever the
source: limited-range video (Y in 16..235 at 8 bit, 64..940 at 10 bit), full-range video, or an
image converted with BT.601 full-range YCbCr (the JPEG convention). Keeping this in one place is
what lets the same weights serve 8-bit phone video, 10-bit HDR-less footage and 16-bit PNGs.
"""

from __future__ import annotations

import numpy as np

# BT.601 luma weights, as used by JPEG/JFIF (full range, no offsets on Y).
KR, KG, KB = 0.299, 0.587, 0.114


def _limits(bit_depth: int, full_range: bool) -> tuple[float, float]:
    """Code values of black and nominal white for a luma plane."""
    if full_range:
        return 0.0, float((1 << bit_depth) - 1)
    scale = float(1 << (bit_depth - 8))
    return 16.0 * scale, 235.0 * scale


def luma_to_unit(plane: np.ndarray, bit_depth: int = 8, full_range: bool = False) -> np.ndarray:
    """Stored luma codes (uint8/uint16) -> float32 with black 0.0 and white 1.0.

    Limited-range footer/head room (below 16, above 235) maps slightly outside [0, 1] and is kept,
    so superwhites survive a round trip.
    """
    black, white = _limits(bit_depth, full_range)
    return (plane.astype(np.float32) - black) / (white - black)


def unit_to_luma(unit: np.ndarray, bit_depth: int = 8, full_range: bool = False) -> np.ndarray:
    """Inverse of :func:`luma_to_unit`: rounds and clips to the codes the bit depth can hold."""
    black, white = _limits(bit_depth, full_range)
    codes = np.rint(unit * (white - black) + black)
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    return np.clip(codes, 0, (1 << bit_depth) - 1).astype(dtype)


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float RGB in [0, 1] (H x W x 3) -> full-range Y, Cb, Cr (Cb/Cr centred on 0)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2.0 * (1.0 - KB))
    cr = (r - y) / (2.0 * (1.0 - KR))
    return y.astype(np.float32), cb.astype(np.float32), cr.astype(np.float32)


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; returns float32 H x W x 3, not clipped."""
    r = y + 2.0 * (1.0 - KR) * cr
    b = y + 2.0 * (1.0 - KB) * cb
    g = (y - KR * r - KB * b) / KG
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> BT.601 full-range luma in [0, 1] (what training and metrics use)."""
    return rgb_to_ycbcr(rgb)[0]
