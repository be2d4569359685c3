"""Camera trajectories: the hand-held path that ``shake_clip`` integrates over each exposure.

A continuous pose (translation, roll, zoom) on a fine time grid, built from smooth shake, a
steady pan, jerks and slowdowns, then scaled so that the clip's per-frame blur length (measured
at the centre and corners of the picture) matches a length drawn from ``BlurRanges``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deblur_cli.synth.ranges import BlurRanges, _blur_scale, _uniform

# Fine time grid used to integrate the camera trajectory, in steps per frame interval.
GRID_PER_FRAME = 64


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
