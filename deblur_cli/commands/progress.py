"""Progress bar, warnings and summary lines for the frame-processing commands (stderr only).

The bar is drawn only when stderr is a terminal: piped or captured output gets plain lines and
never a control character.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from deblur_cli.api import Summary
from deblur_cli.estimate import RunEstimate


class FpsColumn(ProgressColumn):
    """Frames per second over the recent past (rich's own speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} fps" if speed else "-- fps")


class Feedback:
    """What the user sees on stderr while frames are processed."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)

    @contextlib.contextmanager
    def task(self, label: str) -> Iterator[Callable[[int, int | None], None]]:
        """Yield a ``progress(done, total)`` callback; a live bar only on a terminal."""
        if self.quiet or not self.console.is_terminal:
            yield lambda done, total: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            FpsColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task_id = bar.add_task(label, total=None)

            def update(done: int, total: int | None) -> None:
                bar.update(task_id, completed=done, total=max(total, done) if total else None)

            yield update

    def upfront(self, measure: Callable[[], RunEstimate | None]) -> None:
        """Measure and print the time estimate before the bar starts; --quiet skips both, so a
        quiet run spends no time on it."""
        if self.quiet:
            return
        estimate = measure()
        if estimate is not None:
            click.echo(estimate.line(), err=True)

    def report(self, summary: Summary) -> None:
        """Warnings always; the one-line summary unless --quiet."""
        for warning in summary.warnings:
            click.echo(f"warning: {warning}", err=True)
        if not self.quiet:
            click.echo(summary.line(), err=True)
