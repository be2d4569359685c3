"""Known answers for the quality measures, and SSIM checked against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from deblur_cli import metrics


def noisy_pair(seed: int, shape: tuple[int, ...], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, shape).astype(np.uint8)
    clean = np.asarray(
        np.cumsum(clean, axis=1) % 256, dtype=np.uint8
    )  # some structure, not only noise
    noisy = np.clip(clean + rng.normal(0, sigma, shape), 0, 255).astype(np.uint8)
    return clean, noisy


def test_psnr_identical_is_inf() -> None:
    a = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    assert metrics.psnr(a, a.copy()) == math.inf


@pytest.mark.parametrize("offset", [1, 3, 10, 50])
def test_psnr_of_a_constant_offset(offset: int) -> None:
    a = np.random.default_rng(1).integers(60, 190, (24, 32, 3)).astype(np.uint8)
    b = (a + offset).astype(np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)
    unit = metrics.psnr(a / 255.0, b / 255.0, data_range=1.0)
    assert unit == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)


def test_psnr_storage_type_does_not_matter() -> None:
    a, b = noisy_pair(2, (24, 32), 5)
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(a.astype(float), b.astype(np.int32)))


def test_ssim_identical_is_one() -> None:
    a, _ = noisy_pair(3, (24, 32, 3), 1)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(24, 32), (40, 33, 3)])
@pytest.mark.parametrize("sigma", [4.0, 30.0])
def test_ssim_matches_skimage_gaussian_ssim(shape: tuple[int, ...], sigma: float) -> None:
    a, b = noisy_pair(4, shape, sigma)
    reference = structural_similarity(
        a,
        b,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1 if len(shape) == 3 else None,
    )
    assert metrics.ssim(a, b) == pytest.approx(reference, abs=1e-9)
    assert metrics.ssim(a, b) < 1.0


def test_ssim_drops_with_more_noise() -> None:
    a, light = noisy_pair(5, (32, 32), 3)
    _, heavy = noisy_pair(5, (32, 32), 40)
    assert metrics.ssim(a, heavy) < metrics.ssim(a, light) < 1.0


def test_ssim_too_small_and_mismatched() -> None:
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((16, 16)), np.zeros((16, 17)))


def test_flicker_is_the_excess_of_frame_to_frame_change() -> None:
    truth = [np.full((4, 4), v, np.uint8) for v in (10, 12, 14, 16)]  # changes by 2 per frame
    jumpy = [np.full((4, 4), v, np.uint8) for v in (10, 17, 11, 16)]  # changes 7, 6, 5
    assert metrics.flicker(truth, truth) == 0.0
    assert metrics.flicker(jumpy, truth) == pytest.approx(6.0 - 2.0)
    assert metrics.flicker(truth, jumpy) == pytest.approx(-4.0)
    assert math.isnan(metrics.mean_abs_change([truth[0]]))


def test_gradient_magnitude() -> None:
    assert metrics.gradient_magnitude(np.full((8, 8), 7.0)) == 0.0
    ramp = np.tile(np.arange(8, dtype=float) * 3, (8, 1))  # dx = 3, dy = 0
    assert metrics.gradient_magnitude(ramp) == pytest.approx(3.0)
    diagonal = ramp + ramp.T  # dx = dy = 3
    assert metrics.gradient_magnitude(diagonal) == pytest.approx(3 * math.sqrt(2))
    sharp, _ = noisy_pair(6, (32, 32), 0)
    blurred = np.asarray(
        np.round((sharp.astype(float) + np.roll(sharp, 1, 1) + np.roll(sharp, 2, 1)) / 3),
        dtype=np.uint8,
    )
    assert metrics.gradient_magnitude(blurred) < metrics.gradient_magnitude(sharp)


def test_crop_border() -> None:
    image = np.arange(100).reshape(10, 10)
    assert metrics.crop_border(image, 0) is image
    assert metrics.crop_border(image, 2).shape == (6, 6)
    assert metrics.crop_border(image, 2)[0, 0] == 22
    with pytest.raises(ValueError):
        metrics.crop_border(image, 5)
