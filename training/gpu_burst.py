"""Train on a lent GPU for a fixed time: make the data there, then run the models side by side.

A lent machine brings only the repository (64 MiB in all) and a few minutes. This script makes
the training sets there with every core (``make_data.py --jobs``: the same clips as one process
makes), then trains the paper model and the fast model at once on the one GPU, each to a share of
a wall-clock budget (``deblur train --minutes``), the paper model followed by its GAN stage. Each
stage starts from the shipped file and copies its weights and log to ``--out`` as soon as it ends,
so a stage that fails or a budget cut short loses only what was still running.

    python training/gpu_burst.py --corpus corpus --data /tmp/data --runs /tmp/runs \\
        --out "$OUT" --minutes 6.5 [--val .burst/val_other_80 .burst/val_sharp_80] \\
        [--plan group]

The validation sets are made from other sequences than the corpus that travels, and do not fit
beside it whole, so ``--crop-val`` first writes the centre crops of one (here, before the run):
with ``--val`` each stage then validates on them and delivers its best step (the GAN stage keeps
its latest step within ``--gan-tolerance`` of its start, as on the CPU). Given (b) and (c), each
set weighs alike, so the step kept is the best on blurry and sharp input together:

    python training/gpu_burst.py --crop-val data/val_other .burst/val_other_80 --crop-size 80
    python training/gpu_burst.py --crop-val data/val_sharp .burst/val_sharp_80 --crop-size 80

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

import cv2  # noqa: E402
import make_data  # noqa: E402

from deblur_cli.train import TrainOptions, export_checkpoint, train  # noqa: E402

# The paper-size line (dblrnet, dblrgan) has trained on these since session 7.
CLEAN_SETS = ("train_moderate", "train_sharp", "train_clean")
# The CPU winner since session 16 (EXPERIMENTS.md rows 95, 98-99): still sharp scenes, not the
# moving clean clips, protect sharp input at the least cost to the deblurring.
STATIC_SETS = ("train_moderate", "train_sharp", "train_static")
# px: (b) cropped so is 6.7 MB. The 14 DAVIS sequences (50 MB) and the tree without its large
# files (12.4 MB in session 19) leave 4.7 MB of the 64 MiB that travel: (b) and (c) together fit
# at --crop-size 80 (2.8 + 1.3 MB).
VAL_CROP = 128
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
    options: dict[str, object]


# Each chain runs in its own process; the chains share the GPU. The GAN stage starts from the
# paper model's new weights, so it follows it in the same chain.
CHAINS = (
    (
        Stage("dblrnet", 0.68, dict(init="weights/dblrnet.safetensors", batch=16, lr=4e-4,
                                    warmup=300, seed=4, workers=8)),
        # D at 2e-4 (DCGAN's rate): at the paper's 1e-5 it stayed at chance for ~500 steps.
        # alpha 1e-2: at 2e-3 the output grew sharper by ~0.002 of the truth's per 600 steps;
        # at 1e-2 it passed dblrnet's sharpness within 1,500 (EXPERIMENTS.md row 60).
        Stage("dblrgan", 0.24, dict(stage="gan", init="@dblrnet", batch=16, lr=1e-5, lr_d=2e-4,
                                    alpha=1e-2, schedule="plateau", seed=5, workers=8)),
    ),
    (
        Stage("dblrnet-fast", 0.92, dict(init="weights/dblrnet-fast.safetensors", batch=32,
                                         lr=5e-4, warmup=300, seed=4, workers=6,
                                         sets=STATIC_SETS)),
    ),
)  # fmt: skip
# `--plan group`: the paper-size model on the recipe changes measured to steepen the curve on the
# CPU since `align`: GroupNorm (EXPERIMENTS.md rows 63-73) and train_static in train_clean's place
# (rows 83, 95, 98), from scratch, against the shipped line. GroupNorm's statistics are per
# window, so the batch size does not matter to them; 3e-4 and 1e-3 ended level there. Beside it,
# the shipped fast file (GroupNorm since session 12, 420 CPU-minutes since session 13) continues
# at the GPU's batch: a warm restart at 3e-4, the CPU stages' peak. Ship what either makes only
# if it beats the shipped file of its size on (b) and (c).
GROUP_CHAINS = (
    (
        Stage("dblrnet-group", 0.92, dict(preset="paper", norm="group", batch=16, lr=5e-4,
                                          warmup=300, seed=8, workers=8, sets=STATIC_SETS)),
    ),
    (
        Stage("dblrnet-fast-group", 0.92, dict(init="weights/dblrnet-fast.safetensors", batch=32,
                                               lr=3e-4, warmup=300, seed=8, workers=7,
                                               sets=STATIC_SETS)),
    ),
)  # fmt: skip
# `--plan line` (run with --val on (b) and (c)): the shipped fast file at the GPU's batch again.
# In six minutes at 3e-4 row 104 gained 0.16 dB on (b) and lost 0.45 on sharp input (c), all of
# it on one static highway camera, and the step it kept was chosen on (b) alone. Here each chain
# keeps its best step on (b) and (c) together; the second also doubles the share of sharp input
# and still scenes (from a third of the windows to half), which on the CPU won (c) back fastest
# (EXPERIMENTS.md rows 112-114).
SHARP_HEAVY_SETS = (*STATIC_SETS, "train_sharp", "train_static")
LINE_CHAINS = (
    (
        Stage("dblrnet-fast-line", 0.92, dict(init="weights/dblrnet-fast.safetensors", batch=32,
                                              lr=3e-4, warmup=300, seed=9, workers=7,
                                              sets=STATIC_SETS)),
    ),
    (
        Stage("dblrnet-fast-line-sharp", 0.92, dict(init="weights/dblrnet-fast.safetensors",
                                                    batch=32, lr=3e-4, warmup=300, seed=9,
                                                    workers=7, sets=SHARP_HEAVY_SETS)),
    ),
)  # fmt: skip
# `--plan muon` (run with --val on (b) and (c)): both sizes from scratch with Muon, the CPU's
# steepest recipe (EXPERIMENTS.md rows 126, 128: twice as fast early, +0.26 dB on (b) over AdamW
# at 1e-3 in 30 CPU-minutes) and GroupNorm, which row 105 trained from scratch on an H200 to
# within 0.05 dB of the shipped paper model in 6 minutes. Muon at a GPU's batch is unmeasured:
# the burst itself is the measurement, each chain keeping its best step on (b) and (c).
MUON_CHAINS = (
    (
        Stage("dblrnet-muon", 0.92, dict(preset="paper", norm="group", optimizer="muon",
                                         batch=16, lr=1e-3, warmup=300, seed=10, workers=8,
                                         sets=STATIC_SETS)),
    ),
    (
        Stage("dblrnet-fast-muon", 0.92, dict(preset="fast", norm="group", optimizer="muon",
                                              batch=32, lr=1e-3, warmup=300, seed=10, workers=7,
                                              sets=STATIC_SETS)),
    ),
)  # fmt: skip
PLANS = {"shipped": CHAINS, "group": GROUP_CHAINS, "line": LINE_CHAINS, "muon": MUON_CHAINS}
# Plans that keep each chain's best step on (b) and (c) together, so need both as --val.
VALIDATED_PLANS = ("line", "muon")


def stage_options(
    stage: Stage, data: Path, runs: Path, minutes: float, device: str, val: list[Path] | None = None
) -> TrainOptions:
    """The stage's TrainOptions; ``@NAME`` as init means the weights stage NAME just made, and
    ``sets`` names the training sets (CLEAN_SETS unless given)."""
    options = dict(stage.options)
    sets = options.pop("sets", CLEAN_SETS)
    init = options.get("init")
    if isinstance(init, str) and init.startswith("@"):
        options["init"] = str(runs / init[1:] / "last.safetensors")
    if val:
        val_data = [f"dvd:{folder}" for folder in val]
        options.update(val_data=val_data, val_every=500, val_windows=16, val_crop=VAL_CROP)
    return replace(
        COMMON, **options, out_dir=str(runs / stage.name), device=device,
        train_data=[f"dvd:{data / name}" for name in sets], minutes=stage.share * minutes,
    )  # fmt: skip


def plan_sets(chains: tuple[tuple[Stage, ...], ...]) -> list[str]:
    """The training sets a plan's stages use: the machine makes these and no others (each set
    takes the lent minutes' share of its clips)."""
    names = {
        n for chain in chains for stage in chain for n in stage.options.get("sets", CLEAN_SETS)
    }
    return sorted(names)


def crop_validation(source: Path, target: Path, size: int = VAL_CROP) -> int:
    """Write the centre ``size`` x ``size`` crops of a DVD-layout set; returns the frame count."""
    count = 0
    for image in sorted(source.rglob("*.png")):
        frame = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        top, left = (frame.shape[0] - size) // 2, (frame.shape[1] - size) // 2
        out = target / image.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), frame[top : top + size, left : left + size]):
            raise OSError(f"cannot write {out}")
        count += 1
    return count


def deliver(stage: Stage, runs: Path, out: Path) -> None:
    """Copy a stage's weights and log: its best step (= the last without validation), or the
    last checkpoint's average if it was cut short."""
    run = runs / stage.name
    weights = run / "best.safetensors"
    if not weights.is_file() and (run / "resume.pt").is_file():
        export_checkpoint(run / "resume.pt", weights)
    if weights.is_file():
        shutil.copyfile(weights, out / f"{stage.name}.safetensors")
    if (run / "metrics.jsonl").is_file():
        shutil.copyfile(run / "metrics.jsonl", out / f"{stage.name}.metrics.jsonl")


def run_chain(chain: tuple[Stage, ...], data: Path, runs: Path, out: Path, minutes: float,
              device: str, val: list[Path] | None) -> None:  # fmt: skip
    cv2.setNumThreads(1)  # one thread each: the data loader's workers share the cores
    for stage in chain:
        started = time.monotonic()
        try:
            state = train(stage_options(stage, data, runs, minutes, device, val))
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
    parser.add_argument("--data", type=Path)
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--minutes", type=float, help="training time, all chains")
    parser.add_argument("--jobs", type=int, default=15, help="processes making the data")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--val", type=Path, nargs="+", help="folders written by --crop-val")
    parser.add_argument("--plan", choices=list(PLANS), default="shipped",
                        help="shipped: from the shipped files; group: GroupNorm, new; "
                        "line: the fast file, kept by (b) and (c)")  # fmt: skip
    parser.add_argument("--crop-val", nargs=2, type=Path, metavar=("SOURCE", "TARGET"),
                        help="write the centre crops of a validation set, then exit")  # fmt: skip
    parser.add_argument("--crop-size", type=int, default=VAL_CROP,
                        help="px, for --crop-val (VAL_CROP's note)")  # fmt: skip
    args = parser.parse_args()
    if args.crop_val:
        count = crop_validation(*args.crop_val, size=args.crop_size)
        print(f"{count} frames cropped to {args.crop_val[1]}")
        return
    if None in (args.data, args.runs, args.out, args.minutes):
        parser.error("--data, --runs, --out and --minutes are needed for a burst")
    if args.plan in VALIDATED_PLANS and len(args.val or []) < 2:
        parser.error(f"--plan {args.plan} keeps each chain's best step on (b) and (c): "
                     "give --val both")  # fmt: skip
    started = time.monotonic()
    make_data.main(args.data, plan_sets(PLANS[args.plan]), args.jobs, args.corpus)
    print(f"data made in {time.monotonic() - started:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    chains = [
        context.Process(target=run_chain, args=(chain, args.data, args.runs, args.out,
                                                args.minutes, args.device, args.val))
        for chain in PLANS[args.plan]
    ]  # fmt: skip
    for process in chains:
        process.start()
    for process in chains:
        process.join()
    summarise(args.runs)
    print(f"burst done in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
