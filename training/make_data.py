"""Make the training and validation sets of the learning-efficiency harness and the long runs.

Run from the repository root: ``python training/make_data.py data [--only NAME ...]``.
Outputs (DVD layout, never committed):
  data/train_moderate  camera shake + moving objects + frame averaging over real footage
                       (corpus training sequences); blur 0..14 px at 256 px (the 720p range
                       scaled, no floor), a quarter of the clips nearly static
  data/train_sharp     sharp and nearly sharp clips (< 1 px blur), light noise and JPEG: what
                       the network must leave alone (added to training after the harness)
  data/train_clean     sharp clips (short exposures: motion between frames, < 0.4 px blur),
                       light JPEG, light noise in 30%: to be left alone (session 7)
  data/train_photos    as train_moderate, with photographs from Debian's wallpaper packages
                       beside the corpus footage (session 11's content arm; ``--only``)
  data/train_static    train_clean's static clips alone (session 15's arm; ``--only``)
  data/train_broad     the same content with the session 1-5 recipe's blur (floor 32 px: up to
                       32 px at 256 px, about 90 px at 720p)
  data/val_own         (a) camera shake like train_moderate, corpus validation sequences
  data/val_other       (b) PSF-convolution blur, a process no arm trains on, validation sequences
  data/val_other_clean (b) without its noise and JPEG: the gain there is deblurring alone
  data/val_sharp       (c) sharp validation frames, light JPEG (q 85-95), no blur, no noise
  data/val_sharp_wide  (c) five times over, other seeds and all five validation sequences

Content is ``../shared/data/corpus`` (research-use footage: read in place, never copied into the
repository), split by whole sequence: VALIDATION_SEQUENCES never appear in training. The corpus
README asks for a 0.5-0.75 downscale of its 480p JPEG clips, so that their block artefacts and
slight motion blur fall below a pixel: that is ``source_scale``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2

from deblur_cli.synth import BlurRanges, SynthClip, synthesize_dataset, write_dataset

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"
# Five of the 21 sequences, chosen to span the kinds of content: animals, sport, a road scene.
VALIDATION_SEQUENCES = (
    "davis2016-eorvos__blackswan",
    "davis2016-eorvos__breakdance",
    "davis2016-eorvos__kite-surf",
    "davis2017-siammask__tennis_b",
    "groundedsam2__car",
)
# The photographs among Debian's wallpapers (the rest is artwork: flat colour, gradients). They
# are a content arm: real, sharp still scenes beside the corpus's video (issue 14).
MATE_PHOTOS = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
               "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")  # fmt: skip
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")  # fmt: skip
WALLPAPER_PHOTOS = {  # package: {photograph: its path in the package}
    "mate-backgrounds": {n: f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in MATE_PHOTOS},
    "plasma-workspace-wallpapers": {
        n: f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in PLASMA_PHOTOS
    },
}
# Long side the photographs are stored at: with the corpus's 0.5-0.75 rescale, a 256-pixel
# crop then spans a third to a half of the picture, as it does of the corpus's 480p frames.
PHOTO_SIDE = 960
SIZE = (256, 256)
CONTENT = dict(source_scale=(0.5, 0.75))
MODERATE = BlurRanges(blur_px_floor=0.0, static_clip_prob=0.25, **CONTENT)
BROAD = BlurRanges(blur_px_floor=32.0, **CONTENT)
# PSF lengths use the same 720p range as the camera paths: a different process, not a larger blur.
VAL_OTHER = replace(MODERATE, static_clip_prob=0.0, psf_blur_px_720=(4.0, 40.0))
# The same clips without sensor noise or compression (noise and codec are drawn after the blur):
# what a model gains here is deblurring alone, not clean-up (session 8).
VAL_OTHER_CLEAN = replace(VAL_OTHER, noise_free_prob=1.0, codec_probs=(1.0, 0.0, 0.0))
SHARP = replace(
    BlurRanges.static_clean(), codec_probs=(0.0, 1.0, 0.0), jpeg_quality=(85, 95), **CONTENT
)
# Sharp and nearly sharp clips (under a pixel of blur) with light noise and compression: the
# network must see in training that such frames are to be left alone. Training sequences only.
NEARLY_SHARP = replace(
    BlurRanges.static_clean(),
    blur_px_720=(0.0, 3.0),
    gain=(0.7, 1.4),
    noise_free_prob=0.6,
    shot_noise=(1e-5, 3e-4),
    read_noise=(1e-4, 1e-3),
    codec_probs=(0.4, 0.6, 0.0),
    jpeg_quality=(70, 95),
    **CONTENT,
)
# Sharp clips (under 0.4 px of blur at 256 px) with light compression and, now and then, light
# noise: windows whose right answer is "leave it alone" (after denoising), in every batch. Most
# clips move as hand-held footage with a short exposure does (a 1-5% duty cycle: frame-to-frame
# motion, hardly any blur), so that staticness is no shortcut; 30% are static. Session 7 added
# them while chasing the over-sharpening of sharp frames, whose cause turned out to be the
# synthesis itself (bilinear sub-exposures, EXPERIMENTS.md row 42). Training sequences only.
CLEAN = replace(
    BlurRanges.static_clean(),
    blur_px_720=(0.0, 1.5),
    duty_cycle=(0.01, 0.05),
    static_clip_prob=0.3,
    noise_free_prob=0.7,
    shot_noise=(1e-5, 3e-4),
    read_noise=(1e-4, 1e-3),
    codec_probs=(0.3, 0.7, 0.0),
    jpeg_quality=(75, 98),
    **CONTENT,
)
# CLEAN's static clips alone: what sharp input (c) is (a static sharp scene, light JPEG), from the
# training sequences. Session 15's arm: a small share of these against the clean clips' 27%.
STATIC = replace(CLEAN, static_clip_prob=1.0)
# MODERATE's scenes and degradations with a third of its blur lengths (0-13 px at 720p, under
# 5 px at 256): the easy first phase of the curriculum arm (session 21, `--easy-data`).
NARROW = replace(MODERATE, blur_px_720=(0.0, 13.0), object_blur_px_720=(0.0, 13.0))
ASKED_ONLY = ("train_photos", "train_static", "train_narrow")
SETS = {
    # name: (split, process, clips, frames, seed, ranges)
    "train_moderate": ("train", "mixed", 300, 10, 1, MODERATE),
    "train_photos": ("train", "mixed", 300, 10, 1, MODERATE),
    "train_broad": ("train", "mixed", 300, 10, 1, BROAD),
    "train_narrow": ("train", "mixed", 300, 10, 1, NARROW),
    "train_sharp": ("train", "shake", 100, 10, 7, NEARLY_SHARP),
    "train_clean": ("train", "shake", 150, 10, 11, CLEAN),
    "train_static": ("train", "shake", 50, 10, 17, STATIC),
    "val_own": ("val", "shake", 16, 7, 3000, replace(MODERATE, static_clip_prob=0.0)),
    "val_other": ("val", "psf", 16, 7, 2000, VAL_OTHER),
    "val_other_clean": ("val", "psf", 16, 7, 2000, VAL_OTHER_CLEAN),
    "val_sharp": ("val", "shake", 8, 7, 5000, SHARP),
    # (c) five times over, other seeds: in (c) two clips of one static highway camera decide
    # between files whose other six clips agree within 0.1 dB (EXPERIMENTS.md rows 112-113).
    "val_sharp_wide": ("val", "shake", 40, 7, 5001, SHARP),
}


def corpus_sequences(split: str, corpus: Path = CORPUS) -> list[Path]:
    """The corpus folders of one split ("train" or "val"), whole sequences only."""
    folders = sorted(p for p in corpus.iterdir() if p.is_dir())
    chosen = [p for p in folders if (p.name in VALIDATION_SEQUENCES) == (split == "val")]
    if not chosen:
        raise SystemExit(f"no corpus sequences for {split!r} under {corpus}")
    return chosen


def fetch_photos(out: Path) -> Path:
    """WALLPAPER_PHOTOS as PNGs in ``out``, PHOTO_SIDE pixels on the long side.

    The packages come from Debian's archive (``apt-get download``: no root needed) and are
    unpacked in a temporary folder; only the chosen pictures are kept. Done once per folder.
    """
    if out.is_dir() and len(list(out.glob("*.png"))) == sum(map(len, WALLPAPER_PHOTOS.values())):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *WALLPAPER_PHOTOS], cwd=tmp, check=True)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], check=True)
        for name, member in (p for photos in WALLPAPER_PHOTOS.values() for p in photos.items()):
            image = cv2.imread(f"{tmp}/root/{member}")
            scale = PHOTO_SIDE / max(image.shape[:2])
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / f"{name}.png"), image)
    return out


def make_clip(
    name: str, index: int, corpus: Path = CORPUS, photos: Path | None = None
) -> SynthClip:
    """Clip ``index`` of set ``name``: the same clip whichever process makes it."""
    split, process, clips, frames, seed, ranges = SETS[name]
    sources = corpus_sequences(split, corpus)
    if name == "train_photos":
        sources += sorted(photos.glob("*.png"))
    return next(
        synthesize_dataset(sources, clips, frames, SIZE, seed, process, ranges, indices=[index])
    )


def make_clips(
    name: str, jobs: int, corpus: Path = CORPUS, photos: Path | None = None
) -> Iterator[SynthClip]:
    """Every clip of set ``name`` in order, made by ``jobs`` processes (the GPU burst uses 15)."""
    count = SETS[name][2]
    if jobs <= 1:
        yield from (make_clip(name, index, corpus, photos) for index in range(count))
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(
            make_clip, [name] * count, range(count), [corpus] * count, [photos] * count
        )


def main(root: Path, only: list[str], jobs: int = 1, corpus: Path = CORPUS) -> None:
    for name, (split, process, _, frames, _, _) in SETS.items():
        out = root / name
        # The arms' extra sets (the photo arm's downloads packages): made only when asked for.
        if (only and name not in only) or (not only and name in ASKED_ONLY) or out.exists():
            continue
        photos = fetch_photos(root / "photos") if name == "train_photos" else None
        count = write_dataset(make_clips(name, jobs, corpus, photos), out, layout="dvd")
        print(f"{out}: {count} clips of {frames} frames ({process}, {split} sources)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("data"))
    parser.add_argument("--only", nargs="*", default=[], choices=list(SETS))
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes (the clips are the same for any number)"
    )
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="the sharp footage (default ../shared/...)"
    )
    args = parser.parse_args()
    main(args.root, args.only, args.jobs, args.corpus)
