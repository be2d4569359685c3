"""The validation-only process: random-trajectory PSF kernels (Boracchi & Foi 2012).

Validation blur must come from a process the model never trained on, or a validation gain would
only say that the network fits its own synthesis. So this module shares nothing with the
trajectory and exposure code of the training processes: a different path model, and spatially
uniform blur by convolution instead of warped sub-exposures.
"""

from __future__ import annotations

import cv2
import numpy as np

from deblur_cli.synth.degrade import _degrade
from deblur_cli.synth.light import _apply_tone, _tone, linear_to_srgb, srgb_to_linear
from deblur_cli.synth.ranges import BlurRanges, SynthClip, _blur_scale, _uniform
from deblur_cli.synth.sources import _crop_source, _frame_source


def _psf_trajectory(
    rng: np.random.Generator, n_steps: int, steps_per_frame: int, ranges: BlurRanges
) -> np.ndarray:
    """Boracchi & Foi (2012) random camera path of unit steps (complex x + iy).

    Inertia (the velocity only turns), Gaussian jitter scaled by ``anxiety``, a centripetal
    pull that makes the path curl back on the scale of one frame, and rare big shakes that
    reverse the direction abruptly.
    """
    anxiety = _uniform(rng, ranges.psf_anxiety)
    big_shake = _uniform(rng, ranges.psf_big_shake_prob)
    centripetal = 0.7 * rng.uniform(0, 1)
    gaussian = 10 * rng.uniform(0, 1)
    jitter = rng.standard_normal((n_steps, 2)) @ np.array([1, 1j])
    shakes = rng.random(n_steps) < big_shake
    turns = np.exp(1j * (np.pi + rng.uniform(-0.5, 0.5, n_steps)))
    x = np.zeros(n_steps, np.complex128)
    v = np.exp(1j * rng.uniform(0, 2 * np.pi))
    for i in range(1, n_steps):
        nudge = 2 * v * turns[i] if shakes[i] else 0j
        v = v + nudge + anxiety * (gaussian * jitter[i] - centripetal * x[i - 1] / steps_per_frame)
        v = v / (abs(v) + 1e-12)
        x[i] = x[i - 1] + v
    return x


def _rasterise_kernel(points: np.ndarray) -> np.ndarray:
    """Bilinear splat of complex offsets (relative to the kernel centre) into a unit-sum kernel.

    The centre is the mid-exposure position, so blurry and sharp frames stay registered.
    """
    radius = int(np.ceil(max(np.abs(points.real).max(), np.abs(points.imag).max()))) + 1
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float64)
    xs, ys = points.real + radius, points.imag + radius
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def _densify(points: np.ndarray, factor: int) -> np.ndarray:
    """Linearly interpolate a complex polyline to ``factor`` times more points."""
    where = np.linspace(0, points.size - 1, factor * points.size)
    index = np.arange(points.size)
    return np.interp(where, index, points.real) + 1j * np.interp(where, index, points.imag)


def psf_clip(
    image: np.ndarray,
    n_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    ranges: BlurRanges = BlurRanges(),
) -> SynthClip:
    """Validation-only blur: per-frame PSFs from one random trajectory, convolved in linear light.

    The trajectory (Boracchi & Foi 2012) runs through the whole clip with a smoothly varying
    speed, so each frame's kernel is a different, smoothly changing piece of it. Sharp frames
    are the still translated to the trajectory point at mid-exposure (or consecutive video
    frames). Blur is spatially uniform: deliberately a different process from shake_clip.
    """
    h, w = size
    duty = _uniform(rng, ranges.duty_cycle)
    steps_per_frame = 32
    low, high = ranges.psf_blur_px_720
    px = _blur_scale(h, ranges, high)
    path = _psf_trajectory(rng, (n_frames + 1) * steps_per_frame + 1, steps_per_frame, ranges)
    # A smoothly varying speed, so that blur strength changes from frame to frame.
    speed = 0.55 + 0.45 * np.sin(
        2 * np.pi * rng.uniform(0.02, 0.2) * np.arange(path.size) / steps_per_frame
        + rng.uniform(0, 2 * np.pi)
    )
    mean_blur = _uniform(rng, (low * px, max(low * px, 0.7 * high * px)))
    step = mean_blur / max(duty * steps_per_frame * speed.mean(), 1e-9)
    path = np.cumsum(np.diff(path, prepend=path[0]) * speed * step)
    per_frame_cap = high * px

    mids = (np.arange(n_frames) + 1) * steps_per_frame
    shift = path[mids] - path[mids[0]]
    reach = int(np.ceil(np.abs(shift.real).max() + np.abs(shift.imag).max() + per_frame_cap))
    need = (h + 2 * reach + 4, w + 2 * reach + 4)
    crop, factor = _crop_source(rng, image, need, size, ranges)
    tone = _tone(rng, ranges)

    blurry = np.empty((n_frames, h, w, 3), np.float32)
    sharp = np.empty((n_frames, h, w, 3), np.float32)
    half = max(1, round(duty * steps_per_frame / 2))
    blur_px = []
    for k, mid in enumerate(mids):
        offsets = path[mid - half : mid + half + 1] - path[mid]
        length = float(np.abs(np.diff(offsets)).sum())
        if length > per_frame_cap > 0:
            offsets *= per_frame_cap / length
            length = per_frame_cap
        blur_px.append(round(length, 3))
        kernel = _rasterise_kernel(_densify(offsets, 8))
        source = _apply_tone(srgb_to_linear(_frame_source(crop, k)), tone)
        # The view is the sharp frame; a margin around it feeds the convolution.
        margin = kernel.shape[0]
        x0 = need[1] / 2 - w / 2 + shift[k].real - margin
        y0 = need[0] / 2 - h / 2 + shift[k].imag - margin
        big = cv2.warpAffine(
            source,
            np.array([[1, 0, x0], [0, 1, y0]], np.float64),
            (w + 2 * margin, h + 2 * margin),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,  # no softening of the sharp frame
            borderMode=cv2.BORDER_REFLECT_101,
        )
        # filter2D correlates: out(x) = sum_u k(u) in(x + u), i.e. the mean of views shifted
        # along the path, the same convention as the camera poses of shake_clip.
        blurred = cv2.filter2D(big, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        blurry[k] = blurred[margin : margin + h, margin : margin + w]
        sharp[k] = big[margin : margin + h, margin : margin + w]
    np.clip(blurry, 0.0, 1.0, out=blurry)
    blurry_u8, degrade_meta = _degrade(rng, blurry, ranges)
    meta = {
        "process": "psf",
        "duty_cycle": duty,
        "blur_px": blur_px,
        "source_scale": round(factor, 4),
        **tone,
        **degrade_meta,
    }
    return SynthClip(blurry_u8, linear_to_srgb(sharp), "psf", meta)
