"""The paper's ablation (Sec. IV, Table II): single, multi and 3d trained the same way.

Run from the repository root after ``python training/make_data.py data``:

    OMP_NUM_THREADS=1 python training/ablation.py [--steps 600]

Each architecture is trained from scratch with identical options (data, loss, batch, crop, lr,
seed, steps: a smaller budget than the shipped model's), then all three are scored by
training/report.py's validation table on val_other (unseen blur process) and val_own. Runs go
to ``--runs`` (runs/ablation: outside the tree, like every run's checkpoints), the tables to
docs/results/ABLATION.md and .json; an architecture whose run already reached ``--steps`` is
not trained again, so the script can be stopped and rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from report import RESULTS, VAL_SETS, validation_table  # training/report.py, next to this file

from deblur_cli.engine import Deblurrer
from deblur_cli.train import TrainOptions, train
from deblur_cli.weights import load_model

ARCHES = ("single", "multi", "3d")


def options(arch: str, steps: int, runs: Path) -> TrainOptions:
    """The one recipe every architecture gets (the shipped run's, at a smaller budget)."""
    return TrainOptions(
        out_dir=str(runs / arch), train_data=["dvd:data/train"], preset="paper", arch=arch,
        frames=5, batch=8, crop=64, loss="charbonnier", lr=2e-4, ema_decay=0.999,
        bn_calibration=32, steps=steps, log_every=25, ckpt_every=100, ckpt_minutes=5.0, seed=0,
    )  # fmt: skip


def markdown(table: dict[str, dict], steps: int) -> str:
    lines = [
        "# Ablation: single vs multi vs 3d (computed by training/ablation.py)",
        "",
        f"Each trained from scratch for {steps} steps, batch 8 of 64x64, Charbonnier loss, "
        "Adam 2e-4, weight average + recomputed BatchNorm statistics, seed 0, on data/train; "
        "scored on whole validation clips.",
        "",
    ]
    for name, rows in table.items():
        base = rows["input"]["psnr_y"]
        lines += [f"## {name}: {VAL_SETS[name]}", ""]
        lines += ["| model | PSNR Y | gain Y (dB) | SSIM Y | PSNR RGB |", "|---|---|---|---|---|"]
        for model, r in rows.items():
            lines.append(
                f"| {model} | {r['psnr_y']:.2f} | {r['psnr_y'] - base:+.2f} | "
                f"{r['ssim_y']:.4f} | {r['psnr_rgb']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


@click.command()
@click.option("--steps", type=click.IntRange(1), default=600, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=Path("data"))
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs/ablation"))
def main(steps: int, data: Path, runs: Path) -> None:
    for arch in ARCHES:
        resume = (runs / arch / "resume.pt").is_file()
        state = train(options(arch, steps, runs), resume=resume)
        click.echo(f"{arch}: trained to step {state.step}", err=True)
    engines = {a: Deblurrer(load_model(str(runs / a / "last.safetensors"))) for a in ARCHES}
    table = validation_table(data, {"input": None, **engines})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ABLATION.json").write_text(json.dumps({"steps": steps, **table}, indent=2) + "\n")
    (RESULTS / "ABLATION.md").write_text(markdown(table, steps))
    click.echo(markdown(table, steps))


if __name__ == "__main__":
    main()
