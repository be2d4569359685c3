"""One video across many torchrun processes: cut it by time, restore the parts, join them.

Under ``torchrun --nproc-per-node N`` with one input (or ``--split-time``), rank 0 lists the
video's frames (timestamps from the packets, no decoding) and every rank takes one contiguous
part, balanced by frame count. A rank decodes its part plus ``window // 2`` frames of context on
each side, so every window holds exactly the frames it holds in a single-process run, restores
only its own frames and encodes them into a hidden part file in the output folder (a fresh
encoder, so the part starts with a keyframe). Rank 0 then remuxes the parts' packets, without
re-encoding, into the final file, with the input's audio and subtitle packets copied once.

Scene cuts need care: the engine's detector judges each frame against a running history of
frame differences, which a rank starting mid-video does not have. So each rank first measures
the differences of its own frames, the ranks exchange them, and every rank replays one detector
over the whole video: each sees the cuts of a single-process run, exactly.

Part files and the joined file carry hidden ``.partial-`` names and are removed on any error or
interrupt, on every rank; rank 0 also removes parts a killed rank could not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from deblur_cli.api import (
    BackgroundReader,
    BackgroundWriter,
    Progress,
    Summary,
    allocation_failures_as_errors,
    atomic_file,
    check_input_file,
    check_output_file,
    deblur_video,
    default_video_output,
    interrupts_as_errors,
)
from deblur_cli.color import luma_to_unit, unit_to_luma
from deblur_cli.distributed import Launch, all_gather_objects, barrier, broadcast_object
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import InvalidMediaError, OutputError, PartialDecodeError
from deblur_cli.scenes import CutDetector, ReplayedCuts, replay_cuts
from deblur_cli.strength import check_strength, restore_with_strength
from deblur_cli.video import (
    EncodeSettings,
    FrameLayout,
    VideoFrameData,
    VideoReader,
    VideoWriter,
    _reason,
)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """What every rank must agree on: the frames (by timestamp), the layout and the names."""

    pts: tuple[int, ...]  # presentation timestamps of every frame, in order
    layout: FrameLayout  # of the first frame: every part encodes exactly like a single run
    parts: int
    token: str  # names this run's part files

    def bounds(self, part: int) -> tuple[int, int]:
        """Frames [first, stop) of ``part``: contiguous and balanced by count (may be empty)."""
        count = len(self.pts)
        return part * count // self.parts, (part + 1) * count // self.parts

    def part_path(self, destination: Path, part: int) -> Path:
        """Hidden part file next to the output; same suffix, so the same muxer and codec."""
        name = f".{destination.stem}.partial-{self.token}-part{part:04d}{destination.suffix}"
        return destination.with_name(name)


@dataclasses.dataclass(frozen=True)
class SplitSummary(Summary):
    """A :class:`Summary` that also says what splitting cost (the CLI prints its line)."""

    parts: int = 1
    cut_seconds: float = 0.0  # measuring and sharing frame differences for the cut detector
    wait_seconds: float = 0.0  # rank 0 waiting for the slowest part after its own
    join_seconds: float = 0.0  # remuxing the parts and copying audio/subtitles

    def line(self) -> str:
        return (
            f"{super().line()}; {self.parts} parts, cut pass {self.cut_seconds:.2f} s, "
            f"wait {self.wait_seconds:.2f} s, join {self.join_seconds:.2f} s"
        )


# -- planning -----------------------------------------------------------------------------------


def frame_timestamps(source: Path) -> tuple[int, ...] | str:
    """Every frame's pts in presentation order, read from the packets (no decoding), or why
    the video cannot be split by timestamp (frames without one, or two with the same one)."""
    stamps: list[int] = []
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size:
                    if packet.pts is None:
                        return "some frames have no timestamp"
                    stamps.append(packet.pts)
    except (av.FFmpegError, OSError, IndexError) as exc:
        return f"it cannot be read ({_reason(exc)})"
    if len(set(stamps)) != len(stamps):
        return "two frames share a timestamp"
    return tuple(sorted(stamps)) if stamps else "it has no video frames"


def first_layout(source: Path) -> FrameLayout:
    """The layout a single-process run takes from the first decoded frame."""
    with VideoReader(source) as reader:
        next(reader.frames(), None)
        return reader.layout


def make_plan(source: Path, parts: int) -> SplitPlan | str:
    """The plan (on rank 0), or the reason to fall back to one process for this file."""
    stamps = frame_timestamps(source)
    if isinstance(stamps, str):
        return stamps
    return SplitPlan(stamps, first_layout(source), parts, secrets.token_hex(4))


# -- decoding one part --------------------------------------------------------------------------


class PartReader(VideoReader):
    """Decodes the frames with the given timestamps (consecutive in the video), video only.

    It seeks to the keyframe before the first one; if the seek lands after it (containers index
    by decode time), it decodes from the beginning instead. The layout is the whole video's, so
    every part is converted and encoded as a single-process run does.
    """

    def __init__(self, path: Path, plan: SplitPlan, first: int, stop: int) -> None:
        super().__init__(path)
        self.copied_streams = []  # audio and subtitles are copied once, when joining
        self._layout = plan.layout
        self.wanted = plan.pts[first:stop]
        self.first = first

    def frames(self) -> Iterator[VideoFrameData]:
        position = 0
        try:
            for frame in self._decoded_from(self.wanted[0]) if self.wanted else ():
                if frame.pts is not None and frame.pts < self.wanted[position]:
                    continue
                if frame.pts != self.wanted[position]:
                    raise InvalidMediaError(self._mismatch(frame.pts, position))
                yield self._frame_data(frame, self.first + position)
                position += 1
                if position == len(self.wanted):
                    return
        except av.FFmpegError as exc:
            where = f"frame {self.first + position}"
            message = f"{self.path}: decoding stopped at {where}: {_reason(exc)}"
            raise PartialDecodeError(message) from exc
        if position < len(self.wanted):
            raise InvalidMediaError(self._mismatch(None, position))

    def _mismatch(self, pts: int | None, position: int) -> str:
        return (
            f"{self.path}: frame {self.first + position} should have pts "
            f"{self.wanted[position]} but the decoder gave {pts}; it cannot be split by time "
            "(run it in one process: without torchrun or --split-time)"
        )

    def _decoded_from(self, pts: int) -> Iterator[av.VideoFrame]:
        self.container.seek(pts, stream=self.stream, backward=True)
        frames = self._decode_all()
        head = next(frames, None)
        if head is not None and head.pts is not None and head.pts <= pts:
            yield head
            yield from frames
            return
        self.container.close()
        self.container = av.open(str(self.path))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        yield from self._decode_all()

    def _decode_all(self) -> Iterator[av.VideoFrame]:
        for packet in self.container.demux(self.stream):
            yield from packet.decode()


def unit_planes(reader: VideoReader) -> Iterator[tuple[VideoFrameData, np.ndarray]]:
    """(frame, luma in unit range) pairs, as the engine takes them."""
    layout = reader.layout
    for item in reader.frames():
        yield item, luma_to_unit(item.planes[0], layout.bit_depth, layout.full_range)


def part_differences(source: Path, plan: SplitPlan, part: int) -> list[float | None]:
    """The cut detector's frame differences for this part's frames (needs the frame before)."""
    first, stop = plan.bounds(part)
    if first == stop:
        return []
    start = max(first - 1, 0)
    detector = CutDetector()
    with PartReader(source, plan, start, stop) as reader:
        differences = [detector.difference(plane) for _, plane in unit_planes(reader)]
    return differences[first - start :]


def shared_cuts(
    source: Path, plan: SplitPlan, launch: Launch, engine: Deblurrer
) -> list[bool] | None:
    """Every frame's cut decision as one detector over the whole video makes it (None when
    the engine ignores cuts). Collective: every rank must call it."""
    if not engine.split_at_cuts:
        return None
    differences = all_gather_objects(part_differences(source, plan, launch.rank), launch)
    return replay_cuts([d for part in differences for d in part])


# -- restoring one part -------------------------------------------------------------------------


def restore_part(
    source: Path,
    path: Path,
    plan: SplitPlan,
    part: int,
    engine: Deblurrer,
    settings: EncodeSettings,
    cuts: list[bool] | None,
    progress: Progress | None = None,
    strength: float = 1.0,
) -> int:
    """Restore this part's frames into ``path``; returns the frames written. ``strength`` as
    for :func:`deblur_video` (each frame is blended with its own input, so parts stay exact)."""
    first, stop = plan.bounds(part)
    radius = engine.window // 2
    start, end = max(first - radius, 0), min(stop + radius, len(plan.pts))
    detector = None if cuts is None else ReplayedCuts(cuts[start:end])
    with PartReader(source, plan, start, end) as reader:
        writer = VideoWriter(path, reader, settings, name=f"part {part} of {plan.parts}")
        try:
            own = range(first, stop)
            _encode_own_frames(reader, writer, engine, detector, own, progress, strength)
            writer.finish([])
        except BaseException:
            writer.abort()
            raise
    return writer.frames_written


def _encode_own_frames(
    reader: PartReader,
    writer: VideoWriter,
    engine: Deblurrer,
    detector: CutDetector | None,
    own: range,
    progress: Progress | None,
    strength: float = 1.0,
) -> None:
    """Decode thread -> engine -> encode thread, as a single run, dropping context frames."""
    layout = reader.layout

    def encode(pair: tuple[VideoFrameData, np.ndarray]) -> None:
        item, plane = pair
        if item.index in own:
            writer.write(item, unit_to_luma(plane, layout.bit_depth, layout.full_range))
            if progress:
                progress(writer.frames_written, len(own))

    with (
        BackgroundReader(unit_planes(reader), name="decode") as frames,
        BackgroundWriter(encode) as sink,
    ):
        for pair in restore_with_strength(engine, frames, strength, detector):
            sink.put(pair)
        sink.finish()


# -- joining ------------------------------------------------------------------------------------


class JoinWriter(VideoWriter):
    """Muxes already-encoded video packets (the parts') with the input's copied streams."""

    def __init__(
        self, path: Path, reader: VideoReader, template: Any, layout: FrameLayout, name: str
    ) -> None:
        super().__init__(path, reader, EncodeSettings(), name=name)
        self.template = template
        self._open(layout)

    def _add_video_stream(self, layout: FrameLayout) -> Any:
        stream = self.container.add_stream_from_template(self.template)
        stream.time_base = self.template.time_base
        if layout.display_matrix:
            stream.set_display_matrix(list(layout.display_matrix))
        return stream

    def mux_video(self, packet: av.Packet) -> None:
        packet.stream = self.stream
        self._mux(packet)


def part_packets(containers: Sequence[Any]) -> Iterator[av.Packet]:
    """The parts' video packets in order; decode times made strictly increasing at the seams
    (each part's encoder starts its own B-frame delay), presentation times untouched."""
    last: int | None = None
    headers = {bytes(c.streams.video[0].codec_context.extradata or b"") for c in containers}
    bases = {c.streams.video[0].time_base for c in containers}
    if len(headers) > 1 or len(bases) > 1:
        raise OutputError("the parts were encoded differently; they cannot be joined")
    for container in containers:
        for packet in container.demux(container.streams.video[0]):
            if not packet.size:
                continue
            if last is not None and (packet.dts is None or packet.dts <= last):
                packet.dts = last + 1
                if packet.pts is not None and packet.dts > packet.pts:
                    raise OutputError("the parts' timestamps leave no room to join them")
            elif packet.dts is None:  # Matroska stores no decode times: any order-keeping one
                packet.dts = packet.pts
            last = packet.dts if packet.dts is not None else last
            yield packet


def _seconds(packet: av.Packet) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * packet.time_base


def join_parts(
    source: Path, parts: Sequence[Path], temporary: Path, plan: SplitPlan, name: str
) -> list[str]:
    """Remux the parts into ``temporary`` with the input's audio and subtitles, interleaved by
    time; returns the writer's warnings (streams it had to drop, as a single run would)."""
    with VideoReader(source) as reader, contextlib.ExitStack() as stack:
        containers = [stack.enter_context(av.open(str(p))) for p in parts]
        template = containers[0].streams.video[0]
        writer = JoinWriter(temporary, reader, template, plan.layout, name)
        try:
            copied = reader.container.demux(*reader.copied_streams) if reader.copied_streams else ()
            foreign = (p for p in copied if p.size)
            for packet in heapq.merge(part_packets(containers), foreign, key=_seconds):
                if packet.stream.type == "video":
                    writer.mux_video(packet)
                else:
                    writer.mux_packets([packet])
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return writer.warnings


# -- the whole run ------------------------------------------------------------------------------


@contextlib.contextmanager
def removed_on_failure(paths: Sequence[Path]) -> Iterator[None]:
    """Delete ``paths`` (those that exist) if the block fails or is interrupted."""
    try:
        yield
    except BaseException:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise


def reserve(path: Path) -> None:
    """Create ``path`` empty, failing if it exists (as api.atomic_file reserves its name)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise OutputError(f"cannot write in {path.parent}: {exc.strerror or exc}") from exc


def deblur_video_split(
    source: Path | str,
    destination: Path | str | None,
    engine: Deblurrer,
    launch: Launch,
    *,
    codec: str | None = None,
    crf: int | None = 18,
    preset: str | None = "medium",
    pix_fmt: str | None = None,
    compare: bool = False,
    overwrite: bool = False,
    strength: float = 1.0,
    strict: bool = False,
    progress: Progress | None = None,
) -> Summary | None:
    """:func:`deblur_video` with the work split by time across the ranks of ``launch``.

    Every rank calls it; rank 0 returns the summary of the whole file, the others None. A video
    that cannot be split (frames without timestamps, packets that cannot be read) is done by
    rank 0 alone, keeping the frames before a decoding error unless ``strict``. The parts
    themselves are always strict: a part that stops decoding fails the run.
    """
    strength = check_strength(strength)
    source = check_input_file(source)
    destination = Path(destination) if destination else default_video_output(source)
    check_output_file(source, destination, overwrite)
    settings = EncodeSettings(codec, crf, preset, pix_fmt, compare)
    began = time.perf_counter()
    with interrupts_as_errors(), allocation_failures_as_errors():
        plan = make_plan(source, launch.world_size) if launch.rank == 0 else None
        plan = broadcast_object(plan, launch)
        if not isinstance(plan, SplitPlan):
            why = f"{source} is not split by time: {plan}; rank 0 does it alone"
            return _one_rank(
                source, destination, engine, launch, settings, why, overwrite=overwrite,
                strict=strict, strength=strength, progress=progress,
            )  # fmt: skip
        paths = [plan.part_path(destination, part) for part in range(plan.parts)]
        mine = paths[launch.rank : launch.rank + 1]
        with removed_on_failure(paths if launch.rank == 0 else mine):
            cut_began = time.perf_counter()
            cuts = shared_cuts(source, plan, launch, engine)
            cut_seconds = time.perf_counter() - cut_began
            first, stop = plan.bounds(launch.rank)
            if stop > first:
                reserve(mine[0])
                restore_part(
                    source, mine[0], plan, launch.rank, engine, settings, cuts, progress, strength
                )
            wait_began = time.perf_counter()
            barrier(launch)
            if launch.rank != 0:
                barrier(launch)  # the join is done (or failed: torchrun then stops this rank)
                return None
            joined = time.perf_counter()
            warnings = _join_into_place(source, destination, plan, paths)
            done = time.perf_counter()
            barrier(launch)
    return SplitSummary(
        source,
        destination,
        len(plan.pts),
        done - began,
        tuple(warnings),
        parts=plan.parts,
        cut_seconds=cut_seconds,
        wait_seconds=joined - wait_began,
        join_seconds=done - joined,
    )


def _join_into_place(
    source: Path, destination: Path, plan: SplitPlan, paths: Sequence[Path]
) -> list[str]:
    """Rank 0: join the parts that hold frames into ``destination`` (atomically), then delete
    every part file; returns the join's warnings."""
    written = [path for part, path in enumerate(paths) if len(range(*plan.bounds(part)))]
    with atomic_file(destination) as temporary:
        warnings = join_parts(source, written, temporary, plan, str(destination))
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return warnings


def _one_rank(
    source: Path,
    destination: Path,
    engine: Deblurrer,
    launch: Launch,
    settings: EncodeSettings,
    why: str,
    *,
    overwrite: bool,
    strict: bool,
    strength: float,
    progress: Progress | None,
) -> Summary | None:
    """Rank 0 does the whole file while the others wait (a video that cannot be split)."""
    summary = None
    if launch.rank == 0:
        summary = deblur_video(
            source,
            destination,
            engine,
            codec=settings.codec,
            crf=settings.crf,
            preset=settings.preset,
            pix_fmt=settings.pix_fmt,
            compare=settings.compare,
            overwrite=overwrite,
            strict=strict,
            strength=strength,
            progress=progress,
        )
        summary = dataclasses.replace(summary, warnings=(*summary.warnings, why))
    barrier(launch)
    return summary
