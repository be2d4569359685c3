"""``deblur frames``: a thin wrapper over :func:`deblur_cli.api.deblur_frames`."""

from __future__ import annotations

from pathlib import Path

import click

from deblur_cli.api import deblur_frames, plan_frames_output
from deblur_cli.commands.options import (
    chosen_model,
    engine_options,
    make_engine,
    strength_option,
)
from deblur_cli.commands.progress import Feedback
from deblur_cli.estimate import Estimator
from deblur_cli.frames import list_images


@click.command("frames")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output folder (default: <FOLDER>_deblurred next to it).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files of the same names.")
@click.option(
    "--skip-unreadable", is_flag=True, help="Skip files that cannot be decoded (with a warning)."
)
@strength_option
@click.option("-q", "--quiet", is_flag=True, help="No time estimate, progress bar or summary line.")
@engine_options
def frames_command(
    folder: Path,
    output: Path | None,
    overwrite: bool,
    skip_unreadable: bool,
    strength: float,
    quiet: bool,
    **engine: object,
) -> None:
    """Deblur a folder of frames (png, jpg, bmp, tif, webp), natural order, same names out.

    Frames of one size form a sequence; a change of size starts a new sequence.
    """
    names = [p.name for p in list_images(folder)]
    plan_frames_output(folder, output, names, overwrite)  # fail before loading the model
    engine["model"] = chosen_model(str(engine["model"]))
    deblurrer = make_engine(**engine)  # type: ignore[arg-type]
    feedback = Feedback(quiet)
    feedback.upfront(lambda: Estimator(deblurrer, str(engine["model"])).folder(folder))
    with feedback.task(folder.name) as progress:
        summary = deblur_frames(
            folder,
            output,
            deblurrer,
            overwrite=overwrite,
            skip_unreadable=skip_unreadable,
            strength=strength,
            progress=progress,
        )
    feedback.report(summary)
