"""Training report: validation table, training curve and before/after pictures.

Run from the repository root after training (needs data/ from training/make_data.py):

    python training/report.py --model dblrnet=weights/dblrnet.safetensors \
        --model dblrgan=weights/dblrgan.safetensors \
        --curve training/dblrnet/1-scratch/metrics.jsonl:0:2750 \
        --curve training/dblrnet/2-crop128/metrics.jsonl:2750

Writes docs/results/VALIDATION.md (+ .json), docs/training_curve.png and docs/before_after/*.png.
A model whose weight file has not changed since VALIDATION.json was committed can keep its rows:
``--reuse dblrnet=weights/dblrnet.safetensors`` instead of ``--model`` (checked with git).
Every number is computed here from the data and the weight files; nothing is typed in.
Without ``--model`` it only draws the curve, from the metrics logs alone (no data needed), as
for each shipped model's ``training/<model>/curve.png`` (training/README.md):

    python training/report.py --curve-out training/dblrnet-fast/curve.png --mark 5500:shipped \
        --curve training/dblrnet-fast/1-scratch/metrics.jsonl:0:5000 \
        --curve training/dblrnet-fast/2-neighbours/metrics.jsonl:5000
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import click
import cv2
import numpy as np

from deblur_cli.bench import luma8, read_unit_rgb, run_bench
from deblur_cli.datasets import dvd_sequences, load_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.metrics import gradient_magnitude, mean_abs_change, psnr
from deblur_cli.weights import load_model

VAL_SETS = {
    "val_other": "(b) PSF blur, a process not used in training; validation sequences",
    "val_own": "(a) camera shake like training; validation sequences and seeds",
    "val_sharp": "(c) sharp frames, light JPEG, no blur: a model must leave them alone",
    "val_other_clean": "(b) without its noise and compression: what is gained here is deblurring",
    "val_sharp_wide": "(c) five times over: 40 sharp clips from all five validation sequences",
}
# Tables of the general scripts (this one, ablation.py, fit_check.py): results, not run logs.
RESULTS = Path("docs/results")
REAL_BLUR = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real_blur" / "selfdeblur_real"
)


def truth_stats(sequences: list) -> tuple[float, float]:
    """Mean gradient magnitude and mean frame-to-frame change of the ground truth (8-bit Y)."""
    grads, changes = [], []
    for sequence in sequences:
        frames = [luma8(np.clip(np.rint(read_unit_rgb(p) * 255), 0, 255)) for p in sequence.sharp]
        grads += [gradient_magnitude(f) for f in frames]
        changes.append(mean_abs_change(frames))
    return float(np.mean(grads)), float(np.mean(changes))


def validation_table(
    data: Path, engines: dict[str, Deblurrer | None], sets: Iterable[str] = tuple(VAL_SETS)
) -> dict[str, dict]:
    """Per validation set and model: PSNR/SSIM on Y and RGB, sharpness and flicker."""
    table: dict[str, dict] = {}
    for name in sets:
        sequences = dvd_sequences(data / name, split="all")
        result = run_bench(sequences, engines)
        truth_grad, _ = truth_stats(sequences)
        rows = {}
        for model in engines:
            avg = result.average(model)
            rows[model] = {**avg, "sharpness_vs_truth": avg["sharpness"] / truth_grad}
        table[name] = rows
        print(f"{name}: done", file=sys.stderr, flush=True)
    return table


# Per-frame blur length (meta.json "blur_px", px in the 256x256 frame) buckets for blur_table.
BLUR_BUCKETS = ((0.0, 3.0), (3.0, 8.0), (8.0, 16.0), (16.0, 64.0))


def named_paths(pairs: tuple[str, ...]) -> dict[str, Path]:
    """``NAME=PATH`` options (``--model``, ``--reuse``) as a name -> path mapping."""
    return {name: Path(path) for name, path in (pair.split("=", 1) for pair in pairs)}


def last_commit(path: Path) -> str:
    """The commit that last changed ``path`` ("" when git has none)."""
    result = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", str(path)], capture_output=True, text=True
    )
    return result.stdout.strip()


def scored_in_results(weights: Path, results: Path = RESULTS / "VALIDATION.json") -> bool:
    """True when the committed ``results`` were computed with this very weight file: both are
    tracked and unmodified, and the file's last change comes no later than the results' last
    commit. Why: scoring the paper-size models again costs an hour of an AVX2 CPU in fp32."""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", str(weights), str(results)],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    weights_commit, results_commit = last_commit(weights), last_commit(results)
    if dirty or not weights_commit or not results_commit:
        return False
    ancestor = ["git", "merge-base", "--is-ancestor", weights_commit, results_commit]
    return subprocess.run(ancestor).returncode == 0


def reuse_rows(
    table: dict[str, dict], reused: dict[str, Path], data: Path, tolerance_db: float = 0.01
) -> None:
    """Add the rows of models scored before (``scored_in_results``) from VALIDATION.json, in
    place. The input rows must agree: data remade on another CPU may round a few pixels the
    other way (tests/test_synth_package.py), which moves the input PSNR by far less than
    ``tolerance_db``; another data set would move it by more. A set that VALIDATION.json does
    not hold yet (one added to ``VAL_SETS`` since) is scored here for the reused models, so a
    new set costs the paper-size models that set alone, not every set again."""
    if not reused:
        return
    old = json.loads((RESULTS / "VALIDATION.json").read_text())
    for set_name, rows in table.items():
        if set_name not in old:
            continue
        drift = abs(old[set_name]["input"]["psnr_y"] - rows["input"]["psnr_y"])
        if drift > tolerance_db:
            moved = f"{set_name}: the input PSNR moved {drift:.3f} dB"
            raise click.UsageError(f"{moved}: score every model again")
    for path in reused.values():
        if not scored_in_results(path):
            raise click.UsageError(f"{path} changed since {RESULTS / 'VALIDATION.json'}: score it")
    new_sets = [set_name for set_name in table if set_name not in old]
    scored = {}
    if new_sets:
        engines: dict[str, Deblurrer | None] = {
            name: Deblurrer(load_model(path)) for name, path in reused.items()
        }
        scored = validation_table(data, engines, new_sets)
    for set_name, rows in table.items():
        for name in reused:
            rows[name] = (scored if set_name in scored else old)[set_name][name]


def frame_gains(data: Path, engine: Deblurrer) -> list[tuple[float, float]]:
    """(blur length, PSNR gain on 8-bit Y) of every frame: where the model helps and where not."""
    gains = []
    for sequence in dvd_sequences(data, split="all"):
        meta = json.loads((sequence.blurry[0].parent.parent / "meta.json").read_text())
        blurry = [load_luma(p) for p in sequence.blurry]
        sharp = [np.rint(load_luma(p) * 255) for p in sequence.sharp]
        for k, restored in enumerate(restore_sequence(engine, blurry)):
            before = psnr(np.rint(blurry[k] * 255), sharp[k])
            after = psnr(np.clip(np.rint(restored * 255), 0, 255), sharp[k])
            gains.append((float(meta["blur_px"][k]), after - before))
    return gains


def blur_table(data: Path, engines: dict[str, Deblurrer]) -> str:
    """Markdown: mean Y PSNR gain per blur-length bucket, and the share of frames made worse."""
    head = " | ".join(f"blur {lo:g}-{hi:g} px" for lo, hi in BLUR_BUCKETS)
    lines = []
    for name in VAL_SETS:
        lines += [f"### {name}", "", f"| model | all | {head} | frames > 1 dB worse |"]
        lines += ["|---" * (len(BLUR_BUCKETS) + 3) + "|"]
        for model, engine in engines.items():
            blur, gain = np.array(frame_gains(data / name, engine)).T
            cells = [f"{gain[(blur >= lo) & (blur < hi)].mean():+.2f}" for lo, hi in BLUR_BUCKETS]
            counts = [int(((blur >= lo) & (blur < hi)).sum()) for lo, hi in BLUR_BUCKETS]
            worse = f"{np.mean(gain < -1.0):.1%}"
            lines.append(f"| {model} | {gain.mean():+.2f} | {' | '.join(cells)} | {worse} |")
        lines += [f"| frames | {len(blur)} | {' | '.join(map(str, counts))} | |", ""]
    return "\n".join(lines)


def markdown(table: dict[str, dict]) -> str:
    lines = ["# Validation (computed by training/report.py)", ""]
    for name, rows in table.items():
        lines += [f"## {name}: {VAL_SETS[name]}", ""]
        lines += [
            "| model | PSNR Y | SSIM Y | PSNR RGB | gain Y (dB) | sharpness / truth | flicker |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        base = rows["input"]["psnr_y"]
        for model, r in rows.items():
            lines.append(
                f"| {model} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {r['psnr_rgb']:.2f} | "
                f"{r['psnr_y'] - base:+.2f} | {r['sharpness_vs_truth']:.3f} | {r['flicker']:+.3f} |"
            )
        lines.append("")
    lines += [
        "PSNR/SSIM: mean over sequences of the per-frame scores (Y: BT.601 luma of the 8-bit RGB "
        "output). Sharpness: mean gradient magnitude of the output's Y divided by the ground "
        "truth's. Flicker: mean absolute frame-to-frame change of the output minus that of the "
        "ground truth (8-bit units); nearer 0 is more stable.",
        "",
    ]
    return "\n".join(lines)


def lineage_records(segments: list[str]) -> list[dict]:
    """Join the runs one set of weights went through into a single curve.

    Each segment is ``PATH[:OFFSET[:LAST]]``: the run's steps are shifted by OFFSET (the step its
    init weights had reached), and records after its own step LAST are dropped (later steps that
    the next run did not start from). A resumed run logs some steps twice; the later record wins.
    """
    joined: dict[tuple[int, bool], dict] = {}
    for segment in segments:
        path, *bounds = segment.split(":")
        offset = int(bounds[0]) if bounds else 0
        last = int(bounds[1]) if len(bounds) > 1 else None
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            if last is not None and record["step"] > last:
                continue
            step = record["step"] + offset
            joined[(step, "val_psnr" in record)] = {**record, "step": step}
    return [joined[key] for key in sorted(joined)]


def training_curve(records: list[dict], out: Path, marks: dict[int, str] | None = None) -> None:
    """Loss (left) and validation PSNR (right) against step; ``marks`` label recipe changes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    vals = [(r["step"], r["val_psnr"], r["input_psnr"]) for r in records if "val_psnr" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps, values = zip(*losses, strict=True)
    kernel = np.ones(min(10, len(values))) / min(10, len(values))
    left.plot(steps, values, alpha=0.3, label="loss")
    left.plot(steps[len(kernel) - 1 :], np.convolve(values, kernel, "valid"), label="smoothed")
    left.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    for axis in (left, right):
        for step, label in (marks or {}).items():
            axis.axvline(step, color="gray", linewidth=0.8, linestyle=":")
            axis.annotate(label, (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                          rotation=90, va="top", ha="right")  # fmt: skip
    left.legend()
    steps, psnr, base = zip(*vals, strict=True)
    right.plot(steps, psnr, marker="o", label="DBLRNet")
    right.plot(steps, base, linestyle="--", label="blurry input")
    right.set(xlabel="step", ylabel="PSNR (dB)", title="validation (the run's --val windows)")
    right.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def restore_sequence(engine: Deblurrer, planes: list[np.ndarray]) -> list[np.ndarray]:
    return [plane for _, plane in engine.stream(enumerate(planes))]


def crop(image: np.ndarray, size: int, centre: tuple[int, int] | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    cy, cx = centre or (h // 2, w // 2)
    top, left = max(0, min(cy - size // 2, h - size)), max(0, min(cx - size // 2, w - size))
    return image[top : top + size, left : left + size]


def panel(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Side-by-side 8-bit gray crops with a label strip on top of each."""
    tiles = []
    for image, label in zip(images, labels, strict=True):
        tile = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        strip = np.full((22, tile.shape[1]), 255, np.uint8)
        cv2.putText(strip, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
        tiles += [np.vstack([strip, tile]), np.full((tile.shape[0] + 22, 4), 255, np.uint8)]
    return np.hstack(tiles[:-1])


def before_after(engines: dict[str, Deblurrer], data: Path, out: Path) -> list[Path]:
    """Crops from a validation clip (with truth) and from the real blurry clip (without)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sequence = dvd_sequences(data / "val_other", split="all")[0]
    blurry = [load_luma(p) for p in sequence.blurry]
    index = len(blurry) // 2
    outputs = {name: restore_sequence(e, blurry)[index] for name, e in engines.items()}
    images = [blurry[index], *outputs.values(), load_luma(sequence.sharp[index])]
    labels = ["blurry input", *outputs, "ground truth"]
    path = out / "validation_psf.png"
    cv2.imwrite(str(path), panel([crop(i, 192) for i in images], labels))
    written.append(path)
    if REAL_BLUR.is_dir():
        frames = [load_luma(p) for p in sorted(REAL_BLUR.glob("*.png"))]
        index = len(frames) // 2
        outputs = {name: restore_sequence(e, frames)[index] for name, e in engines.items()}
        for where, centre in {"a": (160, 250), "b": (300, 520)}.items():
            images = [frames[index], *outputs.values()]
            path = out / f"real_blur_{where}.png"
            cv2.imwrite(
                str(path), panel([crop(i, 224, centre) for i in images], ["blurry", *outputs])
            )
            written.append(path)
    return written


@click.command()
@click.option("--model", "models", multiple=True, metavar="NAME=PATH")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data"))
@click.option(
    "--curve", "curve", multiple=True, metavar="PATH[:OFFSET[:LAST]]",
    help="metrics.jsonl of a run; repeat to join the runs the weights went through.",
)  # fmt: skip
@click.option("--mark", "marks", multiple=True, metavar="STEP:LABEL", help="Annotate the curve.")
@click.option(
    "--curve-out", type=click.Path(path_type=Path), default=RESULTS.parent / "training_curve.png",
    show_default=True, help="Where the curve goes.",
)  # fmt: skip
@click.option(
    "--reuse", "reused", multiple=True, metavar="NAME=PATH",
    help="Take NAME's rows from the committed VALIDATION.json, if PATH is unchanged since.",
)  # fmt: skip
@click.option("--skip-pictures", is_flag=True, help="Leave docs/before_after as it is.")
@click.option("--skip-table", is_flag=True)
@click.option("--skip-blur-table", is_flag=True, help="No table by blur length (slow).")
def main(
    models: tuple[str, ...], data: Path, curve: tuple[str, ...], marks: tuple[str, ...],
    curve_out: Path, reused: tuple[str, ...], skip_pictures: bool, skip_table: bool,
    skip_blur_table: bool,
) -> None:  # fmt: skip
    if not models and not curve:
        raise click.UsageError("give --model (table and pictures) or --curve (curve only)")
    if curve:
        labels = {int(m.split(":", 1)[0]): m.split(":", 1)[1] for m in marks}
        training_curve(lineage_records(list(curve)), curve_out, labels)
        print(f"wrote {curve_out}", file=sys.stderr)
    if not models:
        return
    engines = {name: Deblurrer(load_model(path)) for name, path in named_paths(models).items()}
    kept = named_paths(reused)
    if not skip_pictures:
        everyone = {**engines, **{name: Deblurrer(load_model(path)) for name, path in kept.items()}}
        for path in before_after(everyone, data, Path("docs/before_after")):
            print(f"wrote {path}", file=sys.stderr)
    if skip_table:
        return
    table = validation_table(data, {"input": None, **engines})
    reuse_rows(table, kept, data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "VALIDATION.json").write_text(json.dumps(table, indent=2) + "\n")
    text = markdown(table)
    if not skip_blur_table:
        by_blur = blur_table(data, engines)
        text += "\n## PSNR gain (Y, dB) by blur length of the frame\n\n" + by_blur
    (RESULTS / "VALIDATION.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
