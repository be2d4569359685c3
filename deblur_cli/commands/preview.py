"""``deblur preview``: a thin wrapper over :func:`deblur_cli.preview.preview`."""

from __future__ import annotations

from pathlib import Path

import click

from deblur_cli.commands.options import (
    chosen_model,
    engine_options,
    make_engine,
    strength_option,
)
from deblur_cli.preview import SEARCH_SECONDS, plan_preview, preview


@click.command("preview")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--at",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Time of the frame (seconds; frame folders count 25 frames a second). "
    f"Default: the blurriest frame of the first {SEARCH_SECONDS:g} s.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="The PNG to write (default: <name>_preview.png next to the input).",
)
@strength_option
@click.option("--overwrite", is_flag=True, help="Replace an existing PNG.")
@engine_options
def preview_command(
    source: Path,
    at: float | None,
    output: Path | None,
    strength: float,
    overwrite: bool,
    **engine: object,
) -> None:
    """Restore one frame of a video or frame folder and estimate the whole run.

    Writes input | output side by side with a 2x zoom of the region with the most edges
    below, and prints the PNG, the frame's time and the measured time the whole input would
    take with the same model, device and precision.
    """
    source, output = plan_preview(source, output, overwrite)  # fail before loading the model
    engine["model"] = chosen_model(str(engine["model"]))
    result = preview(
        source,
        output,
        make_engine(**engine),  # type: ignore[arg-type]
        at=at,
        strength=strength,
        model=str(engine["model"]),
        overwrite=overwrite,
    )
    for line in result.lines():
        click.echo(line)
