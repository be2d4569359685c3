"""``--strength``: how much of the network's change to keep, as a post-processing of its output.

The network's correction can overshoot (ringing, sharpened noise), and users of restoration
tools expect a slider to turn it down. Blending the restored luma with the input luma,
``input + S * (restored - input)``, is that slider: ``S = 0`` gives back the input's luma
exactly, ``S = 1`` the network's output. It runs after the engine, on the planes it yields, so
the engine's windows, tiles and batches stay as they are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

from deblur_cli.engine import Deblurrer
from deblur_cli.scenes import CutDetector

Payload = TypeVar("Payload")


def check_strength(strength: float) -> float:
    """The strength as a float in 0..1, or a ValueError naming the bad value."""
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    return strength


def blend(source: np.ndarray, restored: np.ndarray, strength: float) -> np.ndarray:
    """``source + strength * (restored - source)``; exactly ``source`` at 0, ``restored`` at 1.

    The ends are returned as they are rather than computed, so no rounding can creep in: that is
    what lets ``--strength 0`` promise the input's luma bit for bit.
    """
    if strength >= 1.0:
        return restored
    if strength <= 0.0:
        return source
    return source + np.float32(strength) * (restored - source)


def restore_with_strength(
    engine: Deblurrer,
    frames: Iterable[tuple[Payload, np.ndarray]],
    strength: float = 1.0,
    cuts: CutDetector | None = None,
) -> Iterator[tuple[Payload, np.ndarray]]:
    """``engine.stream(frames, cuts)`` with each restored plane blended with its input plane.

    The engine yields one output per input, in order, so the inputs still waiting for their
    output are kept in a queue (no longer than the engine's own window plus one batch).
    ``cuts`` is passed on to the engine (a time-split part's replayed detector).
    """
    strength = check_strength(strength)
    if strength == 1.0:
        yield from engine.stream(frames, cuts)
        return
    waiting: deque[np.ndarray] = deque()

    def remembered() -> Iterator[tuple[Payload, np.ndarray]]:
        for payload, plane in frames:
            waiting.append(plane)
            yield payload, plane

    for payload, restored in engine.stream(remembered(), cuts):
        yield payload, blend(waiting.popleft(), restored, strength)
