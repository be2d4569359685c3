"""Shared fixtures: a tiny random model file and real media clips made with PyAV.

Clips are made in the tests (never downloaded) so every property under test - timestamps, audio,
bit depth, colour tags, rotation - is set deliberately and known exactly.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import av
except ImportError:  # a lent GPU machine has no PyAV; only tests/test_cuda.py runs there
    av = None

from deblur_cli.models import TINY, DBLRNet
from deblur_cli.weights import save_model

AUDIO_RATE = 48000
AUDIO_FRAME = 1024  # samples per AAC frame


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised TINY network saved as a real weight file (seeded: reproducible).

    The last layer starts near zero in a fresh network (output ~ input); it is made larger here
    so that the model visibly changes luma and tests can tell processed frames from copies.
    """
    torch.manual_seed(0)
    model = DBLRNet(TINY)
    with torch.no_grad():
        torch.nn.init.normal_(model.l35.weight, std=0.05)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_model(model, path)


@pytest.fixture
def model_args(tiny_model_path: Path) -> list[str]:
    """CLI options that run the tiny model exactly (fp32 on the CPU)."""
    return ["--model", str(tiny_model_path), "--device", "cpu", "--precision", "fp32"]


def pattern_planes(index: int, width: int, height: int, depth: int = 8) -> list[np.ndarray]:
    """Y, U, V planes (4:2:0) of a moving texture: edges for the network, varied chroma."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width]
    maximum = (1 << depth) - 1
    luma = 0.5 + 0.3 * np.sin((xx + 3 * index) / 3.0) * np.cos(yy / 4.0)
    luma = luma + 0.05 * rng.standard_normal((height, width))
    cw, ch = (width + 1) // 2, (height + 1) // 2
    u = 0.5 + 0.2 * np.sin(np.arange(cw)[None, :] / 2.0 + index) * np.ones((ch, 1))
    v = 0.5 + 0.2 * rng.random((ch, cw))
    dtype = np.uint8 if depth <= 8 else np.uint16
    return [np.clip(np.rint(p * maximum), 0, maximum).astype(dtype) for p in (luma, u, v)]


def planes_to_frame(planes: Sequence[np.ndarray], pix_fmt: str) -> av.VideoFrame:
    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, data in zip(frame.planes, planes, strict=True):
        rows = np.frombuffer(plane, dtype=data.dtype).reshape(plane.height, -1)
        rows[:, : plane.width] = data
    return frame


def make_clip(
    path: Path,
    frames: int = 6,
    width: int = 64,
    height: int = 48,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: Sequence[int] | None = None,
    time_base: Fraction = Fraction(1, 25),
    rate: int | None = 25,
    audio: bool = False,
    rotation: int | None = None,
    color: dict[str, int] | None = None,
    options: dict[str, str] | None = None,
    subtitles: Sequence[tuple[int, str]] = (),
) -> Path:
    """Write a test clip with PyAV. ``pts`` (in ``time_base``) gives irregular timestamps (VFR);
    ``color`` sets codec/frame tags (color_primaries, color_trc, colorspace, color_range);
    ``subtitles`` are (milliseconds, text) cues muxed as a subrip stream (use .mkv)."""
    depth = 10 if "10" in pix_fmt else 8
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.options = options or {"crf": "20", "preset": "ultrafast"}
        for key, value in (color or {}).items():
            setattr(stream.codec_context, key, value)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=AUDIO_RATE)
            audio_stream.layout = "mono"
        subtitle_stream = None
        if subtitles:
            subtitle_stream = container.add_mux_stream("subrip")
            subtitle_stream.time_base = Fraction(1, 1000)
            subtitle_stream.metadata["language"] = "eng"
        timestamps = list(pts) if pts is not None else list(range(frames))
        for index, stamp in enumerate(timestamps):
            frame = planes_to_frame(pattern_planes(index, width, height, depth), pix_fmt)
            frame.pts, frame.time_base = stamp, time_base
            for key, value in (color or {}).items():
                setattr(frame, key, value)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        for millis, text in subtitles:
            packet = av.Packet(text.encode())
            packet.stream, packet.time_base = subtitle_stream, Fraction(1, 1000)
            packet.pts = packet.dts = millis
            packet.duration = 500
            container.mux(packet)
        if audio_stream is not None:
            seconds = float((timestamps[-1] + 1) * time_base)
            _write_sine(container, audio_stream, seconds)
    return path


def _write_sine(container: av.container.OutputContainer, stream, seconds: float) -> None:
    samples = int(seconds * AUDIO_RATE)
    for start in range(0, samples, AUDIO_FRAME):
        t = (np.arange(AUDIO_FRAME) + start) / AUDIO_RATE
        data = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


@dataclass
class ClipFacts:
    """What a file holds, read back with PyAV (what ffprobe would report)."""

    times: list[Fraction | None] = field(default_factory=list)  # pts x time_base per frame
    planes: list[list[np.ndarray]] = field(default_factory=list)  # per frame: Y, U, V
    audio_packets: list[tuple[Fraction, bytes]] = field(default_factory=list)
    subtitle_packets: list[tuple[Fraction, bytes]] = field(default_factory=list)
    subtitle_language: str | None = None
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    rotation: int = 0
    color: dict[str, int] = field(default_factory=dict)


def read_clip(path: Path) -> ClipFacts:
    """Decode every frame (planes and timestamps) and collect audio packet bytes."""
    facts = ClipFacts()
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts.pix_fmt = video.codec_context.pix_fmt
        facts.width, facts.height = video.codec_context.width, video.codec_context.height
        facts.color = {
            key: getattr(video.codec_context, key)
            for key in ("color_primaries", "color_trc", "colorspace", "color_range")
        }
        for frame in container.decode(video=0):
            facts.times.append(None if frame.pts is None else frame.pts * frame.time_base)
            facts.rotation = frame.rotation
            dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
            facts.planes.append(
                [
                    np.frombuffer(p, dtype=dtype).reshape(p.height, -1)[:, : p.width].copy()
                    for p in frame.planes
                ]
            )
    for kind, packets in (("audio", facts.audio_packets), ("subtitle", facts.subtitle_packets)):
        with av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type == kind]
            if streams:
                if kind == "subtitle":
                    facts.subtitle_language = streams[0].metadata.get("language")
                for packet in container.demux(streams[0]):
                    if packet.size:
                        packets.append((packet.pts * packet.time_base, bytes(packet)))
    return facts


@pytest.fixture
def clip_factory(tmp_path: Path) -> Callable[..., Path]:
    """``clip_factory("name.mp4", **make_clip options)`` -> a clip in this test's tmp folder."""

    def factory(name: str = "clip.mp4", **options: object) -> Path:
        return make_clip(tmp_path / name, **options)

    return factory


def make_audio_only(path: Path) -> Path:
    """A container with one AAC audio frame and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the test, as real CPU-budget runs are (OMP_NUM_THREADS=1).

    A budget in process CPU time also counts the spin-waiting of idle OpenMP threads: on a busy
    machine one tiny step measured 0.5 s instead of 0.02 s, jumping past the rest of a 1.2 s
    budget before the cosine had decayed.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny synthetic clips in the DVD layout, for real (tiny) training runs."""
    from deblur_cli.synth import bundled_sources, synthesize_dataset, write_dataset

    root = tmp_path_factory.mktemp("train_data")
    clips = synthesize_dataset(bundled_sources("train"), 3, 5, (48, 48), seed=1, process="shake")
    write_dataset(clips, root, layout="dvd")
    return root


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_interruptible(command: Sequence[str], **popen: object) -> subprocess.Popen:
    """Start ``command`` with Ctrl-C (SIGINT) at its default, whatever this process inherited.

    A shell starts a background job (``pytest ... &``) with SIGINT ignored, and children inherit
    that; Python then never raises KeyboardInterrupt, so a Ctrl-C test waited out its timeout
    instead of testing the interrupt.
    """
    return subprocess.Popen(command, preexec_fn=_default_sigint, **popen)  # type: ignore[call-overload]


def free_port() -> str:
    """A TCP port that no process holds now, for a torchrun rendezvous: a fixed port can still
    be held by the previous run's processes, which once failed the two-process training test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])
