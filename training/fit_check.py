"""Does a model fit its own training blur, and which degradation does its gain come from? (issue 4)

Whole clips of the training set (an even sample) and of the validation sets are restored with
each weights file; the mean Y PSNR gain is reported per set, and split by the degradations each
clip records in meta.json: compression, sensor noise and mean blur length. val_other_clean is
val_other without noise or compression, so what gain is left there is deblurring alone.
A model that gains little even on its training set underfits (compute, capacity), which is
more than a transfer problem; a gain that comes from noisy, compressed or nearly sharp clips is
denoising, not deblurring.

With ``--fusion`` it asks instead whether a model uses its neighbour frames well on blur it has
not seen: per validation set, the gain with the real 5-frame windows (what ``deblur video``
does), the gain when every window holds five copies of its centre frame (no temporal
information), the worst frame, and the share of frames made more than 1 dB worse. If the
copies beat the real windows, the network fuses neighbours in a way that does not transfer.

Run from the repository root after training/make_data.py; the tables of the shipped files are
in docs/results/FIT.md and docs/results/FUSION.md:

    python training/fit_check.py weights/dblrnet-fast.safetensors [more weights...]
    python training/fit_check.py --fusion weights/dblrnet-fast.safetensors [more weights...]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from deblur_cli.datasets import Sequence, dvd_sequences, load_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.metrics import psnr
from deblur_cli.weights import load_model

SETS = {"train": 40, "val_own": 24, "val_other": 24, "val_other_clean": 24}  # set: clips scored
BLUR_BINS = ((0, 2), (2, 6), (6, 12), (12, 1000))  # mean blur px at 256x256
FUSION_SETS = ("val_other", "val_own")


def unit_psnr(image: np.ndarray, truth: np.ndarray) -> float:
    """PSNR of [0, 1] planes as the 8-bit frames a user would get."""
    return psnr(np.clip(np.rint(image * 255), 0, 255), np.rint(truth * 255))


def clip_meta(sequence: Sequence) -> dict:
    path = Path(sequence.blurry[0]).parents[1] / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


def clip_gain(engine: Deblurrer, sequence: Sequence) -> tuple[float, float]:
    """(input PSNR, gain) averaged over the frames of one clip."""
    blurry = [load_luma(p) for p in sequence.blurry]
    sharp = [load_luma(p) for p in sequence.sharp or []]
    restored = [plane for _, plane in engine.stream(enumerate(blurry))]
    before = np.mean([unit_psnr(b, t) for b, t in zip(blurry, sharp, strict=True)])
    after = np.mean([unit_psnr(r, t) for r, t in zip(restored, sharp, strict=True)])
    return float(before), float(after - before)


def groups(meta: dict) -> list[str]:
    """The table rows a clip counts in."""
    blur = float(np.mean(meta.get("blur_px", [0.0])))
    low, high = next(b for b in BLUR_BINS if b[0] <= blur < b[1])
    noisy = meta.get("shot_noise", 0.0) > 0 or meta.get("read_noise", 0.0) > 0
    return [
        "all",
        f"codec {meta.get('codec', '?')}",
        "noisy" if noisy else "noise-free",
        f"blur {low}-{high} px" if high < 1000 else f"blur >= {low} px",
    ]


def row_order(group: str) -> tuple[int, float, str]:
    """'all' first, then codecs, noise, and blur bins by length."""
    kind = ("all", "codec", "noisy", "noise-free", "blur").index(group.split()[0])
    numbers = [float(w) for w in group.replace("-", " ").split() if w.isdigit()]
    return kind, (numbers or [0.0])[0], group


def frame_scores(engine: Deblurrer, data: Path) -> np.ndarray:
    """Rows of (input, real windows, centre copies) PSNR, one per frame of every clip."""
    rows = []
    for sequence in dvd_sequences(data, split="all"):
        blurry = [load_luma(p) for p in sequence.blurry]
        sharp = [load_luma(p) for p in sequence.sharp or []]
        restored = [plane for _, plane in engine.stream(enumerate(blurry))]
        copies = engine.run_windows(np.stack([np.stack([b] * engine.window) for b in blurry]))
        for k, truth in enumerate(sharp):
            rows.append([unit_psnr(x, truth) for x in (blurry[k], restored[k], copies[k])])
    return np.array(rows)


def fusion_table(weights: tuple[str, ...], root: Path) -> None:
    """The neighbour-fusion table (docs/results/FUSION.md), one row per weights file and set."""
    columns = ("weights", "set", "gain, real windows", "gain, centre copies", "worst frame")
    print(f"| {' | '.join(columns)} | frames > 1 dB worse |")
    print("|---|---|---|---|---|---|")
    for path in weights:
        engine = Deblurrer(load_model(path))
        for name in FUSION_SETS:
            scores = frame_scores(engine, root / name)
            real, copies = scores[:, 1] - scores[:, 0], scores[:, 2] - scores[:, 0]
            print(
                f"| {Path(path).name} | {name} | {real.mean():+.3f} | {copies.mean():+.3f} | "
                f"{real.min():+.2f} | {np.mean(real < -1):.1%} |",
                flush=True,
            )


def fit_table(weights: tuple[str, ...], root: Path) -> None:
    """The fit table (docs/results/FIT.md): gain per set, split by degradation."""
    print("| weights | set | clips | input PSNR | gain (dB) |")
    print("|---|---|---|---|---|")
    for path in weights:
        engine = Deblurrer(load_model(path))
        for name, count in SETS.items():
            sequences = dvd_sequences(root / name, split="all")
            picks = np.linspace(0, len(sequences) - 1, num=min(count, len(sequences))).round()
            rows: dict[str, list[tuple[float, float]]] = {}
            for index in picks.astype(int):
                score = clip_gain(engine, sequences[index])
                for group in groups(clip_meta(sequences[index])):
                    rows.setdefault(group, []).append(score)
            for group, scores in sorted(rows.items(), key=lambda kv: row_order(kv[0])):
                before, gain = np.mean(scores, axis=0)
                label = f"{name}, {group}"
                print(
                    f"| {Path(path).name} | {label} | {len(scores)} | {before:.2f} | {gain:+.2f} |",
                    flush=True,
                )


@click.command()
@click.argument("weights", nargs=-1, required=True)
@click.option("--data", "root", type=click.Path(path_type=Path), default=Path("data"))
@click.option("--fusion", is_flag=True, help="Real windows vs centre copies instead.")
def main(weights: tuple[str, ...], root: Path, fusion: bool) -> None:
    (fusion_table if fusion else fit_table)(weights, root)


if __name__ == "__main__":
    main()
