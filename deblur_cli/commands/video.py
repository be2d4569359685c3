"""``deblur video``: a thin wrapper over :func:`deblur_cli.api.deblur_video`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click

from deblur_cli.api import deblur_video, plan_video_jobs
from deblur_cli.commands.options import (
    chosen_model,
    engine_options,
    make_engine,
    strength_option,
)
from deblur_cli.commands.progress import Feedback
from deblur_cli.distributed import (
    Launch,
    current_launch,
    init_process_group,
    leave_process_group,
    shard,
    threads_per_process,
)
from deblur_cli.engine import Deblurrer
from deblur_cli.estimate import Estimator, RunEstimate
from deblur_cli.timesplit import deblur_video_split, frame_timestamps


@click.command("video")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output file, or a folder (required with several inputs). "
    "Default: <name>_deblurred.<ext> next to the input.",
)
@click.option(
    "--codec",
    default=None,
    help="Video encoder (default libx264 for .mp4/.mov/.mkv, libvpx-vp9 for .webm).",
)
@click.option("--crf", type=click.IntRange(0, 63), default=18, show_default=True)
@click.option("--preset", default="medium", show_default=True, help="Encoder speed preset.")
@click.option("--pix-fmt", default=None, help="Output pixel format (default: the input's).")
@click.option("--start", type=click.FloatRange(min=0), default=None, help="Start time (seconds).")
@click.option("--end", type=click.FloatRange(min=0), default=None, help="End time (seconds).")
@click.option(
    "--split-time",
    is_flag=True,
    help="Under torchrun, split each video by time across the processes (the default with one "
    "input; several inputs are otherwise shared out whole).",
)
@click.option("--compare", is_flag=True, help="Write input|output side by side.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option(
    "--strict", is_flag=True, help="Fail on a corrupt input instead of keeping the good part."
)
@strength_option
@click.option("-q", "--quiet", is_flag=True, help="No time estimate, progress bar or summary line.")
@engine_options
def video_command(
    inputs: tuple[Path, ...],
    output: Path | None,
    codec: str | None,
    crf: int,
    preset: str,
    pix_fmt: str | None,
    start: float | None,
    end: float | None,
    split_time: bool,
    compare: bool,
    overwrite: bool,
    strict: bool,
    strength: float,
    quiet: bool,
    **engine: object,
) -> None:
    """Deblur video files: same frames, timestamps, audio, colour tags and rotation.

    Under ``torchrun --nproc-per-node N`` the files are split across the N processes; one
    file (or each, with --split-time) is cut by time into N parts that are joined at the end.
    """
    jobs = plan_video_jobs(inputs, output, overwrite)
    launch = current_launch()
    split = launch.distributed and time_split_wanted(split_time, len(jobs), start, end)
    if launch.distributed:
        init_process_group(launch)
        jobs = jobs if split else shard(jobs, launch)
        if engine.get("threads") is None:
            engine["threads"] = threads_per_process(launch)
    engine["model"] = chosen_model(str(engine["model"]))
    deblurrer = make_engine(**engine)  # type: ignore[arg-type]
    feedback = Feedback(quiet)
    estimator = Estimator(deblurrer, str(engine["model"]))
    if split:
        encoding = {"codec": codec, "crf": crf, "preset": preset, "pix_fmt": pix_fmt}
        options = {
            "compare": compare,
            "overwrite": overwrite,
            "strength": strength,
            "strict": strict,
        }
        _split_jobs(jobs, deblurrer, launch, feedback, estimator, **encoding, **options)
        leave_process_group()
        return
    for source, destination in jobs:
        feedback.upfront(partial(estimator.video, source, start, end))
        with feedback.task(source.name) as progress:
            summary = deblur_video(
                source,
                destination,
                deblurrer,
                codec=codec,
                crf=crf,
                preset=preset,
                pix_fmt=pix_fmt,
                start=start,
                end=end,
                compare=compare,
                overwrite=overwrite,
                strict=strict,
                strength=strength,
                progress=progress,
            )
        feedback.report(summary)
    leave_process_group()  # every rank waits here until all files are done


def time_split_wanted(explicit: bool, inputs: int, start: float | None, end: float | None) -> bool:
    """Split by time (under torchrun) when asked, or when one input would leave ranks idle.

    --start/--end keep the per-file path: which audio packets a cut range keeps depends on how
    one demuxer pass meets them, which parts decoded apart could not reproduce exactly.
    """
    if start is not None or end is not None:
        if explicit:
            raise click.UsageError("--split-time cannot be combined with --start/--end")
        return False
    return explicit or inputs == 1


def _split_estimate(estimator: Estimator, source: Path, processes: int) -> RunEstimate | None:
    """The estimate over ``processes`` parts at once, or over one process for a video that
    cannot be split by time (rank 0 then does it alone): a packet pass, no decoding."""
    if isinstance(frame_timestamps(source), str):
        processes = 1
    return estimator.video(source, processes=processes)


def _split_jobs(
    jobs: list[tuple[Path, Path]],
    deblurrer: Deblurrer,
    launch: Launch,
    feedback: Feedback,
    estimator: Estimator,
    **options: Any,
) -> None:
    """Every rank takes its time part of every file in turn; rank 0 prints each file's
    estimate (the ranks' parts run at once) and reports each joined file. ``options`` are
    :func:`deblur_video_split`'s keywords (encoding, compare, overwrite, strength, strict)."""
    for source, destination in jobs:
        if launch.rank == 0:
            feedback.upfront(partial(_split_estimate, estimator, source, launch.world_size))
        label = f"{source.name} (part {launch.rank + 1}/{launch.world_size})"
        with feedback.task(label) as progress:
            summary = deblur_video_split(
                source, destination, deblurrer, launch, progress=progress, **options
            )
        if summary is not None:
            feedback.report(summary)
