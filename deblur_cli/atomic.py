"""Write-then-rename helpers: a reader (or a killed process) never sees a half-written result.

Used for weight files, training checkpoints and generated datasets. (The video/frames outputs in
api.py have their own variant, which also merges into existing folders and reports OutputError.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replaced_file(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; it replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def replaced_folder(final: Path, staging: Path | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``final`` (whole) only on success.

    ``staging`` is where the temporary folder lives (default: next to ``final``); give a folder
    outside the one readers list, so they never pick up a half-written entry.
    """
    final = Path(final)
    staging = Path(staging) if staging is not None else final.parent
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
