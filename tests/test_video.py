"""`deblur video` end to end on clips made with PyAV, through the real CLI, with a tiny model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_audio_only, make_clip, read_clip, start_interruptible

from deblur_cli.api import deblur_video
from deblur_cli.color import luma_to_unit, unit_to_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import InvalidMediaError
from deblur_cli.weights import load_model

BT709 = {"color_primaries": 1, "color_trc": 1, "colorspace": 1}
LOSSLESS = ["--crf", "0", "--preset", "ultrafast"]
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> object:
    from deblur_cli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def expected_luma(facts, model_path: Path, depth: int, full_range: bool) -> list[np.ndarray]:
    """What the engine makes of the input's luma planes at the stream's range and depth."""
    engine = Deblurrer(load_model(str(model_path)), device="cpu", precision="fp32")
    pairs = ((i, luma_to_unit(p[0], depth, full_range)) for i, p in enumerate(facts.planes))
    return [unit_to_luma(plane, depth, full_range) for _, plane in engine.stream(pairs)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_vfr_audio_colour_rotation_survive_and_chroma_is_bit_exact(tmp_path, model_args):
    """The headline promise: only luma changes; everything else is the input's."""
    source = make_clip(
        tmp_path / "in.mp4",
        pts=[0, 2, 3, 7, 8, 11, 12, 13],  # variable frame rate
        audio=True,
        rotation=90,
        color={**BT709, "color_range": 2},  # full range
    )
    result = run_cli("video", source, *model_args, *LOSSLESS)
    assert result.exit_code == 0, result.output
    output = tmp_path / "in_deblurred.mp4"
    before, after = read_clip(source), read_clip(output)

    assert after.times == before.times and len(after.times) == 8
    assert after.audio_packets == before.audio_packets and len(after.audio_packets) > 10
    assert after.rotation == before.rotation == 90
    assert after.color == before.color == {**BT709, "color_range": 2}
    for frame_in, frame_out in zip(before.planes, after.planes, strict=True):
        np.testing.assert_array_equal(frame_out[1], frame_in[1])
        np.testing.assert_array_equal(frame_out[2], frame_in[2])
    wanted = expected_luma(before, Path(model_args[1]), depth=8, full_range=True)
    for frame_out, luma in zip(after.planes, wanted, strict=True):
        np.testing.assert_array_equal(frame_out[0], luma)
    changed = [
        not np.array_equal(a[0], b[0]) for a, b in zip(before.planes, after.planes, strict=True)
    ]
    assert any(changed), "the network should have changed luma"
    assert "in.mp4 -> " in result.output and "8 frames in" in result.output
    assert "\x1b" not in result.output


def test_ten_bit_limited_range_keeps_depth_and_chroma(tmp_path, model_args):
    source = make_clip(tmp_path / "deep.mkv", frames=5, pix_fmt="yuv420p10le", color=BT709)
    output = tmp_path / "deep_out.mkv"
    result = run_cli("video", source, "-o", output, "--codec", "ffv1", *model_args)
    assert result.exit_code == 0, result.output
    before, after = read_clip(source), read_clip(output)
    assert after.pix_fmt == "yuv420p10le"
    assert after.times == before.times
    assert after.color["color_range"] in (0, 1) and after.color["colorspace"] == 1
    wanted = expected_luma(before, Path(model_args[1]), depth=10, full_range=False)
    for frame_in, frame_out, luma in zip(before.planes, after.planes, wanted, strict=True):
        assert frame_out[0].dtype == np.uint16 and frame_out[0].max() > 255
        np.testing.assert_array_equal(frame_out[0], luma)
        np.testing.assert_array_equal(frame_out[1], frame_in[1])
        np.testing.assert_array_equal(frame_out[2], frame_in[2])


@pytest.mark.parametrize("frames", [1, 3])
def test_short_clip_with_odd_duration_via_python_m(tmp_path, tiny_model_path, frames):
    """A real process: exit 0, same count and timestamps, one plain summary line on stderr."""
    source = make_clip(tmp_path / "short.mov", frames=frames, time_base=Fraction(1001, 30000))
    command = [sys.executable, "-m", "deblur_cli", "video", str(source), "--model"]
    command += [str(tiny_model_path), "--precision", "fp32", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    output = tmp_path / "short_deblurred.mov"
    assert read_clip(output).times == read_clip(source).times
    assert len(read_clip(output).times) == frames
    assert done.stderr.strip().endswith("fps)") and f"{frames} frames in" in done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr


def test_subtitles_are_copied(tmp_path, model_args):
    source = make_clip(tmp_path / "talk.mkv", frames=5, subtitles=[(40, "hello"), (120, "again")])
    result = run_cli("video", source, *model_args)
    assert result.exit_code == 0, result.output
    before, after = read_clip(source), read_clip(tmp_path / "talk_deblurred.mkv")
    assert after.subtitle_packets == before.subtitle_packets
    assert [text for _, text in after.subtitle_packets] == [b"hello", b"again"]
    assert after.subtitle_language == "eng"


def test_tiled_equals_untiled(tmp_path, model_args):
    source = make_clip(tmp_path / "t.mp4", frames=4, width=80, height=64)
    untiled, tiled = tmp_path / "untiled.mp4", tmp_path / "tiled.mp4"
    assert run_cli("video", source, "-o", untiled, *model_args, *LOSSLESS).exit_code == 0
    result = run_cli("video", source, "-o", tiled, "--tile", "32", *model_args, *LOSSLESS)
    assert result.exit_code == 0, result.output
    for a, b in zip(read_clip(untiled).planes, read_clip(tiled).planes, strict=True):
        np.testing.assert_array_equal(a[0], b[0])


def test_time_range_starts_at_zero_and_keeps_audio_in_range(tmp_path, model_args):
    source = make_clip(tmp_path / "range.mp4", frames=12, audio=True)
    output = tmp_path / "cut.mp4"
    result = run_cli("video", source, "-o", output, "--start", "0.2", "--end", "0.32", *model_args)
    assert result.exit_code == 0, result.output
    after, before = read_clip(output), read_clip(source)
    assert after.times == [Fraction(0), Fraction(1, 25), Fraction(2, 25)]
    kept = {data for _, data in after.audio_packets}
    assert kept and kept < {data for _, data in before.audio_packets}
    assert all(0 <= t < Fraction(12, 100) + Fraction(1024, 48000) for t, _ in after.audio_packets)


def test_compare_writes_side_by_side(tmp_path, model_args):
    source = make_clip(tmp_path / "c.mp4", frames=3)
    output = tmp_path / "side.mp4"
    result = run_cli("video", source, "-o", output, "--compare", *model_args, *LOSSLESS)
    assert result.exit_code == 0, result.output
    before, after = read_clip(source), read_clip(output)
    assert (after.width, after.height) == (128, 48)
    for frame_in, frame_out in zip(before.planes, after.planes, strict=True):
        np.testing.assert_array_equal(frame_out[0][:, :64], frame_in[0])
        np.testing.assert_array_equal(frame_out[1][:, 32:], frame_in[1])


def test_several_inputs_go_to_a_folder(tmp_path, model_args):
    clips = [make_clip(tmp_path / f"{name}.mp4", frames=2) for name in ("a", "b")]
    result = run_cli("video", *clips, "-o", tmp_path / "out", *model_args)
    assert result.exit_code == 0, result.output
    for clip in clips:
        assert len(read_clip(tmp_path / "out" / clip.name).times) == 2


def test_corrupt_middle_keeps_the_good_part_or_fails_under_strict(tmp_path, model_args):
    source = make_clip(tmp_path / "good.mp4", frames=40)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes((b * 7 + 13) & 255 for b in data[middle : middle + 3000])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))

    result = run_cli("video", broken, *model_args)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "decoding stopped at frame" in result.output
    kept = read_clip(tmp_path / "broken_deblurred.mp4").times
    assert 0 < len(kept) < 40 and kept == read_clip(source).times[: len(kept)]

    strict_out = tmp_path / "strict.mp4"
    result = run_cli("video", broken, "-o", strict_out, "--strict", *model_args)
    assert result.exit_code == 8 and "decoding stopped" in result.output
    assert not strict_out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", 3, "no such file"),
        ("folder", 3, "is a folder"),
        ("empty", 4, "is empty"),
        ("text", 4, "not a readable video"),
        ("truncated", 4, "not a readable video"),
        ("audio_only", 4, "no video stream"),
        ("exists", 5, "--overwrite"),
        ("same", 5, "is the input"),
        ("several", 5, "-o DIR"),
    ],
)
def test_user_errors_are_one_line_and_leave_nothing(tmp_path, model_args, case, code, message):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    args: list[object] = [clip]
    if case == "missing":
        args = [tmp_path / "nope.mp4"]
    elif case == "folder":
        args = [tmp_path]
    elif case == "empty":
        args = [tmp_path / "empty.mp4"]
        args[0].write_bytes(b"")
    elif case == "text":
        args = [tmp_path / "notes.mp4"]
        args[0].write_text("this is not a video\n" * 50)
    elif case == "truncated":
        args = [tmp_path / "cut.mp4"]
        args[0].write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif case == "audio_only":
        args = [make_audio_only(tmp_path / "sound.m4a")]
    elif case == "exists":
        (tmp_path / "clip_deblurred.mp4").write_bytes(b"keep me")
    elif case == "same":
        args += ["-o", clip]
    elif case == "several":
        args += [make_clip(tmp_path / "other.mp4", frames=2)]
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}

    result = run_cli("video", *args, *model_args)

    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()} == before
    assert leftovers(tmp_path) == []


def test_api_reports_no_frames_in_range(tmp_path, tiny_model_path):
    source = make_clip(tmp_path / "r.mp4", frames=3)
    engine = Deblurrer(load_model(str(tiny_model_path)), device="cpu", precision="fp32")
    with pytest.raises(InvalidMediaError, match="requested time range"):
        deblur_video(source, tmp_path / "o.mp4", engine, start=5.0, end=6.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.mp4"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_midway_removes_partial_output(tmp_path, tiny_model_path, signum, code):
    source = make_clip(tmp_path / "long.mp4", frames=400, width=96, height=64)
    command = [sys.executable, "-m", "deblur_cli", "video", str(source), "--model"]
    command += [str(tiny_model_path), "--precision", "fp32", "--device", "cpu", "-q"]
    process = start_interruptible(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size for p in tmp_path.iterdir() if ".partial-" in p.name):
        assert process.poll() is None and time.monotonic() < deadline, "never started writing"
        time.sleep(0.05)
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_memory_does_not_grow_with_length(tmp_path, tiny_model_path):
    """Peak Python-side memory (numpy planes, packets, queues) for 5x more frames stays flat."""
    engine = Deblurrer(load_model(str(tiny_model_path)), device="cpu", precision="fp32")
    peaks = []
    for frames in (24, 120):
        source = make_clip(tmp_path / f"m{frames}.mp4", frames=frames, audio=True)
        tracemalloc.start()
        deblur_video(source, tmp_path / f"o{frames}.mp4", engine)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.2, peaks
