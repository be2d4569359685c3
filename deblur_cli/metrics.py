"""Image and video quality measures used by ``deblur bench`` and by training validation.

All functions take numpy arrays of any numeric type and an explicit ``data_range`` (255 for
8-bit codes, 1.0 for unit-range planes), and compute in float64 so that the result does not
depend on the storage type. Definitions are written out in docs/BENCH.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

# Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
# structural similarity", IEEE TIP 2004: an 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over every sample (pixels and channels)."""
    x, y = _pair(a, b)
    return float(np.mean((x - y) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE); identical inputs give inf.

    For colour images the MSE is taken over all three channels together (one number per image).
    """
    error = mse(a, b)
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / error)


def _gaussian(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(
        image,
        (SSIM_WINDOW, SSIM_WINDOW),
        SSIM_SIGMA,
        sigmaY=SSIM_SIGMA,
        borderType=cv2.BORDER_REFLECT,
    )


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM of two single-channel images, on the 'valid' area only.

    Local statistics use the Gaussian window with population (not sample) covariances, as in
    Wang et al.'s reference code; the 5-pixel border where the window leaves the image is cut
    off, so the padding rule cannot influence the result.
    """
    x, y = _pair(a, b)
    if x.ndim != 2:
        raise ValueError(f"ssim_map takes 2-D planes, got shape {x.shape}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _gaussian(x), _gaussian(y)
    var_x = _gaussian(x * x) - mu_x * mu_x
    var_y = _gaussian(y * y) - mu_y * mu_y
    cov = _gaussian(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    pad = SSIM_WINDOW // 2
    return (numerator / denominator)[pad:-pad, pad:-pad]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM; for H x W x C images the mean over channels of each channel's SSIM.

    Images smaller than the 11x11 window have no valid area and raise ValueError.
    """
    x, y = _pair(a, b)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    if x.ndim == 2:
        return float(ssim_map(x, y, data_range).mean())
    return float(np.mean([ssim_map(x[..., c], y[..., c], data_range).mean() for c in range(3)]))


def mean_abs_change(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames (nan for fewer than two frames)."""
    total, count, previous = 0.0, 0, None
    for frame in frames:
        current = np.asarray(frame, dtype=np.float64)
        if previous is not None:
            total += float(np.mean(np.abs(current - previous)))
            count += 1
        previous = current
    return total / count if count else math.nan


def flicker(output: Iterable[np.ndarray], truth: Iterable[np.ndarray]) -> float:
    """Temporal change of the output beyond that of the ground truth.

    mean|o_t - o_(t-1)| - mean|g_t - g_(t-1)|, in the units of the data. Real motion changes the
    ground truth too, so only the excess counts: > 0 means the output jumps more from frame to
    frame than the sharp video does (DBLRNet's known "jumping" artefact), < 0 means smoother.
    """
    return mean_abs_change(output) - mean_abs_change(truth)


def gradient_magnitude(image: np.ndarray) -> float:
    """Mean gradient magnitude, a no-reference sharpness measure (higher is sharper).

    Forward differences on the common (H-1) x (W-1) area: sqrt(dx^2 + dy^2), averaged; colour
    images are averaged over channels too.
    """
    x = np.asarray(image, dtype=np.float64)
    dx = x[:-1, 1:] - x[:-1, :-1]
    dy = x[1:, :-1] - x[:-1, :-1]
    return float(np.mean(np.sqrt(dx * dx + dy * dy)))


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on every side (0: unchanged)."""
    if border <= 0:
        return image
    if 2 * border >= min(image.shape[:2]):
        raise ValueError(f"border {border} leaves nothing of a {image.shape[:2]} image")
    return image[border:-border, border:-border]
