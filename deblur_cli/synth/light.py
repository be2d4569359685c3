"""Light: the sRGB transfer curve and the exposure tone of a clip.

Blur happens in linear light (photons add up during an exposure) while files are sRGB, so every
process converts at the boundary. The tone (exposure gain, highlights pushed above 1.0 so that
lights streak when blurred) is drawn once per clip and applied to blurry and sharp frames alike.
"""

from __future__ import annotations

import numpy as np

from deblur_cli.synth.ranges import BlurRanges, _uniform


def _srgb_to_linear_lut() -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return lin.astype(np.float32)


SRGB_TO_LINEAR = _srgb_to_linear_lut()


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light in [0, 1] (exact, through a 256-entry table)."""
    return SRGB_TO_LINEAR[image]


def _linear_to_srgb_lut(steps: int = 1 << 16) -> np.ndarray:
    x = np.arange(steps, dtype=np.float64) / (steps - 1)
    srgb = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


# 65536 linear steps: finer than one 8-bit sRGB code everywhere (the curve is steepest at
# black, 12.92 * 255 / 65535 = 0.05 code per step), and ~10x faster than evaluating the power.
LINEAR_TO_SRGB = _linear_to_srgb_lut()


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """float linear light -> uint8 sRGB, clipping to [0, 1] first."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    index = (x * np.float32(LINEAR_TO_SRGB.size - 1) + np.float32(0.5)).astype(np.uint16)
    return LINEAR_TO_SRGB[index]


def _tone(rng: np.random.Generator, ranges: BlurRanges) -> dict:
    """Exposure gain and highlight boost, applied identically to blurry and sharp frames."""
    boost = 0.0
    if rng.random() < ranges.highlight_prob:
        boost = _uniform(rng, ranges.highlight_boost)
    return {"gain": _uniform(rng, ranges.gain), "highlight_boost": boost}


def _apply_tone(linear: np.ndarray, tone: dict) -> np.ndarray:
    """Scale exposure and push near-white pixels above 1.0 (unclipped, to streak when blurred)."""
    out = linear * np.float32(tone["gain"])
    if tone["highlight_boost"] > 0:
        out = out * (1.0 + np.float32(tone["highlight_boost"]) * np.power(linear, 8))
    return out.astype(np.float32, copy=False)
