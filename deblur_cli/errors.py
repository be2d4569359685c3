"""User-facing errors. Each kind has its own exit code so scripts can tell them apart.

The CLI prints ``error: <message>`` (one line) and exits with ``exit_code``; ``--debug`` shows the
traceback. Library callers catch :class:`DeblurError`.
"""

from __future__ import annotations


class DeblurError(Exception):
    """Base class: a problem the user can fix, reported in one line."""

    exit_code = 1


class InputNotFoundError(DeblurError):
    """The input path does not exist or is the wrong kind of path."""

    exit_code = 3


class InvalidMediaError(DeblurError):
    """The input exists but is not a usable video or image (empty, truncated, no video stream)."""

    exit_code = 4


class OutputError(DeblurError):
    """The output cannot be written: exists, equals the input, unwritable folder, disk full."""

    exit_code = 5


class ModelError(DeblurError):
    """A weight file is missing, cannot be downloaded, is corrupt, or does not fit its config."""

    exit_code = 6


class DatasetError(DeblurError):
    """A dataset is missing or not in the expected layout."""

    exit_code = 7


class PartialDecodeError(InvalidMediaError):
    """The input is corrupt part-way; raised only under ``--strict``."""

    exit_code = 8


class Interrupted(DeblurError):
    """SIGINT/SIGTERM arrived; partial output has been removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}; partial output removed")
        self.exit_code = 128 + signum


class OutOfMemoryError(DeblurError):
    """An allocation failed (frame too large for the memory left, even after automatic tiling)."""

    exit_code = 9
