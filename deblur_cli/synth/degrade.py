"""Sensor and codec: what a camera does to the blurry frames after the exposure.

Only the blurry frames are degraded (the network is to remove noise and compression as well as
blur): signal-dependent shot noise and read noise in linear light, then JPEG or H.264.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from deblur_cli.synth.light import linear_to_srgb
from deblur_cli.synth.ranges import BlurRanges, _log_uniform


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
