"""``deblur train`` and ``deblur export``: thin wrappers over :mod:`deblur_cli.train`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deblur_cli.models.dblrnet import BODIES, NORMS, PREDICTIONS
from deblur_cli.train import (
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    STAGES,
    TRAIN_DEVICES,
    TrainOptions,
    export_checkpoint,
    parse_sources,
    train,
)

DEFAULTS = TrainOptions(out_dir="", train_data=[])


def default(name: str) -> object:
    return getattr(DEFAULTS, name)


@click.command("train")
@click.option(
    "--data",
    "train_data",
    multiple=True,
    required=True,
    metavar="LAYOUT:PATH",
    help="Training data, e.g. dvd:data/train (layouts: dvd, gopro, kitti, folder). "
    "Repeat to mix datasets.",
)
@click.option(
    "--val",
    "val_data",
    multiple=True,
    metavar="LAYOUT:PATH",
    help="Validation data (a fixed set of centre crops is scored every --val-every steps).",
)
@click.option(
    "--easy-data",
    multiple=True,
    metavar="LAYOUT:PATH",
    help="A curriculum: train on these (easier) data for the first --easy-share of the run, "
    "then on --data; one optimiser and schedule throughout.",
)
@click.option(
    "--easy-share",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=default("easy_share"),
    show_default=True,
    help="Fraction of the run (steps or time budget) trained on --easy-data.",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: resume.pt, metrics.jsonl, best/last.safetensors.",
)
@click.option("--stage", type=click.Choice(STAGES), default="content", show_default=True)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="paper",
    show_default=True,
    help="Network widths/depth: paper (Table I), fast (CPU preset), tiny (tests).",
)
@click.option(
    "--arch", type=click.Choice(["3d", "multi", "single"]), default="3d", show_default=True
)
@click.option("--frames", type=click.IntRange(3, 11), default=5, show_default=True)
@click.option("--no-global-residual", is_flag=True, help="Predict the frame, not a correction.")
@click.option("--init", default=None, help="Start from these weights (the GAN stage needs it).")
@click.option("--steps", type=click.IntRange(1), default=default("steps"), show_default=True)
@click.option("--batch", type=click.IntRange(1), default=default("batch"), show_default=True)
@click.option("--crop", type=click.IntRange(16), default=default("crop"), show_default=True)
@click.option("--lr", type=float, default=None, help="Default 1e-4 (content) or 1e-5 (gan).")
@click.option(
    "--loss",
    type=click.Choice(["mse", "charbonnier", "psnr"]),
    default=default("loss"),
    show_default=True,
    help="Pixel loss: mse as in the paper, charbonnier (smooth L1), or psnr (per-window dB: "
    "sharp windows count as much as blurry ones).",
)
@click.option(
    "--fft-weight",
    type=click.FloatRange(0),
    default=default("fft_weight"),
    show_default=True,
    help="Add this times the L1 distance of the 2D spectra to the pixel loss (MIMO-UNet's "
    "frequency loss, 0.1 there; unnormalised, so it grows with --crop).",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=default("ema_decay"),
    show_default=True,
    help="Validate and export a moving average of the weights (0: off).",
)
@click.option(
    "--bn-calibration",
    type=click.IntRange(0),
    default=default("bn_calibration"),
    show_default=True,
    help="Training batches to recompute BatchNorm statistics on before validation/export.",
)
@click.option(
    "--neighbour-augment/--no-neighbour-augment",
    default=default("neighbour_augment"),
    show_default=True,
    help="Now and then cut, repeat or warp a window's neighbours, so the network does not "
    "ghost when real neighbours disagree with the centre frame.",
)
@click.option(
    "--zero-init-residual",
    is_flag=True,
    default=default("zero_init_residual"),
    help="Start every residual branch at zero (SkipInit): a new network is the identity in "
    "depth, which lets it train without normalisation at high rates.",
)
@click.option(
    "--recycle-dormant",
    is_flag=True,
    default=default("recycle_dormant"),
    help="Before the first step, re-initialise channels whose ReLU never fires (their output "
    "weights zeroed: same function) so that they can learn again; for --init runs.",
)
@click.option("--lr-min", type=float, default=default("lr_min"), show_default=True)
@click.option(
    "--norm",
    type=click.Choice(NORMS),
    default=default("norm"),
    show_default=True,
    help="none: no BatchNorm; group: GroupNorm, as today's dblrnet-fast; channel: LayerNorm over "
    "each pixel's channels (deviations from the paper, stored in the weight file).",
)
@click.option(
    "--motion-hints",
    is_flag=True,
    help="Give the network the centre frame's motion (DIS optical flow) as two extra planes.",
)
@click.option("--align", is_flag=True, help="Warp the neighbours onto the centre frame (DIS).")
@click.option(
    "--body",
    type=click.Choice(BODIES),
    default=default("body"),
    show_default=True,
    help="unet: residual blocks at 1/2 and 1/4 resolution, 4x the reach (not with --norm batch).",
)
@click.option(
    "--predict",
    type=click.Choice(PREDICTIONS),
    default=default("predict"),
    show_default=True,
    help="kernels: predict a 5x5 filter per pixel and frame, applied to the (aligned) frames.",
)
@click.option(
    "--attention",
    is_flag=True,
    help="Channel attention in every residual block (NAFNet's; whole frames, general path).",
)
@click.option(
    "--dilated",
    is_flag=True,
    help="Residual blocks dilated 1, 2, 4 in turn: twice the reach, same cost (general path).",
)
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZERS),
    default=default("optimizer"),
    show_default=True,
    help="muon: orthogonalised momentum for the hidden convolutions, AdamW for the rest "
    "(experimental; deblur_cli/optimizers.py).",
)
@click.option("--weight-decay", type=float, default=default("weight_decay"), show_default=True)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default=default("schedule"),
    show_default=True,
    help="plateau: lr / 10 when validation stalls; cosine: warm-up, then cosine decay.",
)
@click.option("--warmup", type=click.IntRange(0), default=default("warmup"), show_default=True)
@click.option(
    "--cpu-minutes",
    type=float,
    default=default("cpu_minutes"),
    show_default=True,
    help="Stop after this much process CPU time (0: no limit); cosine decays to it.",
)
@click.option(
    "--minutes",
    type=float,
    default=default("minutes"),
    show_default=True,
    help="Stop after this much wall-clock time in training (0: no limit); cosine decays to it.",
)
@click.option(
    "--device",
    type=click.Choice(TRAIN_DEVICES),
    default=default("device"),
    show_default=True,
    help="auto: CUDA when present, else the CPU.",
)
@click.option(
    "--alpha",
    type=float,
    default=default("alpha"),
    show_default=True,
    help="Weight of the adversarial loss in the GAN stage.",
)
@click.option(
    "--lr-d",
    type=float,
    default=default("lr_d"),
    show_default=True,
    help="Discriminator learning rate (GAN stage). The paper's 1e-5 suits its long runs; a "
    "discriminator trained from scratch for minutes needs more (DCGAN: 2e-4).",
)
@click.option(
    "--gan-tolerance",
    type=float,
    default=default("gan_tolerance"),
    show_default=True,
    help="GAN stage: keep the latest generator within this many dB of the starting PSNR.",
)
@click.option(
    "--val-every", type=click.IntRange(1), default=default("val_every"), show_default=True
)
@click.option(
    "--val-windows",
    type=click.IntRange(1),
    default=default("val_windows"),
    show_default=True,
    help="Windows scored from each --val set (each set weighs alike in the mean).",
)
@click.option(
    "--log-every", type=click.IntRange(1), default=default("log_every"), show_default=True
)
@click.option(
    "--ckpt-every", type=click.IntRange(1), default=default("ckpt_every"), show_default=True
)
@click.option("--ckpt-minutes", type=float, default=default("ckpt_minutes"), show_default=True)
@click.option("--seed", type=int, default=default("seed"), show_default=True)
@click.option("--workers", type=click.IntRange(0), default=default("workers"), show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on CUDA and on CPUs with native bf16.",
)
@click.option(
    "--reset-lr",
    is_flag=True,
    help="With --resume: continue at --lr instead of the checkpoint's learning rate.",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/resume.pt (same options).")
@click.option("--quiet", "-q", is_flag=True)
def train_command(
    resume: bool, quiet: bool, no_global_residual: bool, lr: float | None, **values: object
) -> None:
    """Train DBLRNet (--stage content) or fine-tune DBLRGAN from it (--stage gan)."""
    stage = values["stage"]
    values["lr"] = lr if lr is not None else (1e-5 if stage == "gan" else 1e-4)
    values["global_residual"] = not no_global_residual
    values["train_data"] = list(values["train_data"])  # type: ignore[arg-type]
    values["val_data"] = list(values["val_data"])  # type: ignore[arg-type]
    values["easy_data"] = list(values["easy_data"])  # type: ignore[arg-type]
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    options = TrainOptions(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]
    # Missing data fails here, before the run folder or the progress bar exist.
    parse_sources(options.train_data + options.val_data + options.easy_data)
    console = Console(stderr=True)
    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} steps/s loss {task.fields[loss]:.5f}"),
        TimeRemainingColumn(),
    ]  # fmt: skip
    with Progress(*columns, console=console, disable=quiet) as bar:
        task = bar.add_task(f"train {stage}", total=options.steps, rate=0.0, loss=0.0)

        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            speed = bar.tasks[task].speed or 0.0
            bar.update(task, completed=step, total=total, loss=losses["loss"], rate=speed)

        state = train(options, resume=resume, progress=progress)
    out = Path(options.out_dir)
    click.echo(
        f"trained to step {state.step}; best val PSNR {state.best_psnr:.2f} dB; "
        f"weights {out / 'best.safetensors'}",
        err=True,
    )


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="Weights file to write (.safetensors), loadable with --model PATH.",
)
@click.option(
    "--calibrate-on",
    "calibrate_on",
    multiple=True,
    metavar="LAYOUT:PATH",
    help="Recompute BatchNorm statistics on this training data (as training does on export).",
)
@click.option("--batches", type=click.IntRange(1), default=32, show_default=True)
def export_command(
    checkpoint: Path, output: Path, calibrate_on: tuple[str, ...], batches: int
) -> None:
    """Turn a training checkpoint (resume.pt) or a weights file into a weights file."""
    path = export_checkpoint(checkpoint, output, list(calibrate_on), batches)
    click.echo(f"wrote {path}", err=True)
