"""Dataset readers: blurry/sharp video sequences on disk -> windows of luma planes.

Four published layouts are understood (see :func:`find_sequences`), each turned into a list of
:class:`Sequence` (one video: its blurry frames and, when known, the sharp ones). Training and
benchmarking both start from that list, so a new layout only needs a new reader.

Every frame is read as BT.601 full-range luma (the JPEG convention) in [0, 1], the plane the
network sees at inference (see ``color.py``); colour is only needed by the benchmark, which reads
it itself.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from deblur_cli import frames
from deblur_cli.color import rgb_to_luma
from deblur_cli.engine import window_indices
from deblur_cli.errors import DatasetError, InvalidMediaError
from deblur_cli.frames import natural_key

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}

LAYOUTS = ("dvd", "gopro", "kitti", "folder")

# Su et al.'s test videos (the DVD paper's Table 1 and DBLRNet's Table III use these ten).
DVD_TEST_VIDEOS = (
    "IMG_0030",
    "IMG_0049",
    "IMG_0021",
    "720p_240fps_2",
    "IMG_0032",
    "IMG_0033",
    "IMG_0031",
    "IMG_0003",
    "IMG_0039",
    "IMG_0037",
)

EXPECTED_LAYOUT = {
    "dvd": "ROOT/quantitative_datasets/<video>/{input,GT}/*.jpg",
    "gopro": "ROOT/{train,test}/<sequence>/{blur,blur_gamma,sharp}/*.png",
    "kitti": "ROOT/'blur image'/{image_2,image_3}/%06d_{09,10,11}.png and "
    "ROOT/'clean image'/{image_2,image_3}/...",
    "folder": "ROOT/<sequence>/{blur|blurry|input}/ and ROOT/<sequence>/{sharp|gt|GT}/ "
    "(or ROOT/blur + ROOT/sharp for a single sequence)",
}

PUBLISHED_AT = {
    "dvd": "the DeepVideoDeblurring dataset of Su et al., CVPR 2017 "
    "(http://www.cs.ubc.ca/labs/imager/tr/2017/DeepVideoDeblurring/)",
    "gopro": "the GoPro dataset of Nah et al., CVPR 2017 (https://seungjunnah.github.io/Datasets/gopro)",
    "kitti": "Blurred KITTI of Pan et al., CVPR 2017, 'Simultaneous Stereo Video Deblurring and "
    "Scene Flow Estimation' (arXiv:1704.03273; ask the authors for the data)",
    "folder": "your own paired folders (e.g. written by `deblur synth`)",
}

BLURRY_DIR_NAMES = ("blur", "blurry", "input")
SHARP_DIR_NAMES = ("sharp", "gt", "GT")


@dataclass(frozen=True)
class Sequence:
    """One video: consecutive blurry frames, and the sharp frames when ground truth exists."""

    name: str
    blurry: list[Path]
    sharp: list[Path] | None = None

    def __post_init__(self) -> None:
        if not self.blurry:
            raise DatasetError(f"sequence {self.name} has no frames")
        if self.sharp is not None and len(self.sharp) != len(self.blurry):
            raise DatasetError(
                f"sequence {self.name}: {len(self.blurry)} blurry "
                f"but {len(self.sharp)} sharp frames"
            )

    def __len__(self) -> int:
        return len(self.blurry)


# --------------------------------------------------------------------------------------------
# Frames


def read_image(path: Path) -> np.ndarray:
    """An image file as stored: H x W (gray) or H x W x 3 RGB, uint8 or uint16, alpha dropped."""
    try:
        image = frames.read_image(Path(path))
    except InvalidMediaError as exc:
        raise DatasetError(str(exc)) from exc
    if image.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: unsupported sample type {image.dtype} (want 8 or 16 bit)")
    return image[..., :3] if image.ndim == 3 else image


def code_max(dtype: np.dtype) -> float:
    """Largest code value of an unsigned image type (255 or 65535)."""
    return float(np.iinfo(dtype).max)


def image_to_luma(image: np.ndarray) -> np.ndarray:
    """Stored gray/RGB codes -> float32 H x W BT.601 full-range luma in [0, 1]."""
    unit = image.astype(np.float32) / code_max(image.dtype)
    return unit if unit.ndim == 2 else rgb_to_luma(unit)


def load_luma(path: Path) -> np.ndarray:
    """Float32 H x W luma in [0, 1] of an image file (gray images are their own luma)."""
    return image_to_luma(read_image(Path(path)))


def load_luma_codes(path: Path) -> np.ndarray:
    """Luma quantised to the file's own bit depth (uint8 or uint16).

    This is what :class:`WindowDataset` keeps in memory: a quarter (or half) of float32, and the
    rounding error (at most half a code) is below what JPEG storage already costs. Cached and
    uncached datasets both go through it, so they give identical samples.
    """
    image = read_image(Path(path))
    if image.ndim == 2:
        return image
    peak = code_max(image.dtype)
    luma = np.rint(image_to_luma(image) * peak)
    return np.clip(luma, 0, peak).astype(image.dtype)


def codes_to_unit(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) / code_max(codes.dtype)


# --------------------------------------------------------------------------------------------
# Listing


def list_images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))


def pair_frames(name: str, blurry: list[Path], sharp: list[Path]) -> Sequence:
    """Pair blurry and sharp frames by file stem, else (same count) by sorted order."""
    sharp_by_stem = {p.stem: p for p in sharp}
    if len(sharp_by_stem) == len(sharp) and all(p.stem in sharp_by_stem for p in blurry):
        return Sequence(name, blurry, [sharp_by_stem[p.stem] for p in blurry])
    if len(blurry) == len(sharp):
        return Sequence(name, blurry, sharp)
    raise DatasetError(
        f"sequence {name}: {len(blurry)} blurry and {len(sharp)} sharp frames do not pair up"
    )


def first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return None


def dataset_error(layout: str, root: Path, problem: str) -> DatasetError:
    """One line: what is wrong, the expected layout, and where the dataset comes from."""
    return DatasetError(
        f"{root}: {problem}; expected {EXPECTED_LAYOUT[layout]}; this is {PUBLISHED_AT[layout]}"
    )


def require_dir(layout: str, root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise dataset_error(layout, root, "no such folder")
    return root


# --------------------------------------------------------------------------------------------
# Readers


def dvd_sequences(root: Path, split: str = "test") -> list[Sequence]:
    """Su et al.'s DeepVideoDeblurring layout, ``root/quantitative_datasets/<video>/{input,GT}``.

    ``split``: "test" is Su et al.'s 10 test videos, "train" the others, "all" every video.
    Folders of our own in this layout (e.g. from ``deblur synth --layout dvd``) contain none of
    the 10 test names; there every split means every video found. ``root`` may also be the
    ``quantitative_datasets`` folder itself.
    """
    root = require_dir("dvd", root)
    base = root / "quantitative_datasets"
    if not base.is_dir():
        base = root
    if split not in ("test", "train", "all"):
        raise ValueError(f"split must be test, train or all, got {split!r}")
    videos = [d for d in subdirs(base) if (d / "input").is_dir() and (d / "GT").is_dir()]
    if not videos:
        raise dataset_error("dvd", root, "no <video>/input + <video>/GT folders")
    names = {d.name for d in videos}
    if split != "all" and names & set(DVD_TEST_VIDEOS):
        test = split == "test"
        videos = [d for d in videos if (d.name in DVD_TEST_VIDEOS) == test]
    return [pair_frames(d.name, list_images(d / "input"), list_images(d / "GT")) for d in videos]


def gopro_sequences(root: Path, split: str = "test", gamma: bool = False) -> list[Sequence]:
    """Nah et al.'s GoPro layout, ``root/{train,test}/<seq>/{blur|blur_gamma,sharp}/*.png``.

    ``gamma`` picks ``blur_gamma`` (frames averaged in gamma space) over ``blur`` (linear).
    """
    root = require_dir("gopro", root)
    splits = ("train", "test") if split == "all" else (split,)
    blur_dir = "blur_gamma" if gamma else "blur"
    sequences = []
    for part in splits:
        if not (root / part).is_dir():
            raise dataset_error("gopro", root, f"no '{part}' folder")
        for seq in subdirs(root / part):
            if (seq / blur_dir).is_dir() and (seq / "sharp").is_dir():
                name = f"{part}/{seq.name}" if split == "all" else seq.name
                sequences.append(
                    pair_frames(name, list_images(seq / blur_dir), list_images(seq / "sharp"))
                )
    if not sequences:
        raise dataset_error("gopro", root, f"no <sequence>/{blur_dir} + <sequence>/sharp folders")
    return sequences


KITTI_NAME = re.compile(r"^(\d{6})_(\d{2})$")


def kitti_sequences(root: Path) -> list[Sequence]:
    """Pan et al.'s Blurred KITTI: one 3-frame Sequence per (camera, scene), e.g. "image_2/000001".

    Files are ``root/blur image/image_2/000001_09.png`` ... ``_11.png`` with the same names under
    ``root/clean image``; image_2 is the left camera, image_3 the right one.
    """
    root = require_dir("kitti", root)
    blur_root, clean_root = root / "blur image", root / "clean image"
    if not blur_root.is_dir() or not clean_root.is_dir():
        raise dataset_error("kitti", root, "no 'blur image' and 'clean image' folders")
    sequences = []
    for camera in ("image_2", "image_3"):
        if not (blur_root / camera).is_dir():
            continue
        scenes: dict[str, list[Path]] = {}
        for path in list_images(blur_root / camera):
            match = KITTI_NAME.match(path.stem)
            if match:
                scenes.setdefault(match.group(1), []).append(path)
        for scene, blurry in sorted(scenes.items()):
            sharp = [clean_root / camera / p.name for p in blurry]
            missing = [p for p in sharp if not p.is_file()]
            if missing:
                raise dataset_error("kitti", root, f"no clean frame {missing[0].name} ({camera})")
            sequences.append(Sequence(f"{camera}/{scene}", blurry, sharp))
    if not sequences:
        raise dataset_error("kitti", root, "no %06d_NN.png frames in image_2 or image_3")
    return sequences


def folder_sequence(folder: Path, name: str) -> Sequence | None:
    """A folder holding a blurry subfolder (and maybe a sharp one), or None."""
    blurry = first_existing(folder, BLURRY_DIR_NAMES)
    if blurry is None:
        return None
    sharp = first_existing(folder, SHARP_DIR_NAMES)
    frames = list_images(blurry)
    if not frames:
        return None
    if sharp is None:
        return Sequence(name, frames, None)
    return pair_frames(name, frames, list_images(sharp))


def folder_sequences(root: Path) -> list[Sequence]:
    """Generic pairs: ``root/<seq>/{blur|blurry|input}`` with ``{sharp|gt|GT}``, or ``root/blur``
    with ``root/sharp`` as one sequence. A sequence without a sharp folder has ``sharp=None``."""
    root = require_dir("folder", root)
    single = folder_sequence(root, root.name)
    if single is not None:
        return [single]
    sequences = [s for d in subdirs(root) if (s := folder_sequence(d, d.name)) is not None]
    if not sequences:
        raise dataset_error("folder", root, "no blurry/sharp folder pairs")
    return sequences


def find_sequences(layout: str, root: Path, split: str = "test") -> list[Sequence]:
    """Read a dataset in one of :data:`LAYOUTS`; ``split`` applies to dvd and gopro only."""
    if layout == "dvd":
        return dvd_sequences(root, split)
    if layout == "gopro":
        return gopro_sequences(root, split)
    if layout == "kitti":
        return kitti_sequences(root)
    if layout == "folder":
        return folder_sequences(root)
    raise DatasetError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


# --------------------------------------------------------------------------------------------
# Where datasets live


def user_data_dir() -> Path:
    """The per-user data folder, following each platform's convention (no extra dependency)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "deblur"


def default_data_root(dataset: str) -> Path:
    """``$DEBLUR_DATA/<dataset>`` when DEBLUR_DATA is set, else ``<user data dir>/<dataset>``."""
    env = os.environ.get("DEBLUR_DATA")
    return (Path(env).expanduser() if env else user_data_dir()) / dataset


# --------------------------------------------------------------------------------------------
# Training windows


# Extra context around a training crop for the optical flow of models with motion inputs.
PREPARE_MARGIN = 16


@dataclass(frozen=True)
class NeighbourAugment:
    """Now and then make a window's neighbours unreliable, as real video does.

    Synthetic clips move rigidly and consistently; real ones cut between scenes, repeat frames and
    move non-rigidly (a head turning, parallax). A network trained only on consistent windows
    copies its neighbours blindly and ghosts on such footage: on our PSF validation clips the
    fast preset gained +0.09 dB with its real neighbours but +0.34 dB when its window held five
    copies of the centre frame, and lost 9.6 dB on a clip of a turning head. Each effect is drawn
    independently per window; the centre frame and the target are never touched.
    """

    # Frames beyond a random cut on one side come from another clip (a scene cut).
    cut_prob: float = 0.15
    # Every neighbour is a copy of the centre frame (a paused or frame-repeating video).
    repeat_prob: float = 0.1
    # Each neighbour gets its own small random affine warp: motion the centre does not share.
    warp_prob: float = 0.4
    warp_shift_px: float = 6.0
    warp_rotate_deg: float = 4.0
    warp_scale: float = 0.04
    # Measured (fast preset, 1,500 fine-tuning steps from the shipped weights, whole clips):
    # val_other / val_own gain +0.11 / +0.69 dB without, +0.16 / +0.65 with (0.1, 0.1, 0.3,
    # 3 px, 3 deg, 3 %), +0.18 / +0.61 with these values. Stronger trades the model's own kind
    # of blur for blur it has not seen, which is what real footage is.


def random_affine(
    rng: np.random.Generator, size: int, shift: float, rotate_deg: float, scale: float
) -> np.ndarray:
    """A 2x3 matrix: rotation and scale about the crop centre, then a shift (uniform draws)."""
    angle = rng.uniform(-rotate_deg, rotate_deg)
    zoom = 1.0 + rng.uniform(-scale, scale)
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, zoom)
    matrix[:, 2] += rng.uniform(-shift, shift, 2)
    return matrix


class WindowDataset(torch.utils.data.Dataset):
    """(window of ``frames`` blurry luma planes, sharp centre plane) pairs for training.

    Item ``i`` is the i-th frame that has ground truth, over all sequences in order. Returns
    ``(blurry 1 x T x c x c, sharp 1 x c x c)`` float32 tensors; edge frames are repeated so every
    frame of a sequence is a centre, even in sequences shorter than the window.

    With ``augment``, a random crop (one position for the whole window and the target), random
    horizontal/vertical flips and a random temporal reversal are applied. The randomness of item
    ``i`` comes from ``(torch.initial_seed(), i, epoch)``: inside DataLoader workers
    torch.initial_seed() is the worker's seed (drawn from the loader's ``generator``), so a seeded
    loader gives the same samples every run; call :meth:`set_epoch` to vary crops across epochs
    when the seed does not change (``num_workers=0`` or persistent workers).

    ``crop=None`` gives whole frames with no randomness (validation). ``cache=True`` decodes every
    frame once, in ``__init__``, into uint8/uint16 luma: eager, because a lazily filled cache would
    be rebuilt by every worker process, while an eager one is shared by fork copy-on-write.
    """

    def __init__(
        self,
        sequences: SequenceABC[Sequence],
        frames: int = 5,
        crop: int | None = 128,
        augment: bool = True,
        cache: bool = True,
        progress: bool = True,
        neighbours: NeighbourAugment | None = None,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if frames < 1 or frames % 2 == 0:
            raise ValueError(f"frames must be odd and positive, got {frames}")
        self.sequences = [s for s in sequences if s.sharp is not None]
        if not self.sequences:
            raise DatasetError("no sequence with sharp ground truth to train or validate on")
        self.frames = frames
        self.crop = crop
        self.augment = augment
        self.neighbours = neighbours
        self.prepare = prepare
        self.epoch = 0
        self.items = [(s, i) for s, seq in enumerate(self.sequences) for i in range(len(seq))]
        self.blurry_cache: list[list[np.ndarray]] | None = None
        self.sharp_cache: list[list[np.ndarray]] | None = None
        if cache:
            self.preload(progress)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def preload(self, progress: bool = True) -> None:
        """Decode every frame into memory (called by ``__init__`` when ``cache=True``)."""
        paths = [p for seq in self.sequences for p in [*seq.blurry, *(seq.sharp or [])]]
        planes = dict(zip(paths, self._decode_all(paths, progress), strict=True))
        self.blurry_cache = [[planes[p] for p in seq.blurry] for seq in self.sequences]
        self.sharp_cache = [[planes[p] for p in seq.sharp or []] for seq in self.sequences]

    @staticmethod
    def _decode_all(paths: list[Path], progress: bool) -> Iterable[np.ndarray]:
        if not progress:
            return [load_luma_codes(p) for p in paths]
        from rich.console import Console
        from rich.progress import track

        console = Console(stderr=True)
        if not console.is_terminal:  # logs: one plain line instead of a live bar
            print(f"decoding {len(paths)} frames into memory", file=sys.stderr, flush=True)
            return [load_luma_codes(p) for p in paths]
        return [
            load_luma_codes(p)
            for p in track(paths, description="decoding frames", console=console, transient=True)
        ]

    def cache_bytes(self) -> int:
        """Memory held by the frame cache (0 without cache)."""
        if self.blurry_cache is None or self.sharp_cache is None:
            return 0
        return sum(a.nbytes for planes in self.blurry_cache + self.sharp_cache for a in planes)

    def _blurry(self, seq: int, frame: int) -> np.ndarray:
        if self.blurry_cache is not None:
            return self.blurry_cache[seq][frame]
        return load_luma_codes(self.sequences[seq].blurry[frame])

    def _sharp(self, seq: int, frame: int) -> np.ndarray:
        if self.sharp_cache is not None:
            return self.sharp_cache[seq][frame]
        return load_luma_codes(self.sequences[seq].sharp[frame])  # type: ignore[index]

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of one item, reproducible from the torch seed, index and epoch."""
        return np.random.default_rng([torch.initial_seed(), index, self.epoch])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self.items):
            raise IndexError(index)
        seq, frame = self.items[index]
        window = window_indices(frame, len(self.sequences[seq]), self.frames)
        planes = [self._blurry(seq, j) for j in window] + [self._sharp(seq, frame)]
        # Optical flow (``prepare``) is unreliable within a few px of the border: measure it on
        # a larger crop, after every augmentation (flips and reversal change the motion), then
        # keep the centre.
        margin = PREPARE_MARGIN if self.prepare is not None and self.crop is not None else 0
        if self.crop is None:
            stack = np.stack(planes)  # T+1 x H x W codes: the window, then the target
        else:
            rng = self.rng(index)
            stack = self._random_crop(planes, self.crop + 2 * margin, rng)
            if self.augment:
                stack = self._augment(stack, rng)
            if self.neighbours is not None:
                stack = self._unsettle(stack, rng, self.neighbours)
        unit = codes_to_unit(np.ascontiguousarray(stack))
        window_planes, target = unit[:-1], unit[-1]
        if self.prepare is not None:
            window_planes = self.prepare(window_planes)
        if margin:
            window_planes = window_planes[:, margin:-margin, margin:-margin]
            target = target[margin:-margin, margin:-margin]
        blurry = torch.from_numpy(np.ascontiguousarray(window_planes, dtype=np.float32)).unsqueeze(
            0
        )
        sharp = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)).unsqueeze(0)
        return blurry, sharp

    @staticmethod
    def _random_crop(planes: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
        """One crop position for all planes, cut before stacking so that only crops are copied;
        frames smaller than the crop are mirrored out."""
        height, width = planes[0].shape
        if height < size or width < size:
            pad = ((0, max(size - height, 0)), (0, max(size - width, 0)))
            planes = [np.pad(p, pad, mode="symmetric") for p in planes]
            height, width = planes[0].shape
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        return np.stack([p[top : top + size, left : left + size] for p in planes])

    def _augment(self, stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flips (both axes) and temporal reversal: blur has no preferred direction in time."""
        flip_h, flip_v, reverse = rng.random(3) < 0.5
        if flip_h:
            stack = stack[:, :, ::-1]
        if flip_v:
            stack = stack[:, ::-1, :]
        if reverse:
            stack = np.concatenate([stack[-2::-1], stack[-1:]])
        return stack

    def _unsettle(
        self, stack: np.ndarray, rng: np.random.Generator, how: NeighbourAugment
    ) -> np.ndarray:
        """Apply :class:`NeighbourAugment` to the window part of a cropped T+1 stack."""
        cut, repeat, warp = rng.random(3) < (how.cut_prob, how.repeat_prob, how.warp_prob)
        if not (cut or repeat or warp) or self.frames == 1:
            return stack
        stack = stack.copy()
        centre, size = self.frames // 2, stack.shape[-1]
        if repeat:
            stack[: self.frames] = stack[centre]
        if cut:
            other = self._random_crop(self._foreign_window(rng), size, rng)
            if other.dtype != stack.dtype:  # an 8-bit clip cut into a 16-bit one, or back
                other = np.rint(other * (code_max(stack.dtype) / code_max(other.dtype)))
            distance = int(rng.integers(1, centre + 1))  # first foreign frame, from the centre
            if rng.random() < 0.5:
                stack[centre + distance : self.frames] = other[centre + distance :]
            else:
                stack[: centre - distance + 1] = other[: centre - distance + 1]
        if warp:
            for j in (j for j in range(self.frames) if j != centre):
                matrix = random_affine(
                    rng, size, how.warp_shift_px, how.warp_rotate_deg, how.warp_scale
                )
                stack[j] = cv2.warpAffine(
                    stack[j], matrix, (size, size), flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101,
                )  # fmt: skip
        return stack

    def _foreign_window(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The blurry window of a random item (another scene, as after a cut)."""
        seq, frame = self.items[int(rng.integers(len(self.items)))]
        window = window_indices(frame, len(self.sequences[seq]), self.frames)
        return [self._blurry(seq, j) for j in window]
