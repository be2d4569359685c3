"""Rendering of exposures: the training processes that integrate light over a shutter interval.

``shake_clip`` averages many sub-exposure warps of the source (and of pasted objects moving on
their own) along a camera trajectory; ``average_clip`` averages consecutive real video frames
(GoPro / DTBNet style). Both work in linear light and hand the result to ``degrade``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from deblur_cli.synth.degrade import _degrade
from deblur_cli.synth.light import _apply_tone, _tone, linear_to_srgb, srgb_to_linear
from deblur_cli.synth.ranges import BlurRanges, SynthClip, _blur_scale, _uniform
from deblur_cli.synth.sources import _crop_source
from deblur_cli.synth.trajectory import (
    _exposure_times,
    _pose_matrices,
    _probe_paths,
    _probe_points,
    _random_trajectory,
    _Trajectory,
)


@dataclass
class _Layer:
    """A pasted object: premultiplied linear RGBA and its own motion in source coordinates."""

    rgba: np.ndarray  # [oh, ow, 4] float32, RGB premultiplied by alpha
    start: np.ndarray  # [2] position at t = 0, source px
    velocity: np.ndarray  # [2] source px per frame
    wobble: np.ndarray  # [2] amplitude of a sinusoidal wobble, px
    wobble_freq: float
    spin: float  # rad per frame
    angle0: float

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        wobble = self.wobble * np.sin(2 * np.pi * self.wobble_freq * t)
        return self.start + self.velocity * t + wobble, self.angle0 + self.spin * t


def _random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A soft random shape filling most of an h x w box: ellipse or random polygon, blurred."""
    mask = np.zeros((h, w), np.float32)
    if rng.random() < 0.5:
        axes = (int(w * rng.uniform(0.3, 0.48)), int(h * rng.uniform(0.3, 0.48)))
        cv2.ellipse(mask, (w // 2, h // 2), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    else:
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.25, 0.48, n)
        pts = np.stack([w / 2 + radii * w * np.cos(angles), h / 2 + radii * h * np.sin(angles)])
        cv2.fillPoly(mask, [pts.T.round().astype(np.int32)], 1.0)
    sigma = max(0.5, rng.uniform(0.005, 0.03) * min(h, w))
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _make_layers(
    rng: np.random.Generator,
    object_images: Sequence[np.ndarray],
    size: tuple[int, int],
    crop_shape: tuple[int, int],
    n_frames: int,
    duty: float,
    tone: dict,
    ranges: BlurRanges,
) -> tuple[list[_Layer], list[float]]:
    """Random objects cut from other images, each moving on its own across the view.

    Each object is placed in view at the middle of the clip; its speed is capped like the
    camera's (``max_frame_step``), so it does not leave the picture within a frame or two.
    """
    if not object_images or rng.random() >= ranges.object_prob or ranges.objects_max < 1:
        return [], []
    h, w = size
    px = _blur_scale(h, ranges, ranges.object_blur_px_720[1])
    layers, blurs = [], []
    for _ in range(int(rng.integers(1, ranges.objects_max + 1))):
        image = object_images[int(rng.integers(len(object_images)))]
        if image.ndim == 4:
            image = image[int(rng.integers(image.shape[0]))]
        side = _uniform(rng, ranges.object_size) * min(h, w)
        oh = max(8, min(image.shape[0], int(side * rng.uniform(0.7, 1.3))))
        ow = max(8, min(image.shape[1], int(side * rng.uniform(0.7, 1.3))))
        y = int(rng.integers(0, image.shape[0] - oh + 1))
        x = int(rng.integers(0, image.shape[1] - ow + 1))
        rgb = _apply_tone(srgb_to_linear(image[y : y + oh, x : x + ow]), tone)
        alpha = _random_mask(rng, oh, ow)
        rgba = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1).astype(np.float32)
        blur = _uniform(rng, (ranges.object_blur_px_720[0] * px, ranges.object_blur_px_720[1] * px))
        speed = min(blur / max(duty, 1e-3), ranges.max_frame_step * min(h, w))
        blur = speed * duty
        direction = rng.uniform(0, 2 * np.pi)
        centre = np.array([crop_shape[1] / 2, crop_shape[0] / 2])
        velocity = speed * np.array([np.cos(direction), np.sin(direction)])
        middle = centre + rng.uniform(-0.35, 0.35, 2) * np.array([w, h])
        start = middle - velocity * (n_frames - 1) / 2
        layers.append(
            _Layer(
                rgba=rgba,
                start=start,
                velocity=velocity,
                wobble=rng.uniform(0, 0.1, 2) * np.array([w, h]),
                wobble_freq=float(rng.uniform(0.02, 0.2)),
                spin=float(rng.normal(0, 0.02)),
                angle0=float(rng.uniform(-0.3, 0.3)),
            )
        )
        blurs.append(round(float(blur), 3))
    return layers, blurs


def _camera_matrix(pose: np.ndarray, out_centre: np.ndarray, src_centre: np.ndarray) -> np.ndarray:
    """2x3 matrix mapping output pixel -> source pixel for one camera pose."""
    a, t = _pose_matrices(pose[None])
    a, t = a[0], t[0]
    return np.concatenate([a, (src_centre + t - a @ out_centre)[:, None]], 1)


def _layer_matrix(camera: np.ndarray, layer: _Layer, t: float) -> np.ndarray:
    """2x3 matrix mapping output pixel -> layer pixel (camera then the object's own motion)."""
    position, angle = layer.pose(t)
    cos, sin = np.cos(-angle), np.sin(-angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    oh, ow = layer.rgba.shape[:2]
    local_centre = np.array([ow / 2, oh / 2])
    a = rot @ camera[:, :2]
    b = rot @ (camera[:, 2] - position) + local_centre
    return np.concatenate([a, b[:, None]], 1)


def _with_alpha(rgb: np.ndarray) -> np.ndarray:
    """RGB -> RGBA float32: OpenCV's 4-channel warps are ~3x faster than its 3-channel ones."""
    return np.dstack([rgb, np.ones(rgb.shape[:2], np.float32)])


def _render(
    background: np.ndarray,
    layers: Sequence[_Layer],
    traj: _Trajectory,
    times: np.ndarray,
    size: tuple[int, int],
) -> np.ndarray:
    """Mean over ``times`` of the linear-light view (background + layers): one exposure.

    ``background`` is RGBA (see _with_alpha). The blurry frame's sub-exposures and the sharp
    frame (one time, mid-exposure) are sampled alike, bicubic: with bilinear sub-exposures
    (sessions 1-6) every blurry frame carried the bilinear kernel's softening (about half the
    fine detail's energy, 37 dB at zero motion) on top of its motion blur, a blur the sharp
    frame did not have, so the networks learnt to sharpen every frame, and over-sharpened
    frames that were already sharp.
    """
    h, w = size
    out_centre = np.array([w / 2, h / 2])
    src_centre = np.array([background.shape[1] / 2, background.shape[0] / 2])
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    accum = np.zeros((h, w, 4), np.float32)
    for t, pose in zip(times, traj.at(times), strict=True):
        camera = _camera_matrix(pose, out_centre, src_centre)
        view = cv2.warpAffine(
            background, camera, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101
        )
        for layer in layers:
            rgba = cv2.warpAffine(
                layer.rgba,
                _layer_matrix(camera, layer, t),
                (w, h),
                flags=flags,
                borderMode=cv2.BORDER_CONSTANT,
            )
            # "Over" compositing of premultiplied RGBA; the view's alpha stays 1.
            view *= 1.0 - np.clip(rgba[..., 3:], 0.0, 1.0)
            view += rgba
        accum += view
    return accum[..., :3] / len(times)


def _window_extent(traj: _Trajectory, size: tuple[int, int], n_frames: int) -> tuple[int, int]:
    """Source crop (h, w) that contains the output window under every pose of the clip."""
    h, w = size
    mask = (traj.times >= -0.5) & (traj.times <= n_frames - 0.5)
    paths = _probe_paths(traj.poses[mask], _probe_points(h, w)[1:])
    reach = np.abs(paths).reshape(-1, 2).max(0)
    return int(np.ceil(2 * reach[1])) + 4, int(np.ceil(2 * reach[0])) + 4


def shake_clip(
    image: np.ndarray,
    n_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    ranges: BlurRanges = BlurRanges(),
    object_images: Sequence[np.ndarray] | None = None,
) -> SynthClip:
    """Hand-held camera shake over a still (HxWx3) or consecutive video frames ([m,H,W,3]).

    One continuous trajectory (pan + smooth shake in x, y, roll and zoom + jerks, possibly a
    slowdown) spans the clip; each frame averages >= 16 sub-exposure warps in linear light over
    its shutter interval; the sharp frame is the pose at mid-exposure. Objects cut from
    ``object_images`` (default: the image itself) move on their own in the same exposure loop.
    """
    h, w = size
    traj, meta = _random_trajectory(rng, n_frames, size, _uniform(rng, ranges.duty_cycle), ranges)
    duty = meta["duty_cycle"]
    need = _window_extent(traj, size, n_frames)
    crop, factor = _crop_source(rng, image, need, size, ranges)
    tone = _tone(rng, ranges)
    objects = object_images if object_images is not None else [image]
    layers, object_blur = _make_layers(rng, objects, size, need, n_frames, duty, tone, ranges)

    blurry = np.empty((n_frames, h, w, 3), np.float32)
    sharp = np.empty((n_frames, h, w, 3), np.float32)
    low, high = ranges.sub_exposures
    longest = max([*meta["blur_px_corner"], *object_blur, 0.0])
    n_samples = int(np.clip(np.ceil(longest / 0.75), low, high))
    still = None if image.ndim == 4 else _with_alpha(_apply_tone(srgb_to_linear(crop), tone))
    for k in range(n_frames):
        background = still
        if background is None:
            background = _with_alpha(_apply_tone(srgb_to_linear(crop[min(k, len(crop) - 1)]), tone))
        blurry[k] = _render(background, layers, traj, _exposure_times(k, duty, n_samples), size)
        mid = np.array([float(k)])
        sharp[k] = _render(background, layers, traj, mid, size)
    np.clip(blurry, 0.0, 1.0, out=blurry)
    blurry_u8, degrade_meta = _degrade(rng, blurry, ranges)
    meta.update(
        process="shake",
        sub_exposures=n_samples,
        source_scale=round(factor, 4),
        objects=len(layers),
        object_blur_px=object_blur,
        **tone,
        **degrade_meta,
    )
    return SynthClip(blurry_u8, linear_to_srgb(sharp), "shake", meta)


def average_clip(
    frames: np.ndarray,
    tau: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    ranges: BlurRanges = BlurRanges(),
) -> SynthClip:
    """Average groups of ``tau`` consecutive frames in linear light; sharp = the middle frame.

    Gives ``len(frames) // tau`` output frames. At 25-30 fps sources the real motion between
    frames is coarse, so large motions show as ghosting rather than smooth streaks.
    """
    if frames.ndim != 4 or frames.shape[0] < tau:
        raise ValueError(f"need at least tau={tau} frames, got shape {frames.shape}")
    n_out = frames.shape[0] // tau
    crop, factor = _crop_source(rng, frames[: n_out * tau], size, size, ranges)
    tone = _tone(rng, ranges)
    linear = _apply_tone(srgb_to_linear(crop), tone).reshape(n_out, tau, *size, 3)
    blurry = np.clip(linear.mean(axis=1), 0.0, 1.0)
    sharp = linear[:, tau // 2]
    blurry_u8, degrade_meta = _degrade(rng, blurry, ranges)
    meta = {
        "process": "average",
        "tau": tau,
        "source_scale": round(factor, 4),
        **tone,
        **degrade_meta,
    }
    return SynthClip(blurry_u8, linear_to_srgb(sharp), "average", meta)
