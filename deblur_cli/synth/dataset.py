"""Datasets: one generator per clip, a process per clip, and the DVD / GoPro folder layouts.

Clip k depends only on (sources, seed, k, settings), never on how many clips are made, so a
dataset can be extended or regenerated exactly; clips are written atomically so that a killed
run leaves no half-written clip behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from deblur_cli.atomic import replaced_folder
from deblur_cli.scenes import scene_segments
from deblur_cli.synth.exposure import average_clip, shake_clip
from deblur_cli.synth.psf import psf_clip
from deblur_cli.synth.ranges import BlurRanges, SynthClip
from deblur_cli.synth.sources import _fits, expand_sources, load_source

PROCESSES = ("shake", "average", "psf", "mixed")


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """Generator for clip ``index``: independent of how many clips are made in total."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


@lru_cache(maxsize=64)
def _source_segments(path: Path) -> tuple[tuple[int, int], ...]:
    source = load_source(path)
    return tuple(scene_segments(source)) if source.ndim == 4 else ((0, 1),)


def _frames_window(
    rng: np.random.Generator,
    frames: np.ndarray,
    segments: Sequence[tuple[int, int]],
    count: int,
) -> np.ndarray:
    """``count`` consecutive frames inside one scene (fewer if no scene is that long)."""
    fitting = [s for s in segments if s[1] - s[0] >= count]
    if fitting:
        lengths = np.array([b - a - count + 1 for a, b in fitting], np.float64)
        start, end = fitting[int(rng.choice(len(fitting), p=lengths / lengths.sum()))]
    else:
        start, end = max(segments, key=lambda s: s[1] - s[0])
    first = int(rng.integers(start, max(start, end - count) + 1))
    return frames[first : min(end, first + count)]


def _odd_tau(rng: np.random.Generator, ranges: BlurRanges) -> int:
    choices = [t for t in range(ranges.average_tau[0], ranges.average_tau[1] + 1) if t % 2]
    return int(rng.choice(choices or [ranges.average_tau[0]]))


def _make_clip(
    rng: np.random.Generator,
    source: np.ndarray,
    segments: Sequence[tuple[int, int]],
    others: Sequence[np.ndarray],
    process: str,
    frames_per_clip: int,
    size: tuple[int, int],
    ranges: BlurRanges,
) -> SynthClip:
    is_video = source.ndim == 4
    if process == "mixed":
        longest = max(b - a for a, b in segments)
        # Averaging needs scenes of at least 3 frames per output frame to blur at all.
        can_average = is_video and longest >= 3 * frames_per_clip
        process = "average" if can_average and rng.random() < 0.25 else "shake"
    if process == "average":
        if not is_video:
            raise ValueError("frame averaging needs video sources")
        longest = max(b - a for a, b in segments)
        tau = min(_odd_tau(rng, ranges), max(1, longest // frames_per_clip))
        tau -= 1 - tau % 2  # odd, so the sharp reference is a real middle frame
        window = _frames_window(rng, source, segments, frames_per_clip * tau)
        return average_clip(window, tau, size, rng, ranges)
    image = _frames_window(rng, source, segments, frames_per_clip) if is_video else source
    if process == "psf":
        return psf_clip(image, frames_per_clip, size, rng, ranges)
    return shake_clip(image, frames_per_clip, size, rng, ranges, object_images=others)


def synthesize_dataset(
    sources: Sequence[Path],
    n_clips: int,
    frames_per_clip: int,
    size: tuple[int, int],
    seed: int,
    process: str = "shake",
    ranges: BlurRanges = BlurRanges(),
    indices: Iterable[int] | None = None,
) -> Iterator[SynthClip]:
    """Yield ``n_clips`` synthetic clips; clip k depends only on (sources, seed, k, settings).

    ``indices`` picks which of the ``n_clips`` to make (default: all, in order): since a clip
    depends only on its index, processes that each make a share of the indices together make
    exactly the clips that one process would.

    Sources may be image files, video files, folders of frames, or folders of these. Sources
    too small for ``size`` (needing more than 1.5x upscaling) are skipped. Video sources are
    drawn three times as often as stills because they hold more and moving content.
    """
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES}, not {process!r}")
    paths = expand_sources(sources)
    usable = [p for p in paths if _fits(load_source(p).shape[-3:-1], size)]
    if process == "average":
        usable = [p for p in usable if load_source(p).ndim == 4]
    if not usable:
        raise ValueError(f"no usable source for size {size} and process {process!r}")
    weights = np.array([3.0 if load_source(p).ndim == 4 else 1.0 for p in usable])
    weights /= weights.sum()
    for index in range(n_clips) if indices is None else indices:
        if not 0 <= index < n_clips:
            raise IndexError(f"clip {index} outside a set of {n_clips}")
        rng = clip_rng(seed, index)
        pick = int(rng.choice(len(usable), p=weights))
        source = load_source(usable[pick])
        other_ids = [i for i in range(len(usable)) if i != pick] or [pick]
        chosen = rng.choice(other_ids, size=min(3, len(other_ids)), replace=False)
        others = [load_source(usable[int(i)]) for i in chosen]
        segments = _source_segments(usable[pick])
        clip = _make_clip(rng, source, segments, others, process, frames_per_clip, size, ranges)
        clip.name = f"{index:05d}_{clip.name}_{usable[pick].stem}"
        clip.meta.update(source=str(usable[pick]), seed=seed, index=index)
        yield clip


def _write_images(frames: np.ndarray, folder: Path, pattern: str, image_ext: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        path = folder / (pattern % i + image_ext)
        if not cv2.imwrite(str(path), np.ascontiguousarray(frame[..., ::-1])):
            raise OSError(f"cannot write {path}")


LAYOUTS = {
    # layout: (blurry folder, sharp folder, file name pattern)
    "dvd": ("input", "GT", "%05d"),
    "gopro": ("blur", "sharp", "%06d"),
}


def _clip_parent(out_dir: Path, layout: str, split: str) -> Path:
    return out_dir / ("quantitative_datasets" if layout == "dvd" else split)


def write_dataset(
    clips: Iterable[SynthClip],
    out_dir: Path,
    layout: str = "dvd",
    image_ext: str = ".png",
    split: str = "train",
) -> int:
    """Write clips in the DVD or GoPro layout; returns how many clips were written.

    DVD: ``out/quantitative_datasets/<clip>/{input,GT}/%05d.png``; GoPro:
    ``out/<split>/<clip>/{blur,sharp}/%06d.png``. Each clip also gets ``meta.json`` (its random
    parameters). A clip is written under ``out/.partial`` and renamed into place, so readers see
    a clip folder complete or not at all, even if the process is killed.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(LAYOUTS)}, not {layout!r}")
    blur_name, sharp_name, pattern = LAYOUTS[layout]
    out_dir = Path(out_dir)
    parent = _clip_parent(out_dir, layout, split)
    parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir / ".partial"
    count = 0
    for clip in clips:
        final = parent / clip.name
        with replaced_folder(final, staging=partial) as tmp:
            _write_images(clip.blurry, tmp / blur_name, pattern, image_ext)
            _write_images(clip.sharp, tmp / sharp_name, pattern, image_ext)
            (tmp / "meta.json").write_text(json.dumps(clip.meta, indent=1, default=_jsonable))
        count += 1
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    return count


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
