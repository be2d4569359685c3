"""Video files in and out with PyAV: planar YUV frames, timestamps, metadata, copied streams.

The reader decodes each frame to its own planar YUV layout and hands out the planes as numpy
arrays, so luma can be restored while chroma travels through untouched (bit-exact up to the
encoder). Non-video packets (audio, subtitles) ride along with the next video frame and are muxed
without re-encoding. Nothing here knows about tensors or the network.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from deblur_cli.errors import InvalidMediaError, OutputError, PartialDecodeError

# Output extension -> default encoder. Anything else uses the container's own default.
DEFAULT_CODECS = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".avi": "libx264",
    ".ts": "libx264",
    ".webm": "libvpx-vp9",
}
CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}
PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}
COPIED_STREAM_TYPES = ("audio", "subtitle")
# Container metadata the muxer writes itself; copying it would describe the wrong file.
MUXER_OWNED_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands"}
# Per-stream tags worth keeping (others, like mkv's DURATION, describe the old encode).
STREAM_TAGS = ("language", "title")
# Full-range "J" formats are deprecated aliases: same pixels, range carried in color_range.
JPEG_ALIASES = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p"}
COLOR_RANGE_JPEG = 2


@dataclass
class VideoFrameData:
    """One decoded frame as planes, plus the foreign packets to mux alongside it."""

    index: int
    pts: int | None
    time_base: Fraction | None
    planes: list[np.ndarray]  # luma first, then chroma (and alpha) exactly as decoded
    packets: list[av.Packet] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


@dataclass(frozen=True)
class FrameLayout:
    """What the encoder must reproduce: size, planar format, colour tags, display matrix."""

    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    full_range: bool
    color_primaries: int
    color_trc: int
    colorspace: int
    color_range: int
    display_matrix: tuple[int, ...] | None


def planar_format(name: str) -> str:
    """The planar format to work in: the decoder's own when it is planar YUV or gray."""
    name = JPEG_ALIASES.get(name, name)
    fmt = av.VideoFormat(name)
    if name.startswith(("yuv", "gray")) and fmt.is_planar and not fmt.is_rgb:
        return name
    depth = max(c.bits for c in fmt.components)
    return "yuv444p" if depth <= 8 else "yuv444p16le"


def sample_dtype(pix_fmt: str) -> type[np.unsignedinteger]:
    """uint16 for formats deeper than 8 bits (stored little-endian, one sample per 2 bytes)."""
    return np.uint16 if av.VideoFormat(pix_fmt).components[0].bits > 8 else np.uint8


def plane_arrays(frame: av.VideoFrame) -> list[np.ndarray]:
    """Copy every plane into a tightly packed array (line padding dropped)."""
    dtype = sample_dtype(frame.format.name)
    arrays = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
        arrays.append(rows[:, : plane.width].copy())
    return arrays


def fill_frame(planes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """Build a frame from packed planes, respecting the frame's own line sizes."""
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, data in zip(frame.planes, planes, strict=True):
        rows = np.frombuffer(plane, dtype=data.dtype).reshape(plane.height, -1)
        rows[:, : plane.width] = data[: plane.height, : plane.width]
    return frame


def side_by_side(left: list[np.ndarray], right: list[np.ndarray], pix_fmt: str, width: int):
    """Planes of input|output, for ``--compare``; chroma of odd widths is cropped to fit."""
    frame = av.VideoFrame(2 * width, left[0].shape[0], pix_fmt)
    joined = [np.concatenate([a, b], axis=1) for a, b in zip(left, right, strict=True)]
    return [j[: p.height, : p.width] for j, p in zip(joined, frame.planes, strict=True)]


def _reason(exc: BaseException) -> str:
    """The useful part of an FFmpeg/OS error: its strerror, not the C call it came from."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return getattr(exc, "strerror", None) or text or type(exc).__name__


def _media_error(path: Path, exc: BaseException) -> InvalidMediaError:
    return InvalidMediaError(f"{path} is not a readable video ({_reason(exc)})")


def unusable_stream(stream: Any) -> str | None:
    """Why a stream cannot be copied, if it cannot: a damaged or empty audio stream has no
    sample rate or channel count, and the muxer would then refuse to write any header at all
    (losing the video too)."""
    context = stream.codec_context
    if stream.type == "audio" and not (context.sample_rate and context.channels):
        return "its sample rate or channel count is unknown (damaged or empty stream)"
    return None


class VideoReader:
    """Demux one file: decode its first video stream, collect packets of streams to copy."""

    def __init__(
        self,
        path: Path,
        start: float | None = None,
        end: float | None = None,
        strict: bool = False,
    ) -> None:
        self.path = Path(path)
        self.start, self.end, self.strict = start, end, strict
        self.warning: str | None = None
        self.tail_packets: list[av.Packet] = []
        try:
            self.container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise _media_error(self.path, exc) from exc
        if not self.container.streams.video:
            self.container.close()
            raise InvalidMediaError(f"{self.path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.copied_streams = [s for s in self.container.streams if s.type in COPIED_STREAM_TYPES]
        self._offset: int | None = None  # pts shift when --start cuts the beginning
        # --start/--end count from the stream's first timestamp, as players show time.
        start_time = self.stream.start_time or 0
        self._origin = float(start_time * self.stream.time_base) if self.stream.time_base else 0.0
        self._layout: FrameLayout | None = None

    # -- facts the writer and the progress bar need ------------------------------------------
    @property
    def time_base(self) -> Fraction:
        return self.stream.time_base

    @property
    def frame_rate(self) -> Fraction | None:
        return self.stream.average_rate or self.stream.guessed_rate

    def estimated_frames(self) -> int | None:
        """Frame count for the progress bar (the container's count, else duration x rate)."""
        rate = self.frame_rate
        duration = self._duration_seconds()
        if self.start is None and self.end is None and self.stream.frames:
            return int(self.stream.frames)
        if rate is None or duration is None:
            return None
        first = max(self.start or 0.0, 0.0)
        last = min(self.end, duration) if self.end is not None else duration
        return max(math.ceil((last - first) * rate), 0)

    def _duration_seconds(self) -> float | None:
        if self.stream.duration is not None and self.stream.time_base is not None:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration is not None:
            return self.container.duration / av.time_base
        return None

    # -- decoding ------------------------------------------------------------------------------
    def frames(self) -> Iterator[VideoFrameData]:
        """Decoded frames in presentation order, each carrying the packets demuxed before it.

        A decoding error part-way stops the stream: by default the frames before it are kept and
        ``warning`` says where it stopped; with ``strict`` it raises PartialDecodeError.
        """
        self._seek_to_start()
        pending: list[av.Packet] = []
        index = 0
        last_seconds: float | None = None
        try:
            for packet in self.container.demux(self.stream, *self.copied_streams):
                if packet.stream.type != "video":
                    if packet.size:
                        pending.append(packet)
                    continue
                for frame in packet.decode():
                    if self._past_end(frame):
                        self.tail_packets = self._shift_packets(pending)
                        return
                    if self._before_start(frame):
                        continue
                    item = self._frame_data(frame, index)
                    item.packets = self._shift_packets(pending)
                    pending = []
                    last_seconds = item.seconds
                    index += 1
                    yield item
        except av.FFmpegError as exc:
            where = f"frame {index}" + (f" (after {last_seconds:.3f} s)" if last_seconds else "")
            message = f"{self.path}: decoding stopped at {where}: {_reason(exc)}"
            if self.strict or index == 0:
                raise (PartialDecodeError if index else InvalidMediaError)(message) from exc
            self.warning = f"{message}; kept the {index} frames before it"
        self.tail_packets = self._shift_packets(pending)

    def _seek_to_start(self) -> None:
        if not self.start or self.start <= 0:
            return
        target = int((self._origin + self.start) / self.stream.time_base)
        try:
            self.container.seek(target, stream=self.stream, backward=True)
        except av.FFmpegError:
            self.container.seek(0, stream=self.stream)

    def _seconds(self, frame: av.VideoFrame) -> float | None:
        """Time of a frame from the start of the stream."""
        if frame.pts is None or frame.time_base is None:
            return None
        return float(frame.pts * frame.time_base) - self._origin

    def _before_start(self, frame: av.VideoFrame) -> bool:
        seconds = self._seconds(frame)
        return None not in (seconds, self.start) and seconds < self.start - 1e-6

    def _past_end(self, frame: av.VideoFrame) -> bool:
        seconds = self._seconds(frame)
        return None not in (seconds, self.end) and seconds >= self.end - 1e-6

    def _frame_data(self, frame: av.VideoFrame, index: int) -> VideoFrameData:
        """Planes in the working format; pts moved so that --start becomes time zero."""
        pts = frame.pts
        if self.start is not None and pts is not None:
            if self._offset is None:
                self._offset = pts
            pts -= self._offset
        working = planar_format(frame.format.name)
        if working != frame.format.name and JPEG_ALIASES.get(frame.format.name) != working:
            frame = frame.reformat(format=working)
        if self._layout is None:
            self._layout = self._layout_of(frame, working)
        layout = self._layout
        if (frame.width, frame.height, working) != (layout.width, layout.height, layout.pix_fmt):
            # A mid-stream size change: scale to the first size, as ffmpeg does by default.
            frame = frame.reformat(layout.width, layout.height, layout.pix_fmt)
        return VideoFrameData(index, pts, frame.time_base or self.time_base, plane_arrays(frame))

    @property
    def layout(self) -> FrameLayout:
        """Layout of the first decoded frame (available once ``frames()`` has yielded one)."""
        if self._layout is None:
            raise InvalidMediaError(f"{self.path} has no decodable video frame")
        return self._layout

    def _layout_of(self, frame: av.VideoFrame, working: str) -> FrameLayout:
        matrix = None
        for data in frame.side_data:
            if data.type.name == "DISPLAYMATRIX":
                matrix = tuple(int(v) for v in np.frombuffer(bytes(data), dtype=np.int32))
        context = self.stream.codec_context
        color_range = frame.color_range or context.color_range
        if frame.format.name in JPEG_ALIASES:
            color_range = COLOR_RANGE_JPEG
        return FrameLayout(
            width=frame.width,
            height=frame.height,
            pix_fmt=working,
            bit_depth=av.VideoFormat(working).components[0].bits,
            full_range=color_range == COLOR_RANGE_JPEG,
            color_primaries=frame.color_primaries or context.color_primaries,
            color_trc=frame.color_trc or context.color_trc,
            colorspace=frame.colorspace or context.colorspace,
            color_range=color_range,
            display_matrix=matrix,
        )

    def _shift_packets(self, packets: list[av.Packet]) -> list[av.Packet]:
        """Drop packets outside --start/--end and move the rest by the same offset as video."""
        if self.start is None and self.end is None:
            return packets
        offset = Fraction(0)
        if self.start is not None:
            offset = Fraction(self._offset or 0) * self.stream.time_base
        end = None if self.end is None else Fraction(self._origin + self.end)
        kept = []
        for packet in packets:
            if packet.pts is None:
                continue
            seconds = packet.pts * packet.time_base
            if seconds < offset or (end is not None and seconds >= end):
                continue
            shift = round(offset / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            kept.append(packet)
        return kept

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class EncodeSettings:
    """Encoder choices; None means "as the input" or "the container's default"."""

    codec: str | None = None
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None
    compare: bool = False


class VideoWriter:
    """Encode restored frames and mux copied packets into one output file.

    The video stream is configured from the first frame (size, format, colour tags, display
    matrix), so nothing is written until a frame arrives.
    """

    def __init__(
        self, path: Path, reader: VideoReader, settings: EncodeSettings, name: str | None = None
    ) -> None:
        self.path = Path(path)
        self.name = name or str(path)  # what messages call the file (not its temporary name)
        self.reader = reader
        self.settings = settings
        self.warnings: list[str] = []
        self.frames_written = 0
        try:
            self.container = av.open(str(self.path), mode="w")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"cannot write {self.name}: {exc}") from exc
        self.stream: Any = None
        self.stream_map: dict[int, Any] = {}

    def _open(self, layout: FrameLayout) -> None:
        """Add the video stream and the copied streams; called with the first frame."""
        stream = self._add_video_stream(layout)
        for key in STREAM_TAGS:
            if key in self.reader.stream.metadata:
                stream.metadata[key] = self.reader.stream.metadata[key]
        self.stream = stream
        self._add_copied_streams()
        for key, value in self.reader.container.metadata.items():
            if key.lower() not in MUXER_OWNED_TAGS:
                self.container.metadata[key] = value

    def _add_video_stream(self, layout: FrameLayout) -> Any:
        """The encoded video stream, configured to reproduce ``layout``."""
        codec = self.settings.codec or DEFAULT_CODECS.get(self.path.suffix.lower())
        codec = codec or self.container.default_video_codec
        try:
            stream = self.container.add_stream(codec)
        except (av.FFmpegError, ValueError) as exc:
            raise OutputError(f"cannot encode with codec {codec!r}: {exc}") from exc
        width = layout.width * (2 if self.settings.compare else 1)
        stream.width, stream.height = width, layout.height
        stream.pix_fmt = self._output_pix_fmt(codec, width, layout.height, layout)
        stream.time_base = self.reader.time_base
        context = stream.codec_context
        context.time_base = self.reader.time_base
        if self.reader.frame_rate:
            context.framerate = self.reader.frame_rate
        context.color_primaries = layout.color_primaries
        context.color_trc = layout.color_trc
        context.colorspace = layout.colorspace
        context.color_range = layout.color_range
        context.thread_type = "AUTO"
        stream.options = self._codec_options(codec)
        if layout.display_matrix:
            stream.set_display_matrix(list(layout.display_matrix))
        return stream

    def _output_pix_fmt(self, codec: str, width: int, height: int, layout: FrameLayout) -> str:
        """--pix-fmt, else the input's; if the encoder refuses it (odd sizes in 4:2:0 for x264,
        a format it lacks), the nearest format it accepts, with a warning."""
        wanted = self.settings.pix_fmt or layout.pix_fmt
        candidates = [wanted]
        if not self.settings.pix_fmt:
            full_chroma = re.sub(r"4[12][012]", "444", wanted)
            candidates += [full_chroma, "yuv420p10le" if layout.bit_depth > 8 else "yuv420p"]
            candidates += ["yuv444p10le" if layout.bit_depth > 8 else "yuv444p"]
        for candidate in dict.fromkeys(candidates):
            if self._encoder_accepts(codec, width, height, candidate):
                if candidate != wanted:
                    self.warnings.append(
                        f"{codec} cannot encode {width}x{height} {wanted}; wrote {candidate}"
                    )
                return candidate
        hint = "choose another --pix-fmt or --codec" if self.settings.pix_fmt else "try --codec"
        raise OutputError(f"{codec} cannot encode {width}x{height} {wanted}; {hint}")

    def _encoder_accepts(self, codec: str, width: int, height: int, pix_fmt: str) -> bool:
        """Open a throwaway encoder: the only reliable test of size/format constraints."""
        try:
            context = av.CodecContext.create(codec, "w")
            context.width, context.height, context.pix_fmt = width, height, pix_fmt
            context.time_base = self.reader.time_base
            context.options = self._codec_options(codec)
            context.open()
        except (av.FFmpegError, ValueError):
            return False
        return True

    def _codec_options(self, codec: str) -> dict[str, str]:
        options: dict[str, str] = {}
        if self.settings.crf is not None and codec in CRF_CODECS:
            options["crf"] = str(self.settings.crf)
            if codec == "libvpx-vp9":
                options["b"] = "0"  # constant quality mode
        if self.settings.preset and codec in PRESET_CODECS:
            options["preset"] = self.settings.preset
        return options

    def _add_copied_streams(self) -> None:
        for source in self.reader.copied_streams:
            if problem := unusable_stream(source):
                self.warnings.append(f"dropped {source.type} stream #{source.index}: {problem}")
                continue
            try:
                target = self.container.add_stream_from_template(source)
            except (av.FFmpegError, ValueError, TypeError) as exc:
                self.warnings.append(
                    f"dropped {source.type} stream #{source.index} "
                    f"({source.codec_context.name}): {self.path.suffix} cannot hold it ({exc})"
                )
                continue
            for key in STREAM_TAGS:
                if key in source.metadata:
                    target.metadata[key] = source.metadata[key]
            with contextlib.suppress(AttributeError, ValueError):
                target.disposition = source.disposition
            self.stream_map[source.index] = target

    def write(self, item: VideoFrameData, luma: np.ndarray) -> None:
        """Mux the packets that came before this frame, then encode the frame."""
        layout = self.reader.layout
        if self.stream is None:
            self._open(layout)
        self.mux_packets(item.packets)
        planes = [luma, *item.planes[1:]]
        width = layout.width
        if self.settings.compare:
            planes = side_by_side(item.planes, planes, layout.pix_fmt, width)
            width *= 2
        frame = fill_frame(planes, layout.pix_fmt, width, layout.height)
        frame.pts, frame.time_base = item.pts, item.time_base
        frame.color_range = layout.color_range
        frame.colorspace = layout.colorspace
        frame.color_primaries = layout.color_primaries
        frame.color_trc = layout.color_trc
        if self.stream.pix_fmt != layout.pix_fmt:
            frame = frame.reformat(format=self.stream.pix_fmt)
        self._encode(frame)
        self.frames_written += 1

    def mux_packets(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            target = self.stream_map.get(packet.stream.index)
            if target is None:
                continue
            packet.stream = target
            self._mux(packet)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            packets = self.stream.encode(frame)
        except av.FFmpegError as exc:
            raise OutputError(f"encoding {self.name} failed: {exc}") from exc
        for packet in packets:
            self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        try:
            self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.name}: {_reason(exc)}") from exc

    def finish(self, tail_packets: list[av.Packet]) -> None:
        """Flush the encoder, mux the trailing packets and write the container index."""
        if self.stream is None:
            raise InvalidMediaError(f"{self.reader.path} has no decodable video frame")
        self._encode(None)
        self.mux_packets(tail_packets)
        self.close()

    def close(self) -> None:
        try:
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.name}: {_reason(exc)}") from exc

    def abort(self) -> None:
        """Close after a failure; the file is about to be deleted, so errors don't matter."""
        with contextlib.suppress(Exception):
            self.container.close()
