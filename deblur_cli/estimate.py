"""How long a run will take, measured before it starts (or from the one frame ``preview`` ran).

On a CPU the paper model needs seconds per frame, so a phone video is hours of work; a user
should learn that before the wait, not after. Nothing here is guessed from FLOP counts: one
window is timed with the engine exactly as the run will use it (model, device, precision, batch,
tiles), and the faster shipped model is timed on the same frame before it is recommended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deblur_cli.api import allocation_failures_as_errors
from deblur_cli.color import luma_to_unit
from deblur_cli.engine import Deblurrer, TilePlan
from deblur_cli.errors import DeblurError
from deblur_cli.frames import list_images, read_image, split_image
from deblur_cli.video import VideoReader

# A run estimated above this on a CPU is long enough to be worth naming a faster model.
SUGGEST_FASTER_AFTER_SECONDS = 600.0
FASTER_MODEL = "dblrnet-fast"
# The first call of a fresh engine also builds kernels and allocates buffers (~20% of a
# 480x272 window here); a window quicker than this is timed a second time, steady state.
RETIME_BELOW_SECONDS = 5.0
# The faster model must need at most this share of the current model's MACs to be tried.
FASTER_MACS_SHARE = 0.8


@dataclass(frozen=True)
class Speedup:
    """A faster model, timed on the same frame as the current one."""

    model: str
    factor: float
    total_seconds: float | None


@dataclass(frozen=True)
class RunEstimate:
    """The measured cost of deblurring a whole input with one engine."""

    model: str
    device: str
    precision: str
    frames: int | None
    width: int
    height: int
    tiles: int
    seconds_per_frame: float
    faster: Speedup | None = None
    processes: int = 1  # a torchrun time split: the frames are shared out, the parts run at once

    @property
    def total_seconds(self) -> float | None:
        """Wall time: each of ``processes`` parts restores its share of the frames at once."""
        if self.frames is None:
            return None
        return self.frames * self.seconds_per_frame / self.processes

    def line(self) -> str:
        """One line: what runs where, the measured rate, and the whole-input total."""
        count = "unknown number of" if self.frames is None else str(self.frames)
        tiles = f"{self.tiles} tile{'s' if self.tiles != 1 else ''}"
        head = (
            f"{self.model} on {self.device} ({self.precision}): {count} frames "
            f"{self.width}x{self.height}, {tiles}, {self.seconds_per_frame:.3g} s/frame measured"
        )
        total = self.total_seconds
        text = head if total is None else f"{head}, about {format_duration(total)} in all"
        if self.processes > 1:
            text += f" over {self.processes} processes"
        if self.faster is not None:
            speed = self.faster
            text += f"; --model {speed.model} measured {speed.factor:.1f}x faster here"
            if speed.total_seconds is not None:
                text += f" (about {format_duration(speed.total_seconds)})"
        return text


def format_duration(seconds: float) -> str:
    """``12 s``, ``4 min 10 s``, ``3 h 05 min``: as precise as an estimate deserves."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def tile_count(plan: TilePlan | None, height: int, width: int) -> int:
    return 1 if plan is None else sum(1 for _ in plan.tiles(height, width))


def _timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    result = run()
    return result, time.perf_counter() - began


def time_window(engine: Deblurrer, window: np.ndarray) -> tuple[np.ndarray, float]:
    """Restore one T x H x W window; return its centre plane and the seconds per frame.

    The window runs as a full batch (as the run will: 4 windows per pass on CUDA), so the time
    per frame includes what batching saves. A quick window is run twice and the faster time
    kept, leaving out the one-time set-up of a fresh engine.
    """
    batch = np.repeat(window[None], engine.batch_size, axis=0)
    with allocation_failures_as_errors():
        restored, seconds = _timed(lambda: engine.run_windows(batch))
        if seconds < RETIME_BELOW_SECONDS:
            seconds = min(seconds, _timed(lambda: engine.run_windows(batch))[1])
    return restored[0], seconds / engine.batch_size


def _faster_engine(engine: Deblurrer, model: str) -> Deblurrer | None:
    """The shipped faster model on the same device, precision, batch and tiles, if it is
    really lighter than the current one (a lighter custom model gets no suggestion)."""
    from deblur_cli.weights import load_model

    if model == FASTER_MODEL:
        return None
    try:
        network = load_model(FASTER_MODEL)
    except DeblurError:  # not shipped with this install: nothing to suggest
        return None
    if network.macs_per_pixel() > FASTER_MACS_SHARE * engine.macs_per_pixel:
        return None
    return Deblurrer(
        network,
        device=str(engine.device),
        precision=engine.precision,
        batch_size=engine.batch_size,
        tile=engine.tile,
        memory_budget=engine.memory_budget,
        split_at_cuts=engine.split_at_cuts,
    )


def faster_factor(
    engine: Deblurrer, window: np.ndarray, model: str, seconds_per_frame: float
) -> float | None:
    """How many times faster the shipped faster model runs ``window`` here (None: no faster
    shipped model, or it is not faster on this machine)."""
    faster = _faster_engine(engine, model)
    if faster is None:
        return None
    factor = seconds_per_frame / time_window(faster, window)[1]
    return factor if factor > 1.0 else None


def needs_faster(estimate: RunEstimate) -> bool:
    """A CPU run long enough to be worth naming a faster model."""
    total = estimate.total_seconds
    return estimate.device == "cpu" and total is not None and total > SUGGEST_FASTER_AFTER_SECONDS


def with_speedup(estimate: RunEstimate, factor: float | None) -> RunEstimate:
    """``estimate`` naming the faster model at ``factor`` (unchanged when None)."""
    if factor is None:
        return estimate
    total = estimate.total_seconds
    speedup = Speedup(FASTER_MODEL, factor, None if total is None else total / factor)
    return RunEstimate(**{**estimate.__dict__, "faster": speedup})


def base_estimate(
    engine: Deblurrer,
    shape: tuple[int, int],
    frames: int | None,
    model: str,
    seconds_per_frame: float,
) -> RunEstimate:
    """The estimate from a measured rate, without the faster model."""
    height, width = shape
    return RunEstimate(
        model=model,
        device=engine.device.type,
        precision=engine.precision,
        frames=frames,
        width=width,
        height=height,
        tiles=tile_count(engine.tile_plan(height, width), height, width),
        seconds_per_frame=seconds_per_frame,
    )


def estimate_run(
    engine: Deblurrer,
    window: np.ndarray,
    frames: int | None,
    model: str = "model",
    seconds_per_frame: float | None = None,
) -> RunEstimate:
    """Measure (unless ``seconds_per_frame`` was measured already) and extrapolate to
    ``frames``; name the faster model, timed on this window, when the total is long on a CPU."""
    if seconds_per_frame is None:
        seconds_per_frame = time_window(engine, window)[1]
    estimate = base_estimate(engine, window.shape[1:], frames, model, seconds_per_frame)
    if not needs_faster(estimate):
        return estimate
    return with_speedup(estimate, faster_factor(engine, window, model, seconds_per_frame))


def first_video_luma(
    source: Path, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int | None] | None:
    """The first frame's luma (unit range) from ``start`` on, and the frame count to ``end``.

    Errors opening or decoding are the reader's own (the run would stop on the same ones); no
    frame at all gives None, and the run then says why in its own words.
    """
    with VideoReader(source, start, end) as reader:
        frames = reader.frames()
        first = next(frames, None)
        frames.close()
        if first is None:
            return None
        layout = reader.layout
        count = reader.estimated_frames()
    return luma_to_unit(first.planes[0], layout.bit_depth, layout.full_range), count


def first_folder_luma(folder: Path) -> tuple[np.ndarray, int] | None:
    """The first readable image's luma and the folder's image count (None: nothing readable,
    which the run itself reports with its own error)."""
    files = list_images(folder)
    for path in files:
        try:
            return split_image(read_image(path))[0], len(files)
        except DeblurError:
            continue
    return None


class Estimator:
    """Up-front estimates for the ``video`` and ``frames`` commands.

    Seconds per frame (and the faster model's factor, when a run needs it) are measured once
    per frame size, so many files of one size cost one window, not one each.
    """

    def __init__(self, engine: Deblurrer, model: str) -> None:
        self.engine = engine
        self.model = model
        self._rates: dict[tuple[int, int], float] = {}
        self._factors: dict[tuple[int, int], float | None] = {}

    def for_luma(self, luma: np.ndarray, frames: int | None, processes: int = 1) -> RunEstimate:
        """The estimate for ``frames`` frames like ``luma``, shared by ``processes`` ranks."""
        shape = luma.shape
        window = np.repeat(luma[None], self.engine.window, axis=0)
        if shape not in self._rates:
            self._rates[shape] = time_window(self.engine, window)[1]
        rate = self._rates[shape]
        estimate = base_estimate(self.engine, shape, frames, self.model, rate)
        estimate = replace(estimate, processes=processes)
        if not needs_faster(estimate):
            return estimate
        if shape not in self._factors:
            self._factors[shape] = faster_factor(self.engine, window, self.model, rate)
        return with_speedup(estimate, self._factors[shape])

    def video(
        self,
        source: Path,
        start: float | None = None,
        end: float | None = None,
        processes: int = 1,
    ) -> RunEstimate | None:
        """``processes``: the ranks a torchrun time split shares the video between."""
        found = first_video_luma(source, start, end)
        return None if found is None else self.for_luma(*found, processes)

    def folder(self, folder: Path) -> RunEstimate | None:
        found = first_folder_luma(folder)
        return None if found is None else self.for_luma(*found)
