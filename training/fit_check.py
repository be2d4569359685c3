"""Does a model fit its own training blur, and which degradation does its gain come from? (issue 4)

Whole clips of the training set (an even sample) and of the validation sets are restored with
each weights file; the mean Y PSNR gain is reported per set, and split by the degradations each
clip records in meta.json: compression, sensor noise and mean blur length. val_other_clean is
val_other without noise or compression, so what gain is left there is deblurring alone.
A model that gains little even on its training set underfits (compute, capacity), which is
more than a transfer problem; a gain that comes from noisy, compressed or nearly sharp clips is
denoising, not deblurring. Run from the repository root after training/make_data.py:

    python training/fit_check.py weights/dblrnet-fast.safetensors [more weights...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from fusion_check import unit_psnr

from deblur_cli.datasets import Sequence, dvd_sequences, load_luma
from deblur_cli.engine import Deblurrer
from deblur_cli.weights import load_model

SETS = {"train": 40, "val_own": 24, "val_other": 24, "val_other_clean": 24}  # set: clips scored
BLUR_BINS = ((0, 2), (2, 6), (6, 12), (12, 1000))  # mean blur px at 256x256


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


def main(weights: list[str], root: Path = Path("data")) -> None:
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


if __name__ == "__main__":
    main(sys.argv[1:])
