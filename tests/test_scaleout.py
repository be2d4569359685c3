"""`deblur video` under torchrun: the input files shared out across ranks, or one video split
by time across them and joined (2 gloo ranks on the CPU, and the parts run in one process)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import click
import numpy as np
import pytest
from conftest import free_port, pattern_planes, planes_to_frame, read_clip

from deblur_cli.api import atomic_file, deblur_video
from deblur_cli.color import luma_to_unit
from deblur_cli.commands.progress import Feedback
from deblur_cli.commands.video import _split_jobs, time_split_wanted
from deblur_cli.distributed import Launch, shard, threads_per_process
from deblur_cli.engine import Deblurrer
from deblur_cli.estimate import Estimator
from deblur_cli.scenes import CutDetector, replay_cuts
from deblur_cli.timesplit import SplitPlan, join_parts, make_plan, part_differences, restore_part
from deblur_cli.video import EncodeSettings
from deblur_cli.weights import load_model


def test_shard_gives_every_item_to_exactly_one_rank() -> None:
    items = list(range(7))
    shares = [shard(items, Launch(rank=r, world_size=3)) for r in range(3)]
    assert sorted(item for share in shares for item in share) == items
    assert shares[0] == [0, 3, 6]


def test_threads_are_divided_between_local_processes() -> None:
    one = threads_per_process(Launch())
    assert threads_per_process(Launch(local_world_size=2)) == max(1, one // 2)


def test_torchrun_two_ranks_split_the_files(
    clip_factory: Callable[..., Path], model_args: list[str], tmp_path: Path
) -> None:
    inputs = [clip_factory(f"clip{i}.mp4", frames=3 + i) for i in range(3)]
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", free_port(), "-m", "deblur_cli", "video", *map(str, inputs),
        "-o", str(out), *model_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # Each file was deblurred once (one summary line each), not once per rank.
    summaries = [line for line in done.stderr.splitlines() if " -> " in line]
    assert len(summaries) == 3, done.stderr
    for index, source in enumerate(inputs):
        result = read_clip(out / source.name)
        assert len(result.times) == 3 + index


# -- one video split by time across ranks ---------------------------------------------------------

VFR = [0, 2, 3, 7, 8, 11, 12, 13, 15, 16, 18, 21, 22, 23]  # irregular steps (time base 1/25)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]


def tiny_engine(model_path: Path) -> Deblurrer:
    return Deblurrer(load_model(str(model_path)), device="cpu", precision="fp32")


def split_in_one_process(
    source: Path,
    destination: Path,
    engine: Deblurrer,
    parts: int,
    settings: EncodeSettings,
    strength: float = 1.0,
) -> None:
    """What the ranks of a time-split run do, one after another (no process group needed)."""
    plan = make_plan(source, parts)
    assert isinstance(plan, SplitPlan), plan
    differences = [d for part in range(parts) for d in part_differences(source, plan, part)]
    cuts = replay_cuts(differences)
    written = []
    for part in range(parts):
        if plan.bounds(part)[0] < plan.bounds(part)[1]:
            written.append(plan.part_path(destination, part))
            restore_part(source, written[-1], plan, part, engine, settings, cuts, None, strength)
    with atomic_file(destination) as temporary:
        join_parts(source, written, temporary, plan, str(destination))
    for path in written:
        path.unlink()


def assert_same_video(single: Path, split: Path, luma_tolerance: float = 0.0) -> None:
    """Same frames at the same times, same audio packets, same tags; luma within tolerance."""
    one, many = read_clip(single), read_clip(split)
    assert many.times == one.times
    assert many.audio_packets == one.audio_packets
    assert many.subtitle_packets == one.subtitle_packets
    assert (many.rotation, many.color, many.pix_fmt) == (one.rotation, one.color, one.pix_fmt)
    for a, b in zip(one.planes, many.planes, strict=True):
        difference = np.abs(a[0].astype(np.int32) - b[0].astype(np.int32)).mean()
        assert difference <= luma_tolerance


def scene_clip(path: Path, frames: int = 16, cuts: tuple[int, ...] = (7, 8, 12)) -> Path:
    """A lossless clip with scene cuts at ``cuts``, a flicker and, at frame 3, a brightness step
    that one detector over the whole clip does not call a cut (it is small next to the flicker)
    but a detector starting at frame 2, with no history, does."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        scene = 0
        for index in range(frames):
            scene += index in cuts
            planes = pattern_planes(index, 64, 48)
            offset = 12 * (index % 2) + 45 * (index >= 3) + 110 * (scene % 2)
            planes[0] = planes[0] // 4 + np.uint8(offset)
            frame = planes_to_frame(planes, "yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_parts_are_balanced_contiguous_and_cover_every_frame() -> None:
    for count, parts in ((14, 2), (7, 3), (1, 2), (3, 8)):
        plan = SplitPlan(tuple(range(count)), None, parts, "t")  # type: ignore[arg-type]
        bounds = [plan.bounds(part) for part in range(parts)]
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        sizes = [stop - first for first, stop in bounds]
        assert max(sizes) - min(sizes) <= 1


def test_split_only_under_torchrun_and_not_with_a_time_range() -> None:
    assert time_split_wanted(False, 1, None, None)
    assert not time_split_wanted(False, 2, None, None)
    assert time_split_wanted(True, 2, None, None)
    assert not time_split_wanted(False, 1, 1.0, None)
    with pytest.raises(click.UsageError):
        time_split_wanted(True, 1, None, 2.0)


def test_cut_decisions_from_parts_equal_one_detector(tmp_path: Path) -> None:
    """Each part measures its own differences; replayed together they give the same cuts as
    one detector over the whole video, where a detector fed only a part's frames would not."""
    source = scene_clip(tmp_path / "scenes.mp4")
    planes = [luma_to_unit(p[0], 8, False) for p in read_clip(source).planes]
    detector, fresh = CutDetector(), CutDetector()
    whole = [detector.starts_scene(plane) for plane in planes]
    assert [i for i, cut in enumerate(whole) if cut] == [7, 8, 12]
    assert [fresh.starts_scene(plane) for plane in planes[2:4]] == [False, True]  # frame 3
    plan = make_plan(source, 4)
    assert isinstance(plan, SplitPlan) and plan.bounds(1) == (4, 8)
    parts = [part_differences(source, plan, part) for part in range(4)]
    assert replay_cuts([d for part in parts for d in part]) == whole


@pytest.mark.parametrize("parts", [3, 4])
def test_split_windows_equal_single_run_across_scene_cuts(
    tmp_path: Path, tiny_model_path: Path, parts: int
) -> None:
    """Lossless: every frame of the joined file equals the single run's, cuts at the seams."""
    source = scene_clip(tmp_path / "scenes.mp4")
    engine = tiny_engine(tiny_model_path)
    deblur_video(source, tmp_path / "one.mp4", engine, crf=0)
    split_in_one_process(source, tmp_path / "many.mp4", engine, parts, EncodeSettings(crf=0))
    assert_same_video(tmp_path / "one.mp4", tmp_path / "many.mp4")


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_split_parts_apply_strength_like_a_single_run(
    tmp_path: Path, tiny_model_path: Path, strength: float
) -> None:
    """Lossless: --strength blends every part's frames as a single run does; at 0 the joined
    file's luma is the input's, bit for bit (the parts once ignored the strength)."""
    source = scene_clip(tmp_path / "scenes.mp4", frames=10, cuts=(6,))
    engine = tiny_engine(tiny_model_path)
    single, split = tmp_path / "one.mp4", tmp_path / "many.mp4"
    deblur_video(source, single, engine, crf=0, strength=strength)
    split_in_one_process(source, split, engine, 3, EncodeSettings(crf=0), strength=strength)
    assert_same_video(single, split)
    same = [
        np.array_equal(a[0], b[0])
        for a, b in zip(read_clip(source).planes, read_clip(split).planes, strict=True)
    ]
    assert all(same) if strength == 0.0 else not any(same)


def test_split_command_passes_strength_and_prints_the_estimate(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The split path of `deblur video` (one rank here, no process group): the estimate line
    comes before the summary, and --strength 0 gives back the input's luma exactly."""
    source = scene_clip(tmp_path / "scenes.mp4", frames=6, cuts=())
    engine = tiny_engine(tiny_model_path)
    out = tmp_path / "out.mp4"
    options = {"crf": 0, "preset": "ultrafast", "strength": 0.0}
    _split_jobs([(source, out)], engine, Launch(), Feedback(), Estimator(engine, "tiny"), **options)
    estimate, summary = capsys.readouterr().err.strip().splitlines()
    assert estimate.startswith("tiny on cpu (fp32): 6 frames 64x48, 1 tile, ")
    assert estimate.endswith(" in all") and summary.startswith(f"{source} -> ")
    for before, after in zip(read_clip(source).planes, read_clip(out).planes, strict=True):
        np.testing.assert_array_equal(after[0], before[0])


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("quiet", [False, True])
def test_split_estimate_once_on_rank_zero_for_all_processes(
    tmp_path: Path,
    tiny_model_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    rank: int,
    quiet: bool,
) -> None:
    """Under torchrun only rank 0 measures and prints, the total is the wall time of the
    parts running at once, and --quiet prints nothing (the split itself is stubbed out)."""
    source = scene_clip(tmp_path / "scenes.mp4", frames=6, cuts=())
    engine = tiny_engine(tiny_model_path)
    calls: list[dict] = []

    def split(*args: object, **options: object) -> None:
        calls.append(options)

    monkeypatch.setattr("deblur_cli.commands.video.deblur_video_split", split)
    launch = Launch(rank=rank, world_size=2)
    estimator = Estimator(engine, "tiny")
    _split_jobs([(source, tmp_path / "o.mp4")], engine, launch, Feedback(quiet), estimator)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(calls) == 1
    if rank == 0 and not quiet:
        assert len(lines) == 1 and lines[0].startswith("tiny on cpu (fp32): 6 frames ")
        assert lines[0].endswith(" in all over 2 processes")
    else:
        assert lines == []


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_joined_b_frames_keep_vfr_timestamps_and_audio(
    clip_factory: Callable[..., Path], tiny_model_path: Path, tmp_path: Path, suffix: str
) -> None:
    """x264 with B-frames: each part's encoder starts its own reordering delay, so decode
    times must be mended at the seams; presentation times, audio and subtitles stay the
    input's."""
    cues = [(200, "one"), (500, "two")] if suffix == ".mkv" else []
    source = clip_factory(f"vfr{suffix}", pts=VFR, audio=True, rotation=90, subtitles=cues)
    engine = tiny_engine(tiny_model_path)
    single, split = tmp_path / f"one{suffix}", tmp_path / f"many{suffix}"
    deblur_video(source, single, engine)
    split_in_one_process(source, split, engine, 3, EncodeSettings())
    assert_same_video(single, split, luma_tolerance=8.0)  # crf 18 on a 64x48 noise pattern
    assert read_clip(split).rotation == 90
    assert len(read_clip(split).subtitle_packets) == len(cues)


def test_torchrun_two_ranks_split_one_clip_like_one_process(
    clip_factory: Callable[..., Path], tiny_model_path: Path, model_args: list[str], tmp_path: Path
) -> None:
    """2 gloo ranks, --split-time on two inputs: a VFR clip with audio (lossless, so luma must
    be exact) and a 1-frame clip, shorter than the number of ranks."""
    vfr = clip_factory("vfr.mp4", pts=VFR, audio=True)
    short = clip_factory("short.mp4", frames=1, audio=True)
    out = tmp_path / "out"
    command = [
        *TORCHRUN, "--master-port", free_port(), "-m", "deblur_cli", "video", str(vfr), str(short),
        "--split-time", "-o", str(out), "--crf", "0", *model_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("2 parts") == 2, done.stderr  # rank 0 reports each file once
    assert done.stderr.count(" in all over 2 processes") == 2, done.stderr  # and estimates it
    assert sorted(p.name for p in out.iterdir()) == ["short.mp4", "vfr.mp4"]  # no part left
    engine = tiny_engine(tiny_model_path)
    for source in (vfr, short):
        single = tmp_path / f"single_{source.name}"
        deblur_video(source, single, engine, crf=0)
        assert_same_video(single, out / source.name)
    assert len(read_clip(out / "vfr.mp4").times) == len(VFR)


def rank_pid(marker: str, rank: int) -> int | None:
    """The process of ``rank`` among those started with ``marker`` in their environment."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if marker.encode() in environ and f"RANK={rank}".encode() in environ:
                return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks via /proc")
def test_interrupted_rank_leaves_no_partial_file(
    clip_factory: Callable[..., Path], model_args: list[str], tmp_path: Path
) -> None:
    """SIGTERM to rank 1 while it writes its part: torchrun stops rank 0, and neither leaves
    a part file or a joined file behind."""
    source = clip_factory("long.mp4", frames=60, width=320, height=240)
    out = tmp_path / "out"
    out.mkdir()
    marker = f"DEBLUR_TEST_RUN={os.getpid()}"
    command = [
        *TORCHRUN, "--master-port", free_port(), "-m", "deblur_cli", "video", str(source),
        "-o", str(out / "long.mp4"), *model_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", marker.split("=")[0]: marker.split("=")[1]}
    run = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".long.partial-*-part0001.mp4")):
            assert run.poll() is None and time.monotonic() < deadline, "rank 1 never started"
            time.sleep(0.05)
        pid = rank_pid(marker, rank=1)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        _, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode != 0
    assert "interrupted" in stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("strict", [False, True])
def test_a_video_done_by_rank_zero_alone_honours_strict(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    """A file that cannot be split falls back to one process; a corrupt one then keeps its good
    part, or with --strict fails as a single-process run does."""
    from test_robustness import corrupt_middle

    from deblur_cli.errors import PartialDecodeError

    _, broken = corrupt_middle(tmp_path)
    monkeypatch.setattr("deblur_cli.timesplit.make_plan", lambda *_: "it cannot be read")
    engine = tiny_engine(tiny_model_path)
    out = tmp_path / "out.mp4"
    options = {"crf": 0, "preset": "ultrafast", "strict": strict}

    def run() -> None:
        jobs = [(broken, out)]
        _split_jobs(jobs, engine, Launch(), Feedback(True), Estimator(engine, "t"), **options)

    if strict:
        with pytest.raises(PartialDecodeError):
            run()
        assert not out.exists()
    else:
        run()
        assert 0 < len(read_clip(out).times) < 30


def test_the_split_estimate_counts_one_process_for_a_video_that_cannot_be_split(
    tmp_path: Path,
    tiny_model_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rank 0 does such a file alone, so dividing by the processes would promise too little."""
    source = scene_clip(tmp_path / "scenes.mp4", frames=6, cuts=())
    engine = tiny_engine(tiny_model_path)
    monkeypatch.setattr("deblur_cli.commands.video.deblur_video_split", lambda *a, **k: None)
    monkeypatch.setattr("deblur_cli.commands.video.frame_timestamps", lambda _: "no timestamps")
    launch = Launch(rank=0, world_size=2)
    _split_jobs([(source, tmp_path / "o.mp4")], engine, launch, Feedback(), Estimator(engine, "t"))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(" in all") and "processes" not in line
