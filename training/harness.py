"""Learning-efficiency harness: train recipes for the same CPU time, compare how far each got.

A network that never learned cannot be rescued by more hours, so recipes are compared by what
they reach per CPU-minute before one is given a long run. Every arm is a real ``deblur train``
run (fast preset unless the arm says otherwise) on the same data and seed, stopped by
``--cpu-minutes``, one thread per arm, arms in parallel. Each arm is then scored by the real
engine (``deblur_cli.bench.run_bench``: whole frames, Y PSNR of output and input) on the
validation sets of ``training/make_data.py``:

  (a) val_own          held-back clips of the training kind (validation sequences and seeds)
  (b) val_other        PSF blur, a process no arm trains on
  (c) val_sharp        sharp frames with light JPEG: a model must leave them alone
  (b) val_other_clean  (b) without noise or JPEG: its gain is deblurring, not clean-up

Usage (from the repository root, after ``python training/make_data.py DATA``)::

    python training/harness.py --data DATA --runs RUNS --minutes 25 --parallel 4 base hints
    python training/harness.py --data DATA --runs RUNS --report-only base hints \\
        --curve docs/learning_curves.png

The table goes to stdout (markdown) and RUNS/harness.json; its rows belong in
training/EXPERIMENTS.md. Runs live outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deblur_cli.bench import run_bench
from deblur_cli.datasets import find_sequences
from deblur_cli.engine import Deblurrer
from deblur_cli.metrics import psnr
from deblur_cli.models import FAST
from deblur_cli.train import fixed_validation_windows
from deblur_cli.weights import load_model

# Today's recipe (sessions 1-5): BatchNorm, Adam 2e-4 with plateau drops, MSE, broad blur.
BASE = ["--lr", "2e-4", "--loss", "mse"]
# The optimisation arm: what fast-learning restoration networks use (EDSR, NAFNet): no BN,
# AdamW at a high rate with warm-up and cosine decay, a smooth L1 loss.
FASTER = [
    "--norm", "none", "--optimizer", "adamw", "--weight-decay", "1e-4", "--lr", "1e-3",
    "--lr-min", "1e-5", "--schedule", "cosine", "--warmup", "200", "--loss", "charbonnier",
]  # fmt: skip
SMALL_CROPS = ["--crop", "64", "--batch", "8"]
CROPS_128 = ["--crop", "128", "--batch", "2"]  # the same pixels a step
CROPS_48 = ["--crop", "48", "--batch", "14"]  # 32,256 pixels a step against 32,768
MIXED = ("train_moderate", "train_sharp")
WITH_CLEAN = (*MIXED, "train_clean")
# On the unbiased data (bicubic sub-exposures) `align` died at 1e-3 from scratch (output =
# input; EXPERIMENTS.md row 43); it learns at 3e-4.
UNALIGNED_3E4 = [*FASTER, *SMALL_CROPS, "--lr", "3e-4"]
ALIGN_3E4 = [*UNALIGNED_3E4, "--align"]
# Continued training of the shipped CPU model, as session 9's stage 6 (EXPERIMENTS.md row 57).
SHIPPED_FAST = Path(__file__).resolve().parents[1] / "weights" / "dblrnet-fast.safetensors"
FINE_TUNE = [*FASTER, *SMALL_CROPS, "--init", str(SHIPPED_FAST), "--lr", "2e-4", "--lr-min",
             "1e-6", "--warmup", "100"]  # fmt: skip
# Session 11: GroupNorm at the `faster` recipe's own rate; the photographs' training mix.
GROUP = ["--norm", "group"]
GROUP_1E3 = [*FASTER, *SMALL_CROPS, "--align", *GROUP]
PHOTOS_CLEAN = ("train_photos", "train_sharp", "train_clean")
# Session 21's curriculum: the first third of the run on narrow blur and the nearly sharp clips.
NARROW_FIRST = ["--easy-data", "dvd:{data}/train_narrow", "--easy-data", "dvd:{data}/train_sharp",
                "--easy-share", "0.33"]  # fmt: skip
MUON = ["--optimizer", "muon"]
ARMS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    # name: (training sets under DATA, mixed by clip count; extra `deblur train` flags, where
    # "{data}" stands for DATA)
    "base": (("train_broad",), [*BASE, *SMALL_CROPS]),
    "moderate": (("train_moderate",), [*BASE, *SMALL_CROPS]),
    "faster": (("train_moderate",), [*FASTER, *SMALL_CROPS]),
    "hints": (("train_moderate",), [*FASTER, *SMALL_CROPS, "--motion-hints"]),
    "align": (("train_moderate",), [*FASTER, *SMALL_CROPS, "--align"]),
    "crop128": (("train_moderate",), [*FASTER, *CROPS_128]),
    "hints-align": (("train_moderate",), [*FASTER, *SMALL_CROPS, "--motion-hints", "--align"]),
    # Blocks at 1/2 and 1/4 resolution: the same multiply-adds per block, 4x the reach.
    "unet": (("train_moderate",), [*FASTER, *SMALL_CROPS, "--body", "unet"]),
    # Session 7: sharp and nearly sharp clips in every arm (a quarter of the windows), and the
    # loss that weighs them: Charbonnier (absolute error) against per-window PSNR (dB).
    "align-sharp": (MIXED, [*FASTER, *SMALL_CROPS, "--align"]),
    "align-psnr": (MIXED, [*FASTER, *SMALL_CROPS, "--align", "--loss", "psnr"]),
    "align-sharp-3e-4": (MIXED, ALIGN_3E4),
    # + train_clean (sharp clips, < 0.4 px of blur; 27% of the windows): leave them alone.
    "align-clean": (WITH_CLEAN, [*FASTER, *SMALL_CROPS, "--align"]),
    # The U-shaped body again, at a rate it survives (it died at 1e-3 without normalisation).
    "unet-clean": (WITH_CLEAN, [*ALIGN_3E4, "--body", "unet"]),
    # Session 10: the control, and the network predicting a 5x5 filter per pixel and (aligned)
    # frame instead of the pixels (kernel prediction, as KPN / STFAN).
    "align-clean-3e-4": (WITH_CLEAN, ALIGN_3E4),
    "kernels-clean-3e-4": (WITH_CLEAN, [*ALIGN_3E4, "--predict", "kernels"]),
    # Session 11: GroupNorm at the rate that killed the unnormalised network from scratch
    # (row 43); normalisation is what lets restoration networks train at high rates.
    "group-clean-1e-3": (WITH_CLEAN, GROUP_1E3),
    "group-clean-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP]),
    # Content: train_photos is train_moderate with 22 wallpaper photographs beside the corpus
    # footage (about a third of its clips); the control's mix and clip count otherwise.
    "photos-clean-3e-4": (PHOTOS_CLEAN, ALIGN_3E4),
    # The winners of normalisation and content together.
    "group-photos-1e-3": (PHOTOS_CLEAN, GROUP_1E3),
    # The shipped file's ReLU channels that never fire (a tenth of them), re-initialised before
    # fine-tuning, against the same fine-tuning without.
    "finetune-fast": (WITH_CLEAN, FINE_TUNE),
    "finetune-fast-recycle": (WITH_CLEAN, [*FINE_TUNE, "--recycle-dormant"]),
    # Residual branches that start at zero (SkipInit): the unnormalised network at 1e-3.
    "skipinit-clean-1e-3": (WITH_CLEAN, [*FASTER, *SMALL_CROPS, "--align", "--zero-init-residual"]),
    # Session 12: BatchNorm in GroupNorm's place at the same recipe (row 28 dropped BN together
    # with Adam, MSE and the plateau schedule, so BN alone was never measured). BN folds into the
    # convs and tiles; GroupNorm does neither.
    "batch-clean-3e-4": (WITH_CLEAN, [*ALIGN_3E4, "--norm", "batch"]),
    # The frequency loss of MIMO-UNet (spectral L1 beside the pixel loss, 0.1 as there): blur
    # takes the high frequencies, which a pixel loss hardly sees; on the winner, GroupNorm.
    "group-fft-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--fft-weight", "0.1"]),
    # GroupNorm does not depend on the batch, so larger crops in smaller batches (equal pixels
    # a step) cost it nothing in statistics, and its training statistics come nearer to whole
    # frames'; more context for long blur.
    "group-crop128-3e-4": (WITH_CLEAN, [*FASTER, *CROPS_128, "--align", "--lr", "3e-4", *GROUP]),
    # Session 13: motion hints (the centre frame's DIS flow as two input planes) were measured
    # once, on the biased data without normalisation (row 30, within noise); on the winner now.
    "group-hints-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--motion-hints"]),
    # The U-shaped body (4x the reach at the same multiply-adds) died without normalisation at
    # 1e-3 and was no faster at 3e-4 (rows 32, 41); with GroupNorm in its blocks, and its way
    # back up starting at zero. (Without that zero start, at 1981857, it stayed at output =
    # input: EXPERIMENTS.md row 76.)
    "group-unet-zero-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--body", "unet"]),
    # LayerNorm over each pixel's channels (NAFNet's) in GroupNorm's place: statistics per
    # pixel, so a file would tile (bounded memory at 4K) where GroupNorm's cannot.
    "channel-clean-3e-4": (WITH_CLEAN, [*ALIGN_3E4, "--norm", "channel"]),
    # The winner again with another seed (initialisation and the order of the windows): how far
    # apart two runs of one recipe end, the noise floor every difference above is read against.
    "group-clean-3e-4-seed1": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--seed", "1"]),
    # Every residual branch of the winner starts at zero, by its GroupNorm's scale ("zero gamma",
    # Goyal et al. 2017): each block adds a unit-scale GroupNorm output to the stream otherwise.
    "group-zerogamma-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--zero-init-residual"]),
    # GroupNorm's gain is its per-frame statistics (rows 72, 79): channel attention (NAFNet's,
    # the branch times a 1x1 conv of its frame mean) gives each block more of that global view.
    "group-attention-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, "--attention"]),
    # The winner without train_clean (27% of its windows are sharp clips to leave alone): what
    # those windows cost the deblurring, and what they buy on sharp input (c). Session 13's
    # winner: +0.12-0.14 dB on (b) over two seeds of group-clean-3e-4, -0.06-0.08 on (c).
    "group-noclean-3e-4": (MIXED, [*ALIGN_3E4, *GROUP]),
    # Session 14: train_sharp taken away too: train_moderate alone, whose clips are a quarter static
    # (unblurred, noisy, compressed). Dropping train_clean steepened (b); the question is
    # whether the nearly sharp clips cost (b) as well, and what (c) loses without them.
    "group-moderate-3e-4": (("train_moderate",), [*ALIGN_3E4, *GROUP]),
    # The two winners on (b) and (c) together: session 13's data without train_clean, and
    # branches that start at zero by GroupNorm's scale (+0.12 dB on (c) with train_clean).
    "group-noclean-zerogamma-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, "--zero-init-residual"]),
    # Session 13's winner with another seed: its margin over group-clean-3e-4 rests on one run.
    "group-noclean-3e-4-seed1": (MIXED, [*ALIGN_3E4, *GROUP, "--seed", "1"]),
    # train_clean back, at a smaller share: without it the long run lost 0.26 dB on sharp input
    # (row 86). Each set listed twice is drawn twice as often (the windows are pooled), so this
    # keeps the winner's moderate:sharp ratio with the clean clips at 16% of the windows, not 27%.
    "group-cleanshare-3e-4": ((*MIXED, *MIXED, "train_clean"), [*ALIGN_3E4, *GROUP]),
    # Session 15: sharp frames protected by more of the nearly sharp clips instead (row 89:
    # the clean clips trade (b) for (c) linearly): train_sharp listed twice, 40% of the windows.
    "group-sharpshare-3e-4": (
        ("train_moderate", "train_sharp", "train_sharp"),
        [*ALIGN_3E4, *GROUP],
    ),
    # The winner even on its own training clips gains only +1.47 dB (stage 9; +1.22 on (a)):
    # it underfits. Its body sees 19 px on each side, blur in (b) reaches 16 px. Dilating the
    # blocks 1, 2, 4 in turn nearly doubles the reach (35 px) at the same cost a step.
    "group-noclean-dilated-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, "--dilated"]),
    # Smaller crops, more of them at equal pixels: 128x128 lost to 64x64 under GroupNorm (row 75),
    # so 14 windows of 48x48 a step (32,256 pixels against 32,768) are the other direction.
    "group-noclean-crop48-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, *CROPS_48]),
    # The loss the table is scored in: minus each window's PSNR (mean dB over frames), so a
    # sharp window's dB count as much as a blurry one's. Rejected on the biased data (row 39);
    # sharp input (c) is what keeps the no-clean recipe from shipping (row 86).
    "group-noclean-psnr-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, "--loss", "psnr"]),
    # The paper's loss, MSE, in Charbonnier's place: the table's metric is MSE's, and MSE weighs
    # large errors (blurred edges) above small ones (noise, compression) where L1 weighs all alike.
    "group-noclean-mse-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, "--loss", "mse"]),
    # The 48-pixel crops with the clean clips back: whether the steeper curve lets the recipe keep
    # the windows that protect sharp input (rows 86, 89) at the no-clean recipe's gain on (b).
    "group-clean-crop48-3e-4": (WITH_CLEAN, [*ALIGN_3E4, *GROUP, *CROPS_48]),
    "group-noclean-crop48-3e-4-seed1": (MIXED, [*ALIGN_3E4, *GROUP, *CROPS_48, "--seed", "1"]),
    # Sharp input (c) is a static sharp scene with light JPEG; train_clean's static clips alone
    # (train_static, 50 clips: 11% of the windows) are that, the 70% that move are not.
    "group-noclean-static-3e-4": ((*MIXED, "train_static"), [*ALIGN_3E4, *GROUP]),
    # Session 21: a curriculum. A third of the budget on narrow blur (train_narrow: the same
    # scenes with a third of the blur lengths) beside the nearly sharp clips, then the winner's
    # data; one optimiser and cosine throughout. Narrow, uniform blur is learnt fast (+8.9 dB in
    # 25 minutes, issue 14): does that start steepen the moderate task's curve?
    "group-noclean-narrow-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, *NARROW_FIRST]),
    # Further along: 32 windows of 32x32 (the reach, 19 px, is then wider than the crop).
    "group-noclean-crop32-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, "--crop", "32", "--batch", "32"]),
    # Session 23: the same without alignment. Row 121's steps were steeper, but aligning 32
    # windows a step cost 0.8x the step outside the counted minutes; unaligned, the windows are
    # nearly free. Level with the control by total CPU, or ahead?
    "group-noclean-crop32-noalign-3e-4": (
        MIXED,
        [*UNALIGNED_3E4, *GROUP, "--crop", "32", "--batch", "32"],
    ),
    # Its pair at the control's 8 windows of 64x64: which of the two changes does what.
    "group-noclean-noalign-3e-4": (MIXED, [*UNALIGNED_3E4, *GROUP]),
    # Session 24: Muon (orthogonalised momentum) for the hidden convolutions, AdamW for the rest
    # (deblur_cli/optimizers.py), at the control's rate and at the `faster` recipe's 1e-3.
    "group-noclean-muon-3e-4": (MIXED, [*ALIGN_3E4, *GROUP, *MUON]),
    "group-noclean-muon-1e-3": (MIXED, [*ALIGN_3E4, *GROUP, *MUON, "--lr", "1e-3"]),
}
VAL_SETS = {
    "own": "val_own",
    "other": "val_other",
    "sharp": "val_sharp",
    "clean": "val_other_clean",
}


def train_command(arm: str, data: Path, runs: Path, minutes: float, preset: str) -> list[str]:
    train_sets, flags = ARMS[arm]
    sources = [arg for name in train_sets for arg in ("--data", f"dvd:{data / name}")]
    return [
        sys.executable, "-m", "deblur_cli", "train", "--preset", preset, *sources,
        "--val", f"dvd:{data / 'val_other'}",
        "-o", str(runs / arm), "--cpu-minutes", str(minutes), "--steps", "1000000",
        "--val-every", "500", "--val-windows", "16", "--ckpt-minutes", "5", "--seed", "0",
        "--quiet", *(flag.format(data=data) for flag in flags),
    ]  # fmt: skip


def train_arms(arms: list[str], data: Path, runs: Path, minutes: float, parallel: int,
               preset: str) -> None:  # fmt: skip
    """Run the arms, ``parallel`` at a time, one thread each; their logs go to RUNS/ARM.log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running = list(arms), []
    while pending or running:
        while pending and len(running) < parallel:
            arm = pending.pop(0)
            runs.mkdir(parents=True, exist_ok=True)
            log = open(runs / f"{arm}.log", "w")  # noqa: SIM115 - closed when the run ends
            command = train_command(arm, data, runs, minutes, preset)
            print(f"start {arm}: {' '.join(command)}", flush=True)
            running.append((arm, subprocess.Popen(command, stdout=log, stderr=log, env=env), log))
        time.sleep(5)
        for entry in list(running):
            arm, process, log = entry
            if process.poll() is not None:
                log.close()
                running.remove(entry)
                print(f"done {arm}: exit {process.returncode}", flush=True)


def run_summary(run: Path) -> dict[str, float]:
    """Steps and CPU minutes the run reached, from its metrics log."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if "cpu_minutes" in r]
    last = timed[-1] if timed else {"step": 0, "cpu_minutes": 0.0}
    return {"steps": last["step"], "cpu_minutes": last["cpu_minutes"]}


def score(weights: Path, data: Path) -> dict[str, float]:
    """Gain in Y PSNR over the input on each validation set, whole frames, real engine."""
    engine = Deblurrer(load_model(str(weights)), device="cpu", threads=1)
    gains = {}
    for key, folder in VAL_SETS.items():
        sequences = find_sequences("dvd", data / folder, split="train")
        result = run_bench(sequences, {"input": None, "model": engine})
        gains[key] = result.average("model")["psnr_y"] - result.average("input")["psnr_y"]
    return gains


def report(arms: list[str], data: Path, runs: Path) -> list[dict]:
    rows = []
    for arm in arms:
        weights = runs / arm / "last.safetensors"
        if not weights.is_file():
            print(f"{arm}: no {weights}", file=sys.stderr)
            continue
        rows.append({"arm": arm, **run_summary(runs / arm), **score(weights, data)})
    print("| arm | CPU minutes | steps | gain (a) own | gain (b) other | gain (c) sharp | "
          "gain (b) clean |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {r['cpu_minutes']:.1f} | {r['steps']:,} | {r['own']:+.2f} | "
              f"{r['other']:+.2f} | {r['sharp']:+.2f} | {r['clean']:+.2f} |")  # fmt: skip
    (runs / "harness.json").write_text(json.dumps(rows, indent=1))
    return rows


def reference_input_psnr(data: Path) -> float:
    """Y PSNR of the blurry centre frames of the validation windows every arm is scored on."""
    blurry, sharp = fixed_validation_windows([f"dvd:{data / 'val_other'}"], FAST, 16, 256)
    centre = blurry[:, 0, FAST.frames // 2].numpy()
    return float(
        np.mean(
            [psnr(b, t, data_range=1.0) for b, t in zip(centre, sharp[:, 0].numpy(), strict=True)]
        )
    )


def plot_curves(arms: list[str], data: Path, runs: Path, path: Path) -> None:
    """Validation gain on (b) windows against CPU minutes, one line per arm.

    The gain is taken against an input PSNR computed here, not the one each run logged: runs
    before the hint-plane fix logged a wrong input PSNR for models with motion hints."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = reference_input_psnr(data)
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in arms:
        metrics = runs / arm / "metrics.jsonl"
        if not metrics.is_file():
            continue
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        points = [
            (r.get("cpu_minutes", 0.0), r["val_psnr"] - reference)
            for r in records
            if "val_psnr" in r
        ]
        ax.plot(*zip(*points, strict=True), marker="o", label=arm)
    ax.set_xlabel("CPU minutes (one thread)")
    ax.set_ylabel("gain over input, dB (val_other windows)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", choices=list(ARMS))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/harness"))
    parser.add_argument("--minutes", type=float, default=25.0, help="CPU minutes per arm")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--curve", type=Path, default=None, help="write the curves here (PNG)")
    args = parser.parse_args()
    if not args.report_only:
        train_arms(args.arms, args.data, args.runs, args.minutes, args.parallel, args.preset)
    report(args.arms, args.data, args.runs)
    if args.curve:
        plot_curves(args.arms, args.data, args.runs, args.curve)


if __name__ == "__main__":
    main()
