"""Every random range of the synthesis, how a value is drawn from one, and the clip it yields.

Kept apart from the processes so that one frozen dataclass (``BlurRanges``, documented in
docs/SYNTHESIS.md) is the single place to read or change what the training data can contain,
and so that every process draws its values the same way (``_uniform``, ``_log_uniform``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The blur-length ranges are specified at 720p and scaled with the output height.
REFERENCE_HEIGHT = 720


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
