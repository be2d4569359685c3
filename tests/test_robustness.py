"""Bad input, interruptions and tampering (issue 7): one case per item, through the real CLI.

Every case states what must happen - an exit code, and for failures the words of the one-line
error - and the same checks then run on all of them: the input files are byte-for-byte unchanged,
no temporary (``.partial-``) file or folder is left anywhere, and a failed run leaves no output
under the final name. Successful cases also check the output itself.

Some conditions cannot be made with chmod because the tests run as root (root ignores permission
bits), so they are made honestly in other ways: "output folder not writable" is a path whose
parent is a regular file (mkdir fails with ENOTDIR) and, where the kernel refuses it even to
root, a path in sysfs (EACCES); "disk full" is an RLIMIT_FSIZE in a subprocess (writes fail with
EFBIG) and, when mounting is allowed, a real 64 KiB tmpfs (ENOSPC).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_audio_only, make_clip, read_clip, start_interruptible
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from deblur_cli.models import FAST, DBLRNet
from deblur_cli.weights import read_metadata, save_model

REPO = Path(__file__).resolve().parent.parent
FAST_ENCODE = ["--preset", "ultrafast"]


# -- the generic contract --------------------------------------------------------------------------


@dataclass
class Plan:
    """What one case runs and what a success must produce."""

    args: list[object]
    outputs: list[Path] = field(default_factory=list)  # must exist on success, never on failure
    verify: Callable[[], None] | None = None  # more checks of a successful output
    limit_file_size: int | None = None  # run in a subprocess under RLIMIT_FSIZE


@dataclass(frozen=True)
class Case:
    name: str
    code: int
    message: str  # in the error line (failures) or the output (successes, e.g. a warning)
    arrange: Callable[[Path, Path], Plan]


CASES: list[Case] = []


def case(name: str, code: int, message: str = "") -> Callable:
    def register(arrange: Callable[[Path, Path], Plan]) -> Callable[[Path, Path], Plan]:
        CASES.append(Case(name, code, message, arrange))
        return arrange

    return register


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (paths relative to it)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def partial_leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".partial-" in p.name)


def model_options(model: Path) -> list[str]:
    return ["--model", str(model), "--device", "cpu", "--precision", "fp32", "-q"]


def run_in_process(args: list[str]) -> tuple[int, str]:
    from deblur_cli.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.output


FSIZE_RUNNER = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from deblur_cli.cli import main
    main(sys.argv[2:], prog_name="deblur")
    """
)


def run_with_file_size_limit(args: list[str], limit: int, cwd: Path) -> tuple[int, str]:
    command = [sys.executable, "-c", FSIZE_RUNNER, str(limit), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("item", CASES, ids=lambda c: c.name)
def test_matrix(item: Case, tmp_path: Path, tiny_model_path: Path) -> None:
    plan = item.arrange(tmp_path, tiny_model_path)
    before = snapshot(tmp_path)
    args = [str(a) for a in plan.args]

    if plan.limit_file_size is None:
        code, output = run_in_process(args)
    else:
        code, output = run_with_file_size_limit(args, plan.limit_file_size, tmp_path)

    assert code == item.code, output
    assert "Traceback" not in output and ".partial-" not in output  # temporary names stay hidden
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before, "an input file changed"
    assert partial_leftovers(tmp_path) == []
    if item.code == 0:
        assert item.message in output
        for path in plan.outputs:
            assert path.exists(), f"missing output {path}"
        if plan.verify:
            plan.verify()
    else:
        lines = output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), output
        assert item.message in lines[0]
        assert set(after) == set(before), f"new files: {set(after) - set(before)}"
        for path in plan.outputs:
            assert not path.exists()


# -- video inputs ----------------------------------------------------------------------------------


def video_plan(
    source: Path, model: Path, output: Path | None = None, *extra: object, **kw: object
) -> Plan:
    output = output or source.with_name(f"{source.stem}_out.mp4")
    return Plan(["video", source, "-o", output, *FAST_ENCODE, *extra, *model_options(model)],
                [output], **kw)  # fmt: skip


def same_timing(source: Path, output: Path) -> Callable[[], None]:
    def verify() -> None:
        wanted, got = read_clip(source), read_clip(output)
        assert got.times == wanted.times and (got.width, got.height) == (
            wanted.width,
            wanted.height,
        )

    return verify


@case("video: missing path", 3, "no such file")
def _(tmp: Path, model: Path) -> Plan:
    return video_plan(tmp / "nope.mp4", model)


@case("video: a directory instead of a file", 3, "is a folder")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "dir.mp4").mkdir()
    return video_plan(tmp / "dir.mp4", model, tmp / "out.mp4")


@case("video: empty file", 4, "is empty")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "empty.mp4").write_bytes(b"")
    return video_plan(tmp / "empty.mp4", model)


@case("video: text file named .mp4", 4, "not a readable video")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "notes.mp4").write_text("not a video\n" * 100)
    return video_plan(tmp / "notes.mp4", model)


@case("video: truncated MP4 without moov", 4, "not a readable video")
def _(tmp: Path, model: Path) -> Plan:
    data = make_clip(tmp / "full.mp4", frames=6).read_bytes()
    moov = data.index(b"moov") - 4  # the atom starts with its 4-byte size
    assert moov > data.index(b"mdat")  # the index comes last, so cutting it keeps the frames
    (tmp / "cut.mp4").write_bytes(data[:moov])
    (tmp / "full.mp4").unlink()
    return video_plan(tmp / "cut.mp4", model)


def corrupt_middle(tmp: Path) -> tuple[Path, Path]:
    source = make_clip(tmp / "good.mp4", frames=30)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes((b * 7 + 13) & 255 for b in data[middle : middle + 3000])
    (tmp / "broken.mp4").write_bytes(bytes(data))
    return source, tmp / "broken.mp4"


@case("video: corrupt mid-stream keeps the good part", 0, "decoding stopped at frame")
def _(tmp: Path, model: Path) -> Plan:
    source, broken = corrupt_middle(tmp)
    output = tmp / "kept.mp4"

    def verify() -> None:
        kept = read_clip(output).times
        assert 0 < len(kept) < 30 and kept == read_clip(source).times[: len(kept)]

    return video_plan(broken, model, output, verify=verify)


@case("video: corrupt mid-stream with --strict", 8, "decoding stopped at frame")
def _(tmp: Path, model: Path) -> Plan:
    _, broken = corrupt_middle(tmp)
    return video_plan(broken, model, tmp / "strict.mp4", "--strict")


@case("video: --overwrite keeps the old output when the run fails", 8, "decoding stopped")
def _(tmp: Path, model: Path) -> Plan:
    _, broken = corrupt_middle(tmp)
    (tmp / "previous.mp4").write_bytes(b"the previous result")  # the snapshot checks it survives
    return Plan(["video", broken, "-o", tmp / "previous.mp4", "--overwrite", "--strict",
                 *model_options(model)])  # fmt: skip


@case("video: a device instead of a file", 3, "is not a regular file")
def _(tmp: Path, model: Path) -> Plan:
    return video_plan(Path("/dev/zero"), model, tmp / "out.mp4")


@case("video: audio but no video stream", 4, "no video stream")
def _(tmp: Path, model: Path) -> Plan:
    return video_plan(make_audio_only(tmp / "sound.m4a"), model)


def short_clip_case(frames: int) -> None:
    @case(f"video: {frames}-frame clip", 0, "")
    def _(tmp: Path, model: Path) -> Plan:
        source = make_clip(tmp / "short.mp4", frames=frames)
        output = tmp / "short_out.mp4"
        return video_plan(source, model, output, verify=same_timing(source, output))


for _frames in (1, 2, 3, 4):
    short_clip_case(_frames)


@case("video: odd width and height", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "odd.mkv", frames=3, width=63, height=47, codec="ffv1", options={})
    output = tmp / "odd_out.mkv"
    return video_plan(source, model, output, verify=same_timing(source, output))


@case("video: 10-bit", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "deep.mkv", frames=3, pix_fmt="yuv420p10le")
    output = tmp / "deep_out.mkv"

    def verify() -> None:
        same_timing(source, output)()
        assert read_clip(output).pix_fmt == "yuv420p10le"

    return video_plan(source, model, output, verify=verify)


@case("video: variable frame rate", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "vfr.mp4", pts=[0, 1, 4, 5, 11], time_base=Fraction(1, 50), rate=None)
    output = tmp / "vfr_out.mp4"
    return video_plan(source, model, output, verify=same_timing(source, output))


@case("video: rotation metadata", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "rot.mp4", frames=3, rotation=90)
    output = tmp / "rot_out.mp4"

    def verify() -> None:
        same_timing(source, output)()
        assert read_clip(output).rotation == read_clip(source).rotation != 0

    return video_plan(source, model, output, verify=verify)


@case("video: output path equal to the input", 5, "is the input")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "same.mp4", frames=2)
    return Plan(["video", source, "-o", source, "--overwrite", *model_options(model)])


@case("video: output folder not writable (parent is a file)", 5, "cannot create folder")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "in.mp4", frames=2)
    (tmp / "file.txt").write_text("a regular file")
    return video_plan(source, model, tmp / "file.txt" / "out.mp4")


def sysfs_refuses_files() -> bool:
    """sysfs refuses new files even to root: an honest unwritable folder for these tests."""
    try:
        os.close(os.open("/sys/deblur-probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except OSError:
        return Path("/sys").is_dir()
    os.unlink("/sys/deblur-probe")
    return False


@case("video: output folder not writable (sysfs)", 5, "cannot write in /sys")
def _(tmp: Path, model: Path) -> Plan:
    if not sysfs_refuses_files():
        pytest.skip("no read-only sysfs here")
    source = make_clip(tmp / "in.mp4", frames=2)
    return video_plan(source, model, Path("/sys/deblur_out.mp4"))


@case("video: disk full (RLIMIT_FSIZE)", 5, "File too large")
def _(tmp: Path, model: Path) -> Plan:
    source = make_clip(tmp / "big.mp4", frames=12, width=96, height=64)
    plan = video_plan(source, model, tmp / "out.mp4", "--crf", "0")
    plan.limit_file_size = 16_000  # the lossless output needs several times this
    return plan


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "64k") -> Iterator[Path]:
    """A real tmpfs of ``size`` (needs root and mount rights; skips otherwise)."""
    where.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path.parent / f"{tmp_path.name}-disk") as disk:
        yield disk


def test_disk_full_on_a_real_small_filesystem(tmp_path, tiny_model_path, tiny_disk) -> None:
    """ENOSPC from a 64 KiB tmpfs: one line, exit 5, nothing left on the small disk."""
    source = make_clip(tmp_path / "big.mp4", frames=12, width=96, height=64)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(6):
        noise = np.random.default_rng(index).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{index}.png"), noise)
    before = snapshot(tmp_path)
    runs = [
        ["video", source, "-o", tiny_disk / "out.mp4", "--crf", "0", *FAST_ENCODE],
        ["frames", folder, "-o", tiny_disk / "out"],
    ]
    for args in runs:
        code, output = run_in_process([str(a) for a in args] + model_options(tiny_model_path))
        assert code == 5, output
        assert output.startswith("error: ") and len(output.strip().splitlines()) == 1
        assert "No space left on device" in output and ".partial-" not in output
        assert list(tiny_disk.iterdir()) == []
    assert snapshot(tmp_path) == before


# -- weights ---------------------------------------------------------------------------------------


def weights_plan(tmp: Path, weights: Path) -> Plan:
    source = make_clip(tmp / "in.mp4", frames=2)
    args = ["video", source, "-o", tmp / "out.mp4", "--model", weights, "--device", "cpu"]
    return Plan(args, [tmp / "out.mp4"])


@case("weights: a directory instead of a file", 6, "is a directory")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "weights.safetensors").mkdir()
    return weights_plan(tmp, tmp / "weights.safetensors")


@case("weights: truncated file", 6, "cut.safetensors")
def _(tmp: Path, model: Path) -> Plan:
    data = model.read_bytes()
    (tmp / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return weights_plan(tmp, tmp / "cut.safetensors")


@case("weights: wrong tensor shapes", 6, "does not hold a valid model")
def _(tmp: Path, model: Path) -> Plan:
    other = save_model(DBLRNet(FAST), tmp / "fast.safetensors")
    save_file(load_file(str(other)), str(tmp / "mixed.safetensors"), metadata=read_metadata(model))
    other.unlink()
    return weights_plan(tmp, tmp / "mixed.safetensors")


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@case("weights: a pickle is refused, never unpickled", 6, "not a safetensors")
def _(tmp: Path, model: Path) -> Plan:
    marker = tmp / "unpickled"
    for name in ("evil.safetensors", "evil.pt"):
        (tmp / name).write_bytes(pickle.dumps(_Payload(marker)))
    plan = weights_plan(tmp, tmp / "evil.pt")
    plan.outputs.append(marker)  # must never exist
    return plan


# -- image folders ---------------------------------------------------------------------------------


def image_folder(folder: Path, sizes: list[tuple[int, int]], suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(sizes):
        rng = np.random.default_rng(index)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        paths.append(folder / f"frame{index + 1}{suffix}")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def frames_plan(folder: Path, model: Path, output: Path, *extra: object) -> Plan:
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []

    def verify() -> None:
        for name in names:
            original, restored = cv2.imread(str(folder / name)), cv2.imread(str(output / name))
            assert restored is not None and restored.shape == original.shape

    return Plan(["frames", folder, "-o", output, *extra, *model_options(model)], [output], verify)


@case("frames: missing folder", 3, "no such folder")
def _(tmp: Path, model: Path) -> Plan:
    return frames_plan(tmp / "nope", model, tmp / "out")


@case("frames: a file where a folder is expected", 3, "is not a folder")
def _(tmp: Path, model: Path) -> Plan:
    first = image_folder(tmp / "in", [(32, 48)])[0]
    return frames_plan(first, model, tmp / "out")


def short_folder_case(count: int) -> None:
    @case(f"frames: {count} frame(s)", 0, "")
    def _(tmp: Path, model: Path) -> Plan:
        image_folder(tmp / "in", [(32, 48)] * count)
        return frames_plan(tmp / "in", model, tmp / "out")


for _count in (1, 2, 3, 4):
    short_folder_case(_count)


@case("frames: odd width and height", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    image_folder(tmp / "in", [(33, 47)] * 3)
    return frames_plan(tmp / "in", model, tmp / "out")


@case("frames: mixed sizes", 0, "")
def _(tmp: Path, model: Path) -> Plan:
    image_folder(tmp / "in", [(32, 48), (32, 48), (40, 56), (24, 24)])
    return frames_plan(tmp / "in", model, tmp / "out")


@case("frames: an unreadable file is named", 4, "frame3.png")
def _(tmp: Path, model: Path) -> Plan:
    paths = image_folder(tmp / "in", [(32, 48)] * 4)
    paths[2].write_bytes(paths[2].read_bytes()[:40])  # a PNG cut inside its header
    return frames_plan(tmp / "in", model, tmp / "out")


@case("frames: output folder equal to the input", 5, "is the input folder")
def _(tmp: Path, model: Path) -> Plan:
    image_folder(tmp / "in", [(32, 48)] * 2)
    return Plan(["frames", tmp / "in", "-o", tmp / "in", "--overwrite", *model_options(model)])


@case("frames: output folder not writable (parent is a file)", 5, "cannot create folder")
def _(tmp: Path, model: Path) -> Plan:
    image_folder(tmp / "in", [(32, 48)] * 2)
    (tmp / "file.txt").write_text("a regular file")
    return frames_plan(tmp / "in", model, tmp / "file.txt" / "out")


@case("frames: output folder not writable (sysfs)", 5, "cannot write in /sys")
def _(tmp: Path, model: Path) -> Plan:
    if not sysfs_refuses_files():
        pytest.skip("no read-only sysfs here")
    image_folder(tmp / "in", [(32, 48)] * 2)
    return frames_plan(tmp / "in", model, Path("/sys/deblur_out"))


@case("frames: disk full (RLIMIT_FSIZE)", 5, "File too large")
def _(tmp: Path, model: Path) -> Plan:
    image_folder(tmp / "in", [(64, 96)] * 4)  # noise PNGs of ~18 KB each
    plan = frames_plan(tmp / "in", model, tmp / "out")
    plan.limit_file_size = 8_000
    return plan


# -- bench and train -------------------------------------------------------------------------------


@case("bench: missing dataset", 7, "no such folder")
def _(tmp: Path, model: Path) -> Plan:
    args = ["bench", "--dataset", "dvd", "--root", tmp / "nope", "--model", model]
    return Plan([*args, "--device", "cpu", "--json", tmp / "r.json"], [tmp / "r.json"])


@case("bench: empty dataset folder", 7, "no blurry/sharp folder pairs")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "void").mkdir()
    args = ["bench", "--dataset", "folder", "--root", tmp / "void", "--model", model]
    return Plan([*args, "--device", "cpu", "--json", tmp / "r.json"], [tmp / "r.json"])


@case("train: missing data", 7, "no such folder")
def _(tmp: Path, model: Path) -> Plan:
    args = ["train", "--data", f"dvd:{tmp / 'nope'}", "-o", tmp / "run", "--preset", "tiny"]
    return Plan([*args, "--steps", "1", "-q"], [tmp / "run"])


@case("train: empty data folder", 7, "no blurry/sharp folder pairs")
def _(tmp: Path, model: Path) -> Plan:
    (tmp / "void").mkdir()
    args = ["train", "--data", f"folder:{tmp / 'void'}", "-o", tmp / "run", "--preset", "tiny"]
    return Plan([*args, "--steps", "1", "-q"], [tmp / "run"])


@case("train: data without a layout", 7, "LAYOUT:PATH")
def _(tmp: Path, model: Path) -> Plan:
    args = ["train", "--data", str(tmp / "nope"), "-o", tmp / "run", "--preset", "tiny"]
    return Plan([*args, "--steps", "1", "-q"], [tmp / "run"])


# -- signals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_frames_signal_midway_removes_partial_output(tmp_path, tiny_model_path, signum, code):
    """(`deblur video` has the same test in test_video.py.)"""
    image_folder(tmp_path / "in", [(64, 96)] * 2000)  # enough that the run outlasts the signal
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "deblur_cli", "frames", str(tmp_path / "in")]
    command += ["-o", str(tmp_path / "out"), *model_options(tiny_model_path)]
    process = start_interruptible(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(
        any(folder.iterdir()) for folder in tmp_path.glob(".out.partial-*") if folder.is_dir()
    ):
        assert process.poll() is None and time.monotonic() < deadline, "never started writing"
        time.sleep(0.02)
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        f"error: interrupted by signal {signum}; partial output removed"
    ]
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# -- an 8K frame on the CPU ------------------------------------------------------------------------

EIGHT_K_RUNNER = textwrap.dedent(
    """
    import resource, sys
    limit = int(sys.argv[1]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv[2] == "untiled":  # the control: the same run with tiling turned off
        from deblur_cli import engine
        init = engine.Deblurrer.__init__
        def untiled(self, *args, **kwargs):
            init(self, *args, **{**kwargs, "memory_budget": 1 << 50})
        engine.Deblurrer.__init__ = untiled
    from deblur_cli.cli import main
    main(sys.argv[3:], prog_name="deblur")
    """
)
EIGHT_K_MEMORY_MIB = 4096


def run_capped(args: list[str], mode: str) -> subprocess.CompletedProcess:
    # Fewer malloc arenas and threads keep the address space (which RLIMIT_AS counts) close to
    # what is really used, on any number of cores.
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-c", EIGHT_K_RUNNER, str(EIGHT_K_MEMORY_MIB), mode, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def test_8k_frame_tiles_automatically_under_a_memory_cap(tmp_path, tiny_model_path) -> None:
    """A 7680x4320 frame through `deblur frames` in a process capped at 4 GiB of address space.

    Untiled, the network's activations alone need ~3.2 GB on top of torch: the control run (tiling
    off) must fail with the one-line out-of-memory error; the normal run must tile and succeed.
    """
    waves = np.outer(np.cos(np.arange(4320) / 7.0), np.sin(np.arange(7680) / 9.0))
    gray = (128 + 60 * waves).astype(np.uint8)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "f1.png"), gray, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del waves
    args = [
        "frames",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        *model_options(tiny_model_path),
    ]

    control = run_capped(args, "untiled")
    assert control.returncode == 9, control.stderr
    assert (
        control.stderr.startswith("error: ran out of memory") and "Traceback" not in control.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

    done = run_capped(args, "default")
    assert done.returncode == 0, done.stderr
    restored = cv2.imread(str(tmp_path / "out" / "f1.png"), cv2.IMREAD_UNCHANGED)
    assert restored.shape == gray.shape and restored.dtype == np.uint8
    assert 0 < np.abs(restored.astype(int) - gray).mean() < 40  # processed, not garbage


# -- random and mutated bytes as a video -----------------------------------------------------------


class Hang(Exception):
    """Raised by the watchdog alarm: one example ran far past its time bound."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def remux(source: Path, target: Path, **open_options: object) -> Path:
    """Copy every packet into another container layout (no re-encoding)."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w", **open_options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def seed_clips(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """A small H.264 + AAC clip as MP4 with its index first (so a cut end or damaged middle
    still opens and decodes part-way) and as MPEG-TS (no index at all, decoders resync)."""
    folder = tmp_path_factory.mktemp("seed")
    clip = make_clip(folder / "seed.mp4", frames=6, width=48, height=32, audio=True)
    fast = remux(clip, folder / "fast.mp4", options={"movflags": "faststart"})
    stream = remux(clip, folder / "seed.ts", format="mpegts")
    return [fast.read_bytes(), stream.read_bytes()]


edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=12)


@st.composite
def video_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """Random bytes, or a seed clip with byte edits, a cut-out chunk and/or a truncated end."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(seeds)))
    for where, value in draw(edits):
        data[int(where * len(data))] = value
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        del data[start : start + draw(st.integers(1, 512))]
    return bytes(data[: draw(st.integers(1, len(data)))] if draw(st.booleans()) else data)


def test_random_and_mutated_bytes_never_crash_or_hang(
    tmp_path_factory, seed_clips, tiny_model_path
):
    options = model_options(tiny_model_path) + FAST_ENCODE

    @settings(
        max_examples=40,
        deadline=10_000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=video_bytes(seed_clips))
    def check(data: bytes) -> None:
        folder = tmp_path_factory.mktemp("fuzz")
        source, output = folder / "in.mp4", folder / "out.mp4"
        source.write_bytes(data)
        with watchdog(30):
            code, text = run_in_process(["video", str(source), "-o", str(output), *options])
        assert source.read_bytes() == data and partial_leftovers(folder) == []
        if code == 0:
            assert len(read_clip(output).times) > 0
        else:
            lines = text.strip().splitlines()
            assert code in (3, 4, 5, 8) and len(lines) == 1 and lines[0].startswith("error: ")
            assert not output.exists()
        shutil.rmtree(folder)

    check()
