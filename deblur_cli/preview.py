"""``deblur preview``: restore one frame, show input | output, and say what the whole run costs.

On a CPU a full run can take hours. A preview answers the two questions worth asking before
that: is the result worth it on this footage (and at what ``strength``), and how long will the
whole input take with this model, device and precision. By default it shows the blurriest frame
of the first 10 seconds, chosen by a sharpness measure on the decoded luma (no network pass per
candidate), because that is where deblurring matters most.

The PNG is 2W x 2H: the input frame and its restored version side by side on top, and below
them the same W/2 x H/2 region of each, zoomed 2x (nearest neighbour, so pixels stay pixels),
taken where the input has the most edges.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from deblur_cli.api import (
    atomic_file,
    check_input_file,
    check_output_file,
    default_engine,
    interrupts_as_errors,
)
from deblur_cli.color import luma_to_unit, unit_to_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import InvalidMediaError, OutputError
from deblur_cli.estimate import RunEstimate, estimate_run, time_window
from deblur_cli.frames import (
    IMAGE_SUFFIXES,
    list_images,
    merge_image,
    read_image,
    split_image,
    write_image,
)
from deblur_cli.strength import blend, check_strength
from deblur_cli.video import FrameLayout, VideoFrameData, VideoReader, fill_frame

SEARCH_SECONDS = 10.0
# Frame folders carry no timestamps: for --at and the search they count as this many per second.
FOLDER_FPS = 25.0
# Frames this flat (luma std, unit range) are fades or black: never "the blurriest" while a
# frame with content exists, since deblurring them shows nothing.
FLAT_STD = 0.02
# --at seeks to a keyframe at least this long before the frame, to have its neighbours.
SEEK_MARGIN_SECONDS = 1.0
ZOOM = 2
TIME_EPSILON = 1e-6


# -- pictures -----------------------------------------------------------------------------------


def sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian over the variance of the luma: high-frequency energy relative
    to the frame's contrast, so a dim frame does not look blurrier than a bright one."""
    laplacian = cv2.Laplacian(np.asarray(luma, np.float32), cv2.CV_32F)
    return float(laplacian.var()) / max(float(luma.var()), 1e-12)


def edge_region(luma: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    """The ``height`` x ``width`` region with the largest sum of gradient magnitude."""
    gx = cv2.Sobel(np.asarray(luma, np.float32), cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(np.asarray(luma, np.float32), cv2.CV_32F, 0, 1)
    total = cv2.integral(np.hypot(gx, gy).astype(np.float64))
    sums = (
        total[height:, width:]
        - total[:-height, width:]
        - total[height:, :-width]
        + total[:-height, :-width]
    )
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(top), int(top) + height), slice(int(left), int(left) + width)


def compose(before: np.ndarray, after: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """2H x 2W x 3 uint8: before | after on top, the zoomed crops of the edgiest region below."""
    height, width = luma.shape
    rows, cols = edge_region(luma, max(height // ZOOM, 1), max(width // ZOOM, 1))
    canvas = np.zeros((2 * height, 2 * width, 3), np.uint8)
    for offset, image in ((0, before), (width, after)):
        canvas[:height, offset : offset + width] = image
        zoomed = np.repeat(np.repeat(image[rows, cols], ZOOM, axis=0), ZOOM, axis=1)
        zoomed = zoomed[:height, :width]
        canvas[height : height + zoomed.shape[0], offset : offset + zoomed.shape[1]] = zoomed
    return canvas


def rgb8(image: np.ndarray) -> np.ndarray:
    """Any image :func:`merge_image` returns as 8-bit RGB without alpha, for the PNG."""
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[:, :, :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype == np.uint8:
        return image
    scale = 1.0 / 257.0 if image.dtype == np.uint16 else 255.0
    return np.clip(np.rint(image * scale), 0, 255).astype(np.uint8)


# -- frames from a video or a folder ---------------------------------------------------------


@dataclass
class Frame:
    """One decoded frame: its time, luma (unit range), name, and how to draw it in colour."""

    time: float
    luma: np.ndarray
    label: str
    render: Callable[[np.ndarray], np.ndarray]  # a luma plane -> RGB with this frame's chroma


class FrameSource(Protocol):
    def count(self) -> int | None: ...

    def scan(self, until: float) -> Iterator[tuple[float, np.ndarray]]: ...

    def around(self, at: float, radius: int) -> tuple[list[Frame], int]: ...


def _past_end(source: Path, at: float, last: float, interval: float) -> None:
    if at > last + interval + TIME_EPSILON:
        raise InvalidMediaError(
            f"--at {at:g} is past the end of {source} (last frame at {last:.2f} s)"
        )


def _video_render(item: VideoFrameData, layout: FrameLayout) -> Callable[[np.ndarray], np.ndarray]:
    """Draw a luma plane with this frame's chroma, through FFmpeg's own YUV -> RGB."""

    def render(luma: np.ndarray) -> np.ndarray:
        planes = [unit_to_luma(luma, layout.bit_depth, layout.full_range), *item.planes[1:]]
        frame = fill_frame(planes, layout.pix_fmt, layout.width, layout.height)
        frame.colorspace = layout.colorspace
        return frame.to_ndarray(format="rgb24", src_color_range=layout.color_range or None)

    return render


class VideoFrames:
    """Frames of a video file, with times counted from the stream's first timestamp."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with VideoReader(path) as reader:  # opening fails with the same errors as `video`
            self._frames = reader.estimated_frames()
            rate = reader.frame_rate
            self.interval = 1.0 / float(rate) if rate else 1.0 / FOLDER_FPS
            start = reader.stream.start_time or 0
            self._origin = float(start * reader.time_base) if reader.time_base else 0.0

    def count(self) -> int | None:
        return self._frames

    def _decoded(self, seek: float | None) -> Iterator[tuple[float, VideoFrameData, FrameLayout]]:
        with VideoReader(self.path) as reader:
            if seek:
                target = int((self._origin + seek) / reader.time_base)
                try:
                    reader.container.seek(target, stream=reader.stream, backward=True)
                except av.FFmpegError:  # an unseekable file: decode from the start instead
                    reader.container.seek(0, stream=reader.stream)
            for item in reader.frames():
                seconds = item.seconds
                time = seconds - self._origin if seconds is not None else item.index * self.interval
                yield time, item, reader.layout

    def scan(self, until: float) -> Iterator[tuple[float, np.ndarray]]:
        with contextlib.closing(self._decoded(None)) as decoded:
            for time, item, layout in decoded:
                if time >= until:
                    return
                yield time, luma_to_unit(item.planes[0], layout.bit_depth, layout.full_range)

    def around(self, at: float, radius: int) -> tuple[list[Frame], int]:
        """The frame shown at ``at`` (the last one at or before it) and up to ``radius``
        neighbours on each side; only 2 * radius + 1 frames are ever held."""
        ring: deque[tuple[float, VideoFrameData, FrameLayout]] = deque(maxlen=2 * radius + 1)
        found, after = False, 0
        seek = at - SEEK_MARGIN_SECONDS if at > SEEK_MARGIN_SECONDS else None
        with contextlib.closing(self._decoded(seek)) as decoded:
            for entry in decoded:
                found = found or (bool(ring) and entry[0] > at + TIME_EPSILON)
                if found and after == radius:
                    break
                ring.append(entry)
                after += found
        if not ring:
            raise InvalidMediaError(f"{self.path} has no decodable video frame")
        if not found:
            _past_end(self.path, at, ring[-1][0], self.interval)
        frames = [
            Frame(
                time,
                luma_to_unit(item.planes[0], layout.bit_depth, layout.full_range),
                f"frame at {time:.2f} s",
                _video_render(item, layout),
            )
            for time, item, layout in ring
        ]
        return frames, len(frames) - 1 - after


class FolderFrames:
    """Images of a folder in natural order, ``FOLDER_FPS`` of them per second."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = list_images(folder)  # same errors as `frames`

    def count(self) -> int:
        return len(self.files)

    def scan(self, until: float) -> Iterator[tuple[float, np.ndarray]]:
        for index, path in enumerate(self.files):
            if index / FOLDER_FPS >= until:
                return
            yield index / FOLDER_FPS, split_image(read_image(path))[0]

    def _frame(self, index: int) -> Frame:
        path = self.files[index]
        luma, parts = split_image(read_image(path))
        time = index / FOLDER_FPS
        label = f"{path.name}, frame {index} ({time:.2f} s at {FOLDER_FPS:g} fps)"
        return Frame(time, luma, label, lambda y: rgb8(merge_image(y, parts)))

    def around(self, at: float, radius: int) -> tuple[list[Frame], int]:
        last = len(self.files) - 1
        _past_end(self.folder, at, last / FOLDER_FPS, 1.0 / FOLDER_FPS)
        centre = min(int(at * FOLDER_FPS + TIME_EPSILON), last)
        first = max(centre - radius, 0)
        indices = range(first, min(centre + radius, last) + 1)
        return [self._frame(i) for i in indices], centre - first


def open_frames(source: Path) -> FrameSource:
    """A folder is a frame sequence; anything else must be a video file."""
    if source.is_dir():
        return FolderFrames(source)
    return VideoFrames(check_input_file(source))


def blurriest(frames: Iterator[tuple[float, np.ndarray]]) -> float:
    """Time of the least sharp frame; flat frames (fades, black) only if nothing else exists."""
    best: tuple[tuple[bool, float], float] | None = None
    for time, luma in frames:
        key = (float(luma.std()) < FLAT_STD, sharpness(luma))
        if best is None or key < best[0]:
            best = (key, time)
    if best is None:
        raise InvalidMediaError("no decodable frame to preview")
    return best[1]


def window_of(frames: list[Frame], centre: int, size: int) -> np.ndarray:
    """The network's window for ``frames[centre]``: neighbours beyond the list, or of another
    size (a new sequence in a folder), are replaced by the nearest usable one, as in a run.
    Scene cuts are not looked for: a cut needs the history before it to be told from motion."""
    shape = frames[centre].luma.shape
    first = last = centre
    while first > 0 and frames[first - 1].luma.shape == shape:
        first -= 1
    while last < len(frames) - 1 and frames[last + 1].luma.shape == shape:
        last += 1
    radius = size // 2
    picks = (min(max(centre + k, first), last) for k in range(-radius, radius + 1))
    return np.stack([frames[i].luma for i in picks])


# -- the preview ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewResult:
    """What ``preview`` wrote and measured; ``lines()`` is what the command prints."""

    path: Path
    source: Path
    frame: str
    seconds: float
    chosen: str
    estimate: RunEstimate

    def lines(self) -> list[str]:
        return [
            f"{self.path}: {self.frame} ({self.chosen}); left input, right output, "
            f"below: 2x zoom of the region with the most edges",
            f"whole input: {self.estimate.line()}",
        ]


def plan_preview(
    source: Path | str, output: Path | str | None = None, overwrite: bool = False
) -> tuple[Path, Path]:
    """Check the input and the PNG path before any work (``<name>_preview.png`` by default)."""
    source = Path(source)
    if not source.is_dir():
        check_input_file(source)
    name = source.name if source.is_dir() else source.stem
    target = Path(output) if output is not None else source.with_name(f"{name}_preview.png")
    check_output_file(source, target, overwrite)
    if target.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(f"preview output {target} must be an image file (.png)")
    return source, target


def preview(
    source: Path | str,
    output: Path | str | None = None,
    engine: Deblurrer | None = None,
    *,
    at: float | None = None,
    strength: float = 1.0,
    model: str | None = None,
    overwrite: bool = False,
) -> PreviewResult:
    """Restore the frame shown at ``at`` seconds (default: the blurriest of the first 10 s) of
    a video or frame folder, write the input | output PNG, and estimate the whole run.

    ``model`` only names the model in the estimate (the engine's own weights are used).
    """
    strength = check_strength(strength)
    source, output = plan_preview(source, output, overwrite)
    frames = open_frames(source)
    if engine is None:
        default_name, engine = default_engine()
        label = model or default_name
    else:
        label = model or "the model"
    with interrupts_as_errors():
        chosen = "--at" if at is not None else f"blurriest of the first {SEARCH_SECONDS:g} s"
        if at is None:
            at = blurriest(frames.scan(SEARCH_SECONDS))
        picked, centre = frames.around(at, engine.window // 2)
        frame, window = picked[centre], window_of(picked, centre, engine.window)
        restored, seconds_per_frame = time_window(engine, window)
        after = frame.render(blend(frame.luma, restored, strength))
        image = compose(frame.render(frame.luma), after, frame.luma)
        with atomic_file(output) as temporary:
            write_image(temporary, image, shown=output)
        estimate = estimate_run(engine, window, frames.count(), label, seconds_per_frame)
    return PreviewResult(output, source, frame.label, frame.time, chosen, estimate)
