"""Train on a lent GPU for a fixed time: make the data there, then run the models side by side.

A lent machine brings only the repository (64 MiB in all) and a few minutes. This script makes
the training sets there with every core (``make_data.py --jobs``: the same clips as one process
makes), then trains the paper model and the fast model at once on the one GPU, each to a share of
a wall-clock budget (``deblur train --minutes``), the paper model followed by its GAN stage. Each
stage starts from the shipped file and copies its weights and log to ``--out`` as soon as it ends,
so a stage that fails or a budget cut short loses only what was still running.

    python training/gpu_burst.py --corpus corpus --data /tmp/data --runs /tmp/runs \\
        --out "$OUT" --minutes 6.5

The shares and flags below are the recipe; EXPERIMENTS.md records each burst and its scores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "training")]

import make_data  # noqa: E402

from deblur_cli.train import TrainOptions, export_checkpoint, train  # noqa: E402

TRAIN_SETS = ("train_moderate", "train_sharp", "train_clean")
# The session-7 recipe (training/*/COMMAND), scaled for a GPU: larger crops and batches.
COMMON = TrainOptions(
    out_dir="", train_data=[], steps=10**9, norm="none", align=True, optimizer="adamw",
    weight_decay=1e-4, schedule="cosine", lr_min=1e-6, loss="charbonnier", crop=128,
    log_every=50, ckpt_every=10**9, ckpt_minutes=1.5, bn_calibration=0,
)  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One training stage: its name (run folder and output files), share of the budget, flags."""

    name: str
    share: float
    options: dict


# Each chain runs in its own process; the chains share the GPU. The GAN stage starts from the
# paper model's new weights, so it follows it in the same chain.
CHAINS = (
    (
        Stage("dblrnet", 0.68, dict(init="weights/dblrnet.safetensors", batch=16, lr=4e-4,
                                    warmup=300, seed=4, workers=8)),
        Stage("dblrgan", 0.24, dict(stage="gan", init="@dblrnet", batch=16, lr=1e-5,
                                    alpha=1e-3, schedule="plateau", seed=5, workers=8)),
    ),
    (
        Stage("dblrnet-fast", 0.92, dict(init="weights/dblrnet-fast.safetensors", batch=32,
                                         lr=5e-4, warmup=300, seed=4, workers=6)),
    ),
)  # fmt: skip


def stage_options(
    stage: Stage, data: Path, runs: Path, minutes: float, device: str
) -> TrainOptions:
    """The stage's TrainOptions; ``@NAME`` as init means the weights stage NAME just made."""
    options = dict(stage.options)
    init = options["init"]
    options["init"] = str(runs / init[1:] / "last.safetensors") if init.startswith("@") else init
    return replace(
        COMMON, **options, out_dir=str(runs / stage.name), device=device,
        train_data=[f"dvd:{data / name}" for name in TRAIN_SETS], minutes=stage.share * minutes,
    )  # fmt: skip


def deliver(stage: Stage, runs: Path, out: Path) -> None:
    """Copy a stage's weights (the last checkpoint's average if it was cut short) and log."""
    run = runs / stage.name
    weights = run / "last.safetensors"
    if not weights.is_file() and (run / "resume.pt").is_file():
        export_checkpoint(run / "resume.pt", weights)
    if weights.is_file():
        shutil.copyfile(weights, out / f"{stage.name}.safetensors")
    if (run / "metrics.jsonl").is_file():
        shutil.copyfile(run / "metrics.jsonl", out / f"{stage.name}.metrics.jsonl")


def run_chain(chain: tuple[Stage, ...], data: Path, runs: Path, out: Path, minutes: float,
              device: str) -> None:  # fmt: skip
    import cv2  # one thread each: the data loader's workers share the cores

    cv2.setNumThreads(1)
    for stage in chain:
        started = time.monotonic()
        try:
            state = train(stage_options(stage, data, runs, minutes, device))
            print(f"{stage.name}: {state.step} steps in {time.monotonic() - started:.0f} s",
                  flush=True)  # fmt: skip
        except Exception:  # report, deliver what exists, let the other chains go on
            traceback.print_exc()
            deliver(stage, runs, out)
            return
        deliver(stage, runs, out)


def summarise(runs: Path) -> None:
    """Steps and speed of each stage, from its metrics.jsonl."""
    for path in sorted(runs.glob("*/metrics.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        speed = [r["steps_per_s"] for r in records if "steps_per_s" in r]
        last = records[-1] if records else {}
        print(f"{path.parent.name}: step {last.get('step')}, loss {last.get('loss', 0):.5f}, "
              f"{sum(speed[1:]) / max(len(speed) - 1, 1):.1f} steps/s", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=make_data.CORPUS)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True, help="training time, all chains")
    parser.add_argument("--jobs", type=int, default=15, help="processes making the data")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    started = time.monotonic()
    make_data.main(args.data, list(TRAIN_SETS), args.jobs, args.corpus)
    print(f"data made in {time.monotonic() - started:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    chains = [
        context.Process(target=run_chain, args=(chain, args.data, args.runs, args.out,
                                                args.minutes, args.device))
        for chain in CHAINS
    ]  # fmt: skip
    for process in chains:
        process.start()
    for process in chains:
        process.join()
    summarise(args.runs)
    print(f"burst done in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
