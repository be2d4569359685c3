"""The Python API: deblur a video file, a folder of frames, or images in memory.

Each call wires reader -> engine -> writer. Decoding and encoding run in their own threads with
bounded queues, so the network (in the calling thread) never waits for I/O and memory does not
grow with the length of the input. Outputs are written under a temporary name in the output
folder and renamed only when complete; any error, Ctrl-C or SIGTERM removes them.

    from deblur_cli import Deblurrer, load_model, deblur_video
    engine = Deblurrer(load_model("dblrnet"))
    print(deblur_video("in.mp4", "out.mp4", engine).line())
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from deblur_cli.color import luma_to_unit, unit_to_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import (
    InputNotFoundError,
    Interrupted,
    InvalidMediaError,
    OutOfMemoryError,
    OutputError,
)
from deblur_cli.frames import (
    ImageParts,
    list_images,
    merge_image,
    read_image,
    split_image,
    write_image,
)
from deblur_cli.strength import check_strength, restore_with_strength
from deblur_cli.video import EncodeSettings, VideoFrameData, VideoReader, VideoWriter

T = TypeVar("T")
Progress = Callable[[int, "int | None"], None]  # (frames done, expected total or None)
QUEUE_FRAMES = 8
THREAD_JOIN_SECONDS = 30.0
# How torch words a failed allocation (CPU allocator, CUDA/MPS out of memory).
OOM_MESSAGES = ("can't allocate memory", "out of memory", "cannot allocate memory")


@dataclass(frozen=True)
class Summary:
    """What one call did; ``line()`` is the one-line report the CLI prints."""

    source: Path
    destination: Path
    frames: int
    seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.source} -> {self.destination}: {self.frames} frames "
            f"in {self.seconds:.1f} s ({self.fps:.1f} fps)"
        )


# -- threads --------------------------------------------------------------------------------


@dataclass
class _Failed:
    error: BaseException


_DONE = object()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Blocking put that gives up (False) once ``stop`` is set, so threads never hang."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class BackgroundReader(Generic[T]):
    """Iterate ``items`` in a thread, ``maxsize`` ahead; its exceptions re-raise here."""

    def __init__(self, items: Iterable[T], maxsize: int = QUEUE_FRAMES, name: str = "reader"):
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not _put(self._queue, item, self._stop):
                    break
            else:
                _put(self._queue, _DONE, self._stop)
        except BaseException as exc:
            _put(self._queue, _Failed(exc), self._stop)
        finally:
            if hasattr(items, "close"):
                items.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(THREAD_JOIN_SECONDS)

    def __enter__(self) -> BackgroundReader[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter(Generic[T]):
    """Hand items to ``consume`` in a thread; its first exception re-raises on put/finish."""

    def __init__(self, consume: Callable[[T], None], maxsize: int = QUEUE_FRAMES, name="writer"):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            try:
                self._consume(item)
            except BaseException as exc:
                self._error = exc
                self._stop.set()

    def put(self, item: T) -> None:
        if not _put(self._queue, item, self._stop):
            self._raise()

    def finish(self) -> None:
        """Wait until every item is consumed; re-raise the consumer's error if it had one."""
        _put(self._queue, _DONE, self._stop)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        raise RuntimeError("writer thread stopped")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(THREAD_JOIN_SECONDS)

    def __enter__(self) -> BackgroundWriter[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- signals and atomic outputs ---------------------------------------------------------------


@contextlib.contextmanager
def interrupts_as_errors() -> Iterator[None]:
    """Turn SIGTERM and Ctrl-C into :class:`Interrupted` so cleanup code runs.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    in_main = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        yield
    except KeyboardInterrupt as exc:
        raise Interrupted(signal.SIGINT) from exc
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def allocation_failures_as_errors() -> Iterator[None]:
    """Turn a failed allocation (numpy's MemoryError, torch's "can't allocate memory" or
    OutOfMemoryError) into one line with what to try, instead of a traceback."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        text = str(exc).lower()
        if not isinstance(exc, MemoryError) and not any(s in text for s in OOM_MESSAGES):
            raise
        raise OutOfMemoryError(
            "ran out of memory; try smaller tiles (--tile 256), --batch 1, or another --device"
        ) from exc


def _temporary_name(final: Path) -> Path:
    """A hidden sibling of ``final`` that keeps its suffix (muxers pick the format by suffix)."""
    return final.with_name(f".{final.stem}.partial-{secrets.token_hex(4)}{final.suffix}")


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place only on success."""
    _make_folder(final.parent)
    temporary = _temporary_name(final)
    try:
        # O_EXCL reserves the name; the default mode lets the umask decide permissions.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise OutputError(f"cannot write in {final.parent}: {exc.strerror or exc}") from exc
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder whose files land in ``final`` only on success.

    A new ``final`` is created by renaming the whole temporary folder; into an existing one the
    files are moved one by one, so files already there that we did not write are never touched.
    """
    parent = final if final.is_dir() else final.parent
    _make_folder(parent)
    temporary = parent / f".{final.name}.partial-{secrets.token_hex(4)}"
    try:
        temporary.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror or exc}") from exc
    try:
        yield temporary
        if final.is_dir():
            for path in temporary.iterdir():
                os.replace(path, final / path.name)
            temporary.rmdir()
        else:
            os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# -- path checks --------------------------------------------------------------------------------


def check_input_file(path: Path | str) -> Path:
    """An existing regular file, or a one-line error saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise InputNotFoundError(
            f"{path} is a folder; `deblur video` takes video files (`deblur frames` takes folders)"
        )
    if not path.is_file():  # a device or a pipe: it cannot be seeked, nor read twice
        raise InputNotFoundError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise InvalidMediaError(f"{path} is empty")
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output_file(source: Path, output: Path, overwrite: bool) -> Path:
    """Refuse writing over the input, and over an existing file unless ``overwrite``."""
    if _same_file(source, output):
        raise OutputError(f"output {output} is the input file; choose another output")
    if output.is_dir():
        raise OutputError(f"output {output} is a folder")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")
    return output


def default_video_output(source: Path) -> Path:
    """``<stem>_deblurred<ext>`` next to the input (.mp4 when the input has no extension)."""
    return source.with_name(f"{source.stem}_deblurred{source.suffix or '.mp4'}")


def plan_video_jobs(
    inputs: Sequence[Path | str], output: Path | str | None = None, overwrite: bool = False
) -> list[tuple[Path, Path]]:
    """Pair every input with its output, checking all of them before any work starts.

    One input: ``output`` is a file, an existing folder, or None (next to the input). Several
    inputs: ``output`` must be a folder (created if missing); files keep their names in it.
    """
    sources = [check_input_file(p) for p in inputs]
    if not sources:
        raise InputNotFoundError("no input video given")
    out = Path(output) if output is not None else None
    if len(sources) > 1:
        if out is None:
            raise OutputError("several inputs need an output folder: -o DIR")
        if out.exists() and not out.is_dir():
            raise OutputError(f"several inputs need an output folder, but {out} is a file")
        targets = [out / s.name for s in sources]
    elif out is None:
        targets = [default_video_output(sources[0])]
    else:
        targets = [out / sources[0].name if out.is_dir() else out]
    seen: dict[Path, Path] = {}
    for source, target in zip(sources, targets, strict=True):
        if (key := target.resolve()) in seen:
            raise OutputError(f"{source} and {seen[key]} would both be written to {target}")
        seen[key] = source
        check_output_file(source, target, overwrite)
    return list(zip(sources, targets, strict=True))


def plan_frames_output(
    source: Path | str, output: Path | str | None, names: Sequence[str], overwrite: bool
) -> Path:
    """``<DIR>_deblurred`` by default; never the input folder; existing files need overwrite."""
    source = Path(source)
    out = Path(output) if output is not None else source.with_name(f"{source.name}_deblurred")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} is a file, not a folder")
    if out.exists() and _same_file(source, out):
        raise OutputError(f"output folder {out} is the input folder; choose another")
    if out.is_dir() and not overwrite:
        clashes = [n for n in names if (out / n).exists()]
        if clashes:
            more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
            raise OutputError(f"{out / clashes[0]}{more} exist; pass --overwrite to replace them")
    return out


# -- video ---------------------------------------------------------------------------------------


def default_engine() -> tuple[str, Deblurrer]:
    """The model ``--model auto`` would run here and its engine: the library's default too."""
    from deblur_cli.engine import resolve_device
    from deblur_cli.weights import DEFAULT_MODEL, load_model

    return DEFAULT_MODEL, Deblurrer(load_model(DEFAULT_MODEL), device=str(resolve_device("auto")))


def deblur_video(
    source: Path | str,
    destination: Path | str | None = None,
    engine: Deblurrer | None = None,
    *,
    codec: str | None = None,
    crf: int | None = 18,
    preset: str | None = "medium",
    pix_fmt: str | None = None,
    start: float | None = None,
    end: float | None = None,
    compare: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    strength: float = 1.0,
    progress: Progress | None = None,
) -> Summary:
    """Deblur one video file into another with the same frames, timestamps and other streams.

    Luma is restored at the stream's own range and bit depth; chroma planes, audio and subtitle
    packets, colour tags and rotation are carried over. ``start``/``end`` (seconds) cut a range
    that then starts at time zero; ``compare`` writes input|output side by side; ``strength``
    (0..1) keeps that share of the network's change to luma (0: the input's luma exactly).
    """
    strength = check_strength(strength)
    source = check_input_file(source)
    destination = Path(destination) if destination else default_video_output(source)
    check_output_file(source, destination, overwrite)
    if start is not None and end is not None and end <= start:
        raise InvalidMediaError(f"--end ({end}) must be after --start ({start})")
    engine = engine or default_engine()[1]
    settings = EncodeSettings(codec, crf, preset, pix_fmt, compare)
    began = time.perf_counter()
    with (
        interrupts_as_errors(),
        allocation_failures_as_errors(),
        atomic_file(destination) as temporary,
        VideoReader(source, start, end, strict) as reader,
    ):
        writer = VideoWriter(temporary, reader, settings, name=str(destination))
        try:
            frames = _run_video(reader, writer, engine, progress, strength)
            if frames == 0 and (start is not None or end is not None):
                raise InvalidMediaError(f"{source} has no video frames in the requested time range")
            writer.finish(reader.tail_packets)
        except BaseException:
            writer.abort()
            raise
    warnings = tuple(w for w in (reader.warning, *writer.warnings) if w)
    return Summary(source, destination, frames, time.perf_counter() - began, warnings)


def _run_video(
    reader: VideoReader,
    writer: VideoWriter,
    engine: Deblurrer,
    progress: Progress | None,
    strength: float = 1.0,
) -> int:
    """Decode thread -> engine (this thread) -> encode thread; returns frames written."""
    total = reader.estimated_frames()

    def decoded() -> Iterator[tuple[VideoFrameData, np.ndarray]]:
        for item in reader.frames():
            layout = reader.layout
            yield item, luma_to_unit(item.planes[0], layout.bit_depth, layout.full_range)

    def encode(pair: tuple[VideoFrameData, np.ndarray]) -> None:
        item, plane = pair
        layout = reader.layout
        writer.write(item, unit_to_luma(plane, layout.bit_depth, layout.full_range))
        if progress:
            progress(writer.frames_written, total)

    with BackgroundReader(decoded(), name="decode") as frames, BackgroundWriter(encode) as sink:
        for pair in restore_with_strength(engine, frames, strength):
            sink.put(pair)
        sink.finish()
    return writer.frames_written


# -- image sequences ------------------------------------------------------------------------------


@dataclass
class _Image:
    name: str
    parts: ImageParts


def deblur_frames(
    source: Path | str,
    destination: Path | str | None = None,
    engine: Deblurrer | None = None,
    *,
    overwrite: bool = False,
    skip_unreadable: bool = False,
    strength: float = 1.0,
    progress: Progress | None = None,
) -> Summary:
    """Deblur a folder of frames (natural order) into ``destination`` with the same file names.

    Consecutive frames of the same size form one sequence; a change of size starts a new one
    (its edge frames repeat, as at the ends of a clip). An unreadable file is an error naming
    it, or is skipped with a warning when ``skip_unreadable``. ``strength`` as for videos.
    """
    strength = check_strength(strength)
    source = Path(source)
    files = list_images(source)
    destination = plan_frames_output(source, destination, [f.name for f in files], overwrite)
    engine = engine or default_engine()[1]
    skipped: list[str] = []
    written = 0
    began = time.perf_counter()

    def decoded() -> Iterator[tuple[_Image, np.ndarray]]:
        for path in files:
            try:
                image = read_image(path)
            except InvalidMediaError as exc:
                if not skip_unreadable:
                    raise
                skipped.append(f"skipped {path.name}: {exc}")
                continue
            luma, parts = split_image(image)
            yield _Image(path.name, parts), luma

    with (
        interrupts_as_errors(),
        allocation_failures_as_errors(),
        atomic_folder(destination) as temporary,
    ):

        def save(pair: tuple[_Image, np.ndarray]) -> None:
            nonlocal written
            item, plane = pair
            image = merge_image(plane, item.parts)
            write_image(temporary / item.name, image, shown=destination / item.name)
            written += 1
            if progress:
                progress(written, len(files))

        with BackgroundReader(decoded(), name="read") as images, BackgroundWriter(save) as sink:
            for _, run in itertools.groupby(images, key=lambda pair: pair[1].shape):
                for pair in restore_with_strength(engine, run, strength):
                    sink.put(pair)
            sink.finish()
        if written == 0:
            raise InvalidMediaError(f"no readable images in {source}")
    return Summary(source, destination, written, time.perf_counter() - began, tuple(skipped))


def deblur_images(
    images: Iterable[np.ndarray], engine: Deblurrer, strength: float = 1.0
) -> Iterator[np.ndarray]:
    """Deblur in-memory frames of one clip (RGB(A) or gray; uint8, uint16 or float32).

    Yields one image per input, same shape and type, as soon as its window is complete.
    ``strength`` as for videos.
    """

    def planes() -> Iterator[tuple[ImageParts, np.ndarray]]:
        for image in images:
            luma, parts = split_image(np.asarray(image))
            yield parts, luma

    for parts, plane in restore_with_strength(engine, planes(), strength):
        yield merge_image(plane, parts)


__all__ = [
    "Summary",
    "deblur_frames",
    "deblur_images",
    "deblur_video",
    "plan_video_jobs",
]
