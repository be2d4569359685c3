"""Make the synthetic training and validation sets used for the shipped weights.

Run from the repository root: ``python training/make_data.py data``. Outputs (not committed):
  data/train       DVD layout, camera shake (+ moving objects) and frame averaging, train sources
  data/val_other   PSF-convolution blur (a process never used in training), val sources
  data/val_own     camera shake like training, but val sources and seeds
  data/train_leaves  camera shake over procedural dead-leaves pictures (data/dead_leaves)
  data/train_clean   data/train without noise and compression (same seed: the same blur and
                     sharp frames), for the curriculum of session 4
  data/val_other_clean  data/val_other without noise and compression: deblurring alone
Sources for training and validation are disjoint (deblur_cli.synth.bundled_sources).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from deblur_cli.synth import (
    BlurRanges,
    bundled_sources,
    synthesize_dataset,
    write_dataset,
    write_dead_leaves,
)

SIZE = (256, 256)
# Large blur matters: at 256 px the 720p range (0..40 px) would cap at 14 px, so raise the floor.
# H.264 in the mix as when the shipped weights were trained (it is off in BlurRanges' defaults
# because it is not bit-reproducible on a busy machine).
RANGES = BlurRanges(blur_px_floor=32.0, codec_probs=(0.2, 0.5, 0.3))
# Noise and compression are drawn after the blur, so the same seed gives the same clips, clean.
CLEAN = replace(RANGES, noise_free_prob=1.0, codec_probs=(1.0, 0.0, 0.0))
SETS = {
    # name: (split, process, clips, frames, seed, ranges)
    "train": ("train", "mixed", 400, 10, 1, RANGES),
    "val_other": ("val", "psf", 24, 7, 2000, RANGES),
    "val_own": ("val", "shake", 24, 7, 3000, RANGES),
    "train_leaves": ("dead_leaves", "mixed", 400, 10, 4000, RANGES),
    "train_clean": ("train", "mixed", 400, 10, 1, CLEAN),
    "val_other_clean": ("val", "psf", 24, 7, 2000, CLEAN),
}
DEAD_LEAVES = 40  # pictures, 768x768, seed 0


def main(root: Path) -> None:
    for name, (split, process, clips, frames, seed, ranges) in SETS.items():
        out = root / name
        if out.exists():
            print(f"{out} exists; skipping")
            continue
        if split == "dead_leaves":
            sources = write_dead_leaves(root / "dead_leaves", DEAD_LEAVES, seed=0)
        else:
            sources = bundled_sources(split)
        made = synthesize_dataset(sources, clips, frames, SIZE, seed, process, ranges)
        count = write_dataset(made, out, layout="dvd")
        print(f"{out}: {count} clips of {frames} frames ({process}, {split} sources)", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
