"""Training: the content stage (DBLRNet, MSE) and the GAN stage (DBLRGAN), resumable and DDP-ready.

Reproducibility is by construction: the batch drawn at step ``s`` (which windows, which crops,
flips and reversals) is a pure function of ``(seed, s, rank)``. A checkpoint therefore only needs
the networks, optimisers, schedule, the torch RNG and the step, and ``N steps + resume + N steps``
equals ``2N`` steps in one go, bit for bit on the CPU.

Multi-GPU / multi-node: launch with ``torchrun``; each process trains on its own shard of the
batch through DistributedDataParallel, and rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from deblur_cli.atomic import replaced_file
from deblur_cli.datasets import NeighbourAugment, WindowDataset, find_sequences
from deblur_cli.distributed import current_launch, init_process_group, leave_process_group
from deblur_cli.dormant import recycle_dormant
from deblur_cli.engine import channels_last, cpu_has_native_bf16, resolve_device
from deblur_cli.errors import DatasetError, DeblurError
from deblur_cli.metrics import psnr, ssim
from deblur_cli.models import FAST, PAPER, TINY, DBLRNet, DBLRNetConfig
from deblur_cli.models.dblrnet import ResidualBlock
from deblur_cli.models.discriminator import Discriminator
from deblur_cli.motion import window_preparer
from deblur_cli.optimizers import OPTIMIZERS, build_optimizer
from deblur_cli.weights import load_model, save_model

PRESETS = {"paper": PAPER, "fast": FAST, "tiny": TINY}
STAGES = ("content", "gan")
SCHEDULES = ("plateau", "cosine")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")
RESUME_FILE = "resume.pt"
CALIBRATION_SEED = 7_919  # offsets the run's seed: calibration batches differ from training's
RECYCLE_SEED = 104_729  # the same for the batches that find dormant channels
RECYCLE_BATCHES = 16  # training batches a channel must stay silent on to count as dormant
METRICS_FILE = "metrics.jsonl"


def charbonnier(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Smooth L1: sqrt(d^2 + eps^2), mean over pixels."""
    return torch.sqrt((output - target).square() + eps * eps).mean()


def psnr_loss(output: torch.Tensor, target: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Minus the mean PSNR over the windows of a batch (in dB, as NAFNet trains).

    Pixel losses weigh each window by its absolute error, so a sharp window that the network
    degrades from 41 to 38 dB hardly counts next to a blurry one; in dB every window counts
    like the per-frame PSNR that is reported, and doing harm to sharp frames costs as much as
    failing to restore blurry ones. ``floor`` (below 8-bit quantisation noise) keeps a perfect
    window from dominating.
    """
    mse = (output - target).square().flatten(1).mean(1)
    return 10.0 * torch.log10(mse + floor).mean()


def spectral_l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the 2D spectra (real and imaginary parts), unnormalised.

    The frequency reconstruction loss of MIMO-UNet (Cho et al., ICCV 2021): blur removes the
    high frequencies, whose errors are small per pixel and so hardly move a pixel loss; in the
    spectrum every frequency's error counts alike. Unnormalised as there, so its size grows with
    the crop side (MIMO-UNet weighs it 0.1 on 256x256 crops).
    """
    difference = torch.fft.rfft2(output.float()) - torch.fft.rfft2(target.float())
    return torch.view_as_real(difference).abs().mean()


PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "charbonnier": charbonnier,
    "psnr": psnr_loss,
}

ProgressHook = Callable[[int, int, dict[str, float]], None]
"""Called after every step with (step, total steps, losses); the CLI draws its progress line."""


@dataclass
class TrainOptions:
    """Everything that defines a run. Stored in the checkpoint so a resume uses the same run."""

    out_dir: str
    train_data: list[str]  # "layout:path", e.g. "dvd:data/train"
    val_data: list[str] = field(default_factory=list)
    stage: str = "content"
    preset: str = "paper"
    arch: str = "3d"
    frames: int = 5
    global_residual: bool = True
    norm: str = "batch"  # "none": no BatchNorm (a recorded deviation, see DBLRNetConfig)
    motion_hints: bool = False  # DIS-flow motion planes as extra input (deblur_cli/motion.py)
    align: bool = False  # neighbours warped onto the centre frame by DIS flow
    body: str = "plain"  # "unet": residual blocks at 1/2 and 1/4 resolution (experimental)
    predict: str = "pixels"  # "kernels": per-pixel filters applied to the frames (experimental)
    attention: bool = False  # channel attention in every residual block (experimental)
    dilated: bool = False  # residual blocks dilated 1, 2, 4 in turn (experimental)
    init: str | None = None  # weights to start from (the GAN stage starts from content weights)
    steps: int = 1000
    batch: int = 4
    crop: int = 128
    lr: float = 1e-4
    lr_min: float = 1e-5
    plateau_patience: int = 4  # validations without improvement before lr drops
    optimizer: str = "adam"  # "adamw": decoupled weight decay; "muon": see optimizers.py
    weight_decay: float = 0.0
    # "plateau": lr / 10 when validation stalls (the paper); "cosine": linear warm-up over
    # ``warmup`` steps, then cosine decay from ``lr`` to ``lr_min`` at the end of the run.
    schedule: str = "plateau"
    warmup: int = 0
    # Stop after this much process CPU time (0: no limit). With the cosine schedule the run
    # ends at whichever comes first, steps or CPU minutes, and the decay follows the nearer:
    # the learning-efficiency harness gives every arm the same CPU budget this way.
    cpu_minutes: float = 0.0
    # The same on the wall clock (0: no limit): on a GPU, where CPU time says little, and for a
    # lent machine's fixed time. Either budget ends the run; the cosine follows the nearer.
    minutes: float = 0.0
    device: str = "auto"  # auto: CUDA when present, else the CPU
    alpha: float = 2e-4  # weight of the adversarial loss (GAN stage)
    lr_d: float = 1e-5
    d_width: float = 0.5  # discriminator width scale (1.0 = the paper's 64..512)
    # GAN: the adversarial loss trades PSNR for sharpness. ``best.safetensors`` is the latest
    # validated generator within this many dB of the starting (content-stage) PSNR, and training
    # stops after ``early_stop`` validations in a row further below.
    gan_tolerance: float = 0.3
    early_stop: int = 2
    val_every: int = 500
    val_windows: int = 32
    val_crop: int = 256
    log_every: int = 10
    ckpt_every: int = 200
    ckpt_minutes: float = 5.0
    seed: int = 0
    workers: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16
    reset_lr: bool = False  # on --resume: use ``lr`` instead of the checkpoint's learning rate
    # Pixel loss: "mse" as in the paper, "charbonnier" (a smooth L1), which keeps the few
    # heavily blurred windows of a broad blur mix from dominating the gradient, or "psnr"
    # (minus the per-window PSNR), which weighs sharp and blurry windows alike in dB.
    loss: str = "mse"
    # Weight of the spectral L1 term added to the pixel loss (0: off; see ``spectral_l1``).
    fft_weight: float = 0.0
    # Validation and exported weights use an exponential moving average of the weights (0: off):
    # with small batches of very different blur, single-step weights swing by tenths of a dB.
    ema_decay: float = 0.999
    # Batches of training windows over which BatchNorm statistics are recomputed before each
    # validation and export (0: keep the running averages). The running averages follow the last
    # few batches; with batch 8 of mixed blur they are noisy enough to cost ~0.4 dB.
    bn_calibration: int = 32
    # Make training windows' neighbours unreliable now and then (scene cuts, repeated frames,
    # motion the centre does not share; datasets.NeighbourAugment), so that the network falls
    # back on the centre frame instead of ghosting when real neighbours disagree.
    neighbour_augment: bool = True
    # Start every residual branch at zero (the last conv of each block, and L32; under a norm,
    # that norm's scale), so that a new network is the identity in depth as well as at its
    # output (SkipInit, Fixup; torchvision's ``zero_init_residual``): how unnormalised residual
    # networks are trained at high rates. Changes the start only, not the layers: nothing is
    # stored in the weight file.
    zero_init_residual: bool = False
    # Before the first step, re-initialise the channels whose ReLU never fires on the training
    # windows and zero their outgoing weights (deblur_cli/dormant.py): same output, but the
    # channels can learn again. For runs that start from ``init`` weights.
    recycle_dormant: bool = False
    # A curriculum: for the first ``easy_share`` of the run (by the same measure as the cosine
    # schedule: steps, CPU or wall time), windows come from ``easy_data`` (e.g. narrower blur)
    # instead of ``train_data``; the optimiser and schedule run on unbroken across the switch.
    easy_data: list[str] = field(default_factory=list)
    easy_share: float = 0.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DeblurError(f"--stage must be one of {STAGES}")
        if self.loss not in PIXEL_LOSSES:
            raise DeblurError(f"--loss must be one of {tuple(PIXEL_LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise DeblurError(f"--optimizer must be one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise DeblurError(f"--schedule must be one of {SCHEDULES}")
        if not 0.0 <= self.easy_share < 1.0:
            raise DeblurError("--easy-share must be at least 0 and below 1")
        if self.easy_share > 0 and not self.easy_data:
            raise DeblurError("--easy-share needs --easy-data")
        if self.stage == "gan" and not self.init:
            raise DeblurError("the GAN stage starts from content-stage weights: pass --init PATH")

    def model_config(self) -> DBLRNetConfig:
        frames = 1 if self.arch == "single" else self.frames
        return replace(
            PRESETS[self.preset],
            arch=self.arch,
            frames=frames,
            global_residual=self.global_residual,
            norm=self.norm,
            motion_hints=self.motion_hints,
            align=self.align,
            body=self.body,
            predict=self.predict,
            attention=self.attention,
            dilated=self.dilated,
        )


@dataclass
class TrainState:
    step: int = 0
    best_psnr: float = -math.inf
    start_psnr: float = math.nan  # validation PSNR at step 0 (the GAN stage's reference)
    bad_validations: int = 0
    stopped_early: bool = False
    cpu_seconds: float = 0.0  # process CPU time spent in training steps, over all resumes
    wall_seconds: float = 0.0  # wall-clock time of the training loop, over all resumes


# ---------------------------------------------------------------- data


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Batch ``s``: ``batch`` (window index, augmentation seed) pairs drawn from (seed, s, rank)."""

    def __init__(self, items: int, batch: int, seed: int, start: int, stop: int, rank: int) -> None:
        self.items, self.batch, self.seed = items, batch, seed
        self.start, self.stop, self.rank = start, stop, rank

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step, self.rank])
            indices = rng.integers(0, self.items, self.batch)
            seeds = rng.integers(0, 2**31 - 1, self.batch)
            yield [(int(i), int(s)) for i, s in zip(indices, seeds, strict=True)]


class SeededWindows(Dataset):
    """Makes a window's random crop/flip/reversal a function of the seed it is asked with."""

    def __init__(self, base: WindowDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.base[index]


def parse_sources(specs: list[str]) -> list:
    """``layout:path`` strings -> the sequences they hold (all splits of our own datasets)."""
    sequences = []
    for spec in specs:
        layout, sep, root = spec.partition(":")
        if not sep:
            raise DatasetError(f"expected LAYOUT:PATH (e.g. dvd:data/train), got {spec!r}")
        split = "train" if layout in ("dvd", "gopro") else "test"
        sequences += find_sequences(layout, Path(root), split=split)
    return sequences


def fixed_validation_windows(
    specs: list[str], config: DBLRNetConfig, count: int, crop: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, evenly spaced set of centre-cropped windows: the same at every validation.

    ``count`` windows come from each set, so that every set weighs alike in the mean whatever
    its size: a run validated on blurry and on sharp input keeps the step that is best on both,
    not the one best on the larger set. Motion inputs are computed on the whole frames, as the
    engine does, before cropping."""
    items = []
    for spec in specs:
        dataset = WindowDataset(
            parse_sources([spec]), frames=config.frames, crop=None, augment=False,
            prepare=window_preparer(config),
        )  # fmt: skip
        picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round()
        items += [dataset[int(index)] for index in picks.astype(int)]
    height = min([crop] + [sharp.shape[-2] for _, sharp in items])
    width = min([crop] + [sharp.shape[-1] for _, sharp in items])

    def centre(t: torch.Tensor) -> torch.Tensor:
        top, left = (t.shape[-2] - height) // 2, (t.shape[-1] - width) // 2
        return t[..., top : top + height, left : left + width]

    return torch.stack([centre(x) for x, _ in items]), torch.stack([centre(y) for _, y in items])


# ---------------------------------------------------------------- helpers


def zero_residual_branches(model: DBLRNet) -> None:
    """Zero the end of every residual branch (see TrainOptions.zero_init_residual): its norm's
    scale and shift where it has one (the "zero gamma" of Goyal et al. 2017, as torchvision
    does; zeroing the conv before a norm would leave that norm a zero input and a 1/eps
    gradient), else its last convolution."""
    blocks = [block for block in model.modules() if isinstance(block, ResidualBlock)]
    ends = [(block.conv2, block.bn2) for block in blocks] + [(model.l32, model.bn32)]
    with torch.no_grad():
        for conv, norm in ends:
            layer = conv if isinstance(norm, nn.Identity) else norm
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their plain average over ``batches``.

    "Precise BN" (Wu & Johnson, 2021): the exponential running average tracks the last few
    batches, which with small, heterogeneous batches is a poor estimate of the population.
    """
    norms = batchnorm_layers(model)
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: cumulative average over the batches seen
    model.train()
    for batch in batches:
        model(batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def init_config(config: DBLRNetConfig, options: TrainOptions) -> DBLRNetConfig:
    """The config of a run that starts from ``--init`` weights: the file's, but ``--align``.

    The file fixes the layers (preset, norm, body, motion hints). Alignment changes only how the
    neighbours are prepared, not the weights, so ``--align`` can switch it on for a file trained
    without it; a file trained with it keeps it. Until session 8 the flag was silently dropped.
    """
    if options.motion_hints and not config.motion_hints:
        raise DeblurError("--motion-hints: the --init weights were trained without motion hints")
    return replace(config, align=config.align or options.align)


def world() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    launch = current_launch()
    init_process_group(launch)
    return launch.rank, launch.world_size


def training_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else the CPU (training on Apple MPS is not supported)."""
    if name not in TRAIN_DEVICES:
        raise DeblurError(f"--device must be one of {TRAIN_DEVICES}")
    device = resolve_device(name)
    if device.type == "mps":
        return torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeblurError("--device cuda: no CUDA device is available")
    return device


def autocast(precision: str, device: torch.device = CPU) -> contextlib.AbstractContextManager:
    """bf16 autocast where it is fast: any CUDA GPU, or a CPU with native bf16 (``auto``)."""
    native = device.type == "cuda" or cpu_has_native_bf16()
    use_bf16 = precision == "bf16" or (precision == "auto" and native)
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Owns the networks, optimisers, data and logs of one run (one stage)."""

    def __init__(self, options: TrainOptions, resume: bool = False) -> None:
        self.options = options
        self.pixel_loss = PIXEL_LOSSES[options.loss]
        self.out = Path(options.out_dir)
        self.rank, self.world_size = world()
        self.device = training_device(options.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: pick the fastest kernels
        torch.manual_seed(options.seed)
        self.generator = self._build_generator()
        self.config = self.generator.config
        self.opt = build_optimizer(
            options.optimizer, self.generator, options.lr, options.weight_decay
        )
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="max", factor=0.1, patience=options.plateau_patience,
            min_lr=options.lr_min,
        )  # fmt: skip
        self.discriminator: nn.Module | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if options.stage == "gan":
            self.discriminator = channels_last(Discriminator(options.d_width)).to(self.device)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=options.lr_d)
        self.state = TrainState()
        self.ema = copy.deepcopy(self.generator) if options.ema_decay > 0 else None
        if resume:
            self._load_resume()
        self.train_set = self._training_windows(options.train_data)
        self.easy_set = (
            self._training_windows(options.easy_data) if options.easy_share > 0 else None
        )
        self.val = (
            fixed_validation_windows(
                options.val_data, self.config, options.val_windows, options.val_crop
            )
            if options.val_data
            else None
        )
        recycled = self._recycle_dormant() if options.recycle_dormant and not resume else None
        self.g = self._distribute(self.generator)
        self.d = self._distribute(self.discriminator) if self.discriminator else None
        self.out.mkdir(parents=True, exist_ok=True)  # only once the data has been found
        if recycled is not None:
            self.log({"step": self.state.step, "recycled": recycled})

    def _training_windows(self, sources: list[str]) -> WindowDataset:
        options = self.options
        windows = WindowDataset(
            parse_sources(sources), frames=self.config.frames, crop=options.crop,
            augment=True, cache=True,
            neighbours=NeighbourAugment() if options.neighbour_augment else None,
            prepare=window_preparer(self.config),
        )  # fmt: skip
        if len(windows) == 0:
            raise DatasetError(f"the training data {sources} holds no frames with ground truth")
        return windows

    def _recycle_dormant(self) -> dict[str, int]:
        """Give the starting weights' dormant channels back to training (deblur_cli/dormant.py),
        found on a fixed set of training batches; the averaged copy starts from the result."""
        options = self.options
        inputs = fixed_training_inputs(self.train_set, RECYCLE_BATCHES, options.batch,
                                       options.seed + RECYCLE_SEED, self.device)  # fmt: skip
        with autocast(options.precision, self.device):
            counts = recycle_dormant(self.generator, inputs, seed=options.seed)
        if self.ema is not None:
            self.ema.load_state_dict(self.generator.state_dict())
        return counts

    def _build_generator(self) -> DBLRNet:
        if self.options.init:
            model = load_model(self.options.init)
            model.config = init_config(model.config, self.options)
        else:
            model = DBLRNet(self.options.model_config())
            if self.options.zero_init_residual:
                zero_residual_branches(model)
        return channels_last(model.train()).to(self.device)

    def _distribute(self, module: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return module
        return nn.parallel.DistributedDataParallel(module)

    # ------------------------------------------------------------ checkpoints

    @property
    def resume_path(self) -> Path:
        return self.out / RESUME_FILE

    def save_resume(self) -> None:
        if self.rank != 0:
            return
        payload = {
            "state": asdict(self.state),
            "options": json.dumps(asdict(self.options), sort_keys=True),
            "config": self.config.to_json(),
            "generator": self.generator.state_dict(),
            "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        if self.discriminator is not None and self.opt_d is not None:
            payload["discriminator"] = self.discriminator.state_dict()
            payload["optimizer_d"] = self.opt_d.state_dict()
        with replaced_file(self.resume_path) as tmp:
            torch.save(payload, tmp)

    def _load_resume(self) -> None:
        if not self.resume_path.is_file():
            raise DeblurError(f"--resume: no checkpoint at {self.resume_path}")
        # weights_only: a checkpoint is tensors and plain values; never run pickled code.
        payload = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        if payload["config"] != self.generator.config.to_json():
            raise DeblurError(f"{self.resume_path} was trained with another model config")
        self.generator.load_state_dict(payload["generator"])
        if self.ema is not None:  # a run that turns the average on starts it from its weights
            self.ema.load_state_dict(payload.get("ema", payload["generator"]))
        self.opt.load_state_dict(payload["optimizer"])
        self.schedule.load_state_dict(payload["schedule"])
        if self.options.reset_lr:  # e.g. a run that proved unstable continues at a lower rate
            for group in self.opt.param_groups:
                group["lr"] = self.options.lr
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.load_state_dict(payload["discriminator"])
            self.opt_d.load_state_dict(payload["optimizer_d"])
        torch.set_rng_state(payload["torch_rng"])
        self.state = TrainState(**payload["state"])
        self._truncate_metrics(self.state.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from."""
        path = self.out / METRICS_FILE
        if self.rank != 0 or not path.is_file():
            return
        lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        path.write_text("".join(f"{ln}\n" for ln in lines))

    def export(self, name: str, model: DBLRNet | None = None) -> Path:
        info: dict[str, str | int | float] = {"stage": self.options.stage, "step": self.state.step}
        if math.isfinite(self.state.best_psnr):  # a run without --val has none to record
            info["best_val_psnr"] = round(self.state.best_psnr, 4)
        return save_model(model or self.release_model(), self.out / name, **info)

    def release_model(self) -> DBLRNet:
        """The network as validated and exported: a copy of the averaged weights (when on),
        with BatchNorm statistics recomputed on a fixed set of training batches (when on)."""
        model = copy.deepcopy(self.ema if self.ema is not None else self.generator)
        options = self.options
        if options.bn_calibration > 0:
            calibrate(model, self.train_set, options.bn_calibration, options.batch, options.seed,
                      options.precision, self.device)  # fmt: skip
        return model.eval()

    # ------------------------------------------------------------ steps

    def log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.out / METRICS_FILE, "a") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def content_loss(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """The pixel loss, plus the spectral term when it is weighted."""
        loss = self.pixel_loss(restored.float(), sharp)
        if self.options.fft_weight:
            loss = loss + self.options.fft_weight * spectral_l1(restored, sharp)
        return loss

    def content_step(self, blurry: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        with autocast(self.options.precision, self.device):
            restored = self.g(blurry)
        loss = self.content_loss(restored, sharp)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._update_ema()
        return {"loss": loss.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # Warm-up as in TensorFlow's ExponentialMovingAverage: early on the average follows the
        # weights closely, so short runs are not dragged back towards the initialisation.
        step = self.state.step
        weight = 1.0 - min(self.options.ema_decay, (1 + step) / (10 + step))
        for averaged, current in zip(
            self.ema.state_dict().values(), self.generator.state_dict().values(), strict=True
        ):
            if averaged.is_floating_point():
                averaged.lerp_(current, weight)
            else:  # BatchNorm's batch counter
                averaged.copy_(current)

    def gan_step(self, blurry: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        assert self.d is not None and self.opt_d is not None
        count = sharp.shape[0]
        real = torch.ones(count, dtype=torch.long, device=sharp.device)
        labels = torch.cat([real, torch.zeros_like(real)])
        # Real and restored crops go through D in one batch. D has BatchNorm: given separately,
        # each batch was normalised by its own statistics, which removed the very difference
        # to be seen (restored crops have less fine-detail energy), and D stayed at chance
        # (2 ln 2) for hundreds of steps; in one batch it learns (training/EXPERIMENTS.md).
        with autocast(self.options.precision, self.device):
            restored = self.g(blurry)
            logits = self.d(torch.cat([sharp, restored.detach().float()])).float()
            d_loss = 2.0 * F.cross_entropy(logits, labels)  # = real + fake terms, as in the paper
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with autocast(self.options.precision, self.device):
            # Non-saturating form of log(1 - D(G(x))): -log D(G(x)); same fixed point. The real
            # crops go in again only so that BatchNorm normalises as in D's step.
            logits = self.d(torch.cat([sharp, restored.float()])).float()
            adversarial = F.cross_entropy(logits[count:], real)
        content = self.content_loss(restored, sharp)
        loss = content + self.options.alpha * adversarial
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._update_ema()
        return {"loss": loss.item(), "content": content.item(), "adv": adversarial.item(),
                "d_loss": d_loss.item()}  # fmt: skip

    @torch.no_grad()
    def validate(self, model: DBLRNet) -> dict[str, float]:
        """PSNR/SSIM on Y of the fixed validation windows, for the output and the blurry input."""
        assert self.val is not None
        blurry, sharp = self.val
        outputs = []
        with autocast(self.options.precision, self.device):
            for start in range(0, len(blurry), 4):
                chunk = blurry[start : start + 4].to(self.device)
                outputs.append(model(chunk).float().clamp(0, 1).cpu())
        restored = torch.cat(outputs)[:, 0].numpy()
        target = sharp[:, 0].numpy()
        centre = blurry[:, 0, self.config.frames // 2].numpy()  # the hint planes follow the frames
        pairs = list(zip(restored, target, strict=True))
        inputs = list(zip(centre, target, strict=True))
        result = {
            "val_psnr": float(np.mean([psnr(a, b, data_range=1.0) for a, b in pairs])),
            "val_ssim": float(np.mean([ssim(a, b, data_range=1.0) for a, b in pairs])),
            "input_psnr": float(np.mean([psnr(a, b, data_range=1.0) for a, b in inputs])),
            "input_ssim": float(np.mean([ssim(a, b, data_range=1.0) for a, b in inputs])),
        }
        result["gain_db"] = result["val_psnr"] - result["input_psnr"]
        return result

    def _validate_and_log(self, step: int) -> None:
        model = self.release_model()
        metrics = self.validate(model)
        self._after_validation(metrics, model)
        self.log({"step": step, **metrics, "lr": self.opt.param_groups[0]["lr"],
                  "cpu_minutes": self.state.cpu_seconds / 60})  # fmt: skip

    def _after_validation(self, metrics: dict[str, float], model: DBLRNet) -> None:
        value = metrics["val_psnr"]
        if self.world_size > 1:  # rank 0's number decides, so every rank schedules alike
            tensor = torch.tensor([value], dtype=torch.float64, device=self.device)  # NCCL: on GPU
            dist.broadcast(tensor, 0)
            value = float(tensor.item())
        if self.options.stage == "gan":
            self._after_gan_validation(value, model)
            return
        if self.options.schedule == "plateau":
            self.schedule.step(value)
        if value > self.state.best_psnr:
            self.state.best_psnr, self.state.bad_validations = value, 0
            if self.rank == 0:
                self.export("best.safetensors", model)
        else:
            self.state.bad_validations += 1

    def _after_gan_validation(self, value: float, model: DBLRNet) -> None:
        """Keep the most adversarially trained generator whose PSNR is still within tolerance."""
        self.state.best_psnr = max(self.state.best_psnr, value)
        floor = self.state.start_psnr - self.options.gan_tolerance
        if math.isnan(floor) or value >= floor:
            self.state.bad_validations = 0
            if self.rank == 0:
                self.export("best.safetensors", model)
            return
        self.state.bad_validations += 1
        self.state.stopped_early = self.state.bad_validations >= self.options.early_stop

    def progress(self) -> float:
        """Fraction of the run done: by steps, or by CPU or wall time when that budget is nearer."""
        done = self.state.step / max(self.options.steps, 1)
        if self.options.cpu_minutes > 0:
            done = max(done, self.state.cpu_seconds / (60 * self.options.cpu_minutes))
        if self.options.minutes > 0:
            done = max(done, self.state.wall_seconds / (60 * self.options.minutes))
        return min(done, 1.0)

    def out_of_time_budget(self) -> bool:
        options, state = self.options, self.state
        cpu_spent = options.cpu_minutes > 0 and state.cpu_seconds >= 60 * options.cpu_minutes
        wall_spent = options.minutes > 0 and state.wall_seconds >= 60 * options.minutes
        return cpu_spent or wall_spent

    def _set_scheduled_lr(self) -> None:
        """Warm-up and cosine decay (``schedule="cosine"``); the plateau schedule steps itself."""
        options = self.options
        if options.schedule != "cosine":
            return
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress()))
        lr = options.lr_min + (options.lr - options.lr_min) * cosine
        if options.warmup > 0:
            lr *= min(1.0, (self.state.step + 1) / options.warmup)
        for group in self.opt.param_groups:
            group["lr"] = lr

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches to the end of the run: the curriculum's easy windows first, if any."""
        if self.easy_set is not None and self.progress() < self.options.easy_share:
            for batch in self._batches_from(self.easy_set):
                if self.progress() >= self.options.easy_share:
                    break
                yield batch
        yield from self._batches_from(self.train_set)

    def _batches_from(self, windows: WindowDataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StepBatches(
            len(windows), self.options.batch, self.options.seed, self.state.step,
            self.options.steps, self.rank,
        )  # fmt: skip
        workers = self.options.workers
        loader = DataLoader(
            SeededWindows(windows), batch_sampler=sampler, num_workers=workers,
            persistent_workers=False, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )  # fmt: skip
        for blurry, sharp in loader:
            blurry = blurry.to(self.device, non_blocking=True)
            yield blurry.contiguous(memory_format=torch.channels_last_3d), sharp.to(self.device)

    def run(self, progress: ProgressHook | None = None) -> TrainState:
        """Train to ``options.steps`` or an early stop, validating and checkpointing on the way."""
        options = self.options
        step_fn = self.gan_step if options.stage == "gan" else self.content_step
        if self.val is not None and self.state.step == 0 and self.state.best_psnr == -math.inf:
            metrics = self.validate(self.release_model())
            self.state.start_psnr = metrics["val_psnr"]
            self.log({"step": 0, **metrics, "lr": options.lr})
        last_ckpt = time.monotonic()
        window_start, window_steps = time.monotonic(), 0
        sums: dict[str, float] = {}  # losses summed since the last log line
        wall_start = time.monotonic()
        for blurry, sharp in self.batches():
            self._set_scheduled_lr()
            cpu_start = time.process_time()
            losses = step_fn(blurry, sharp)
            self.state.cpu_seconds += time.process_time() - cpu_start
            self.state.wall_seconds += time.monotonic() - wall_start
            wall_start = time.monotonic()
            self.state.step += 1
            window_steps += 1
            step = self.state.step
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            if progress:
                progress(step, options.steps, losses)
            if step % options.log_every == 0:
                # Mean over the window: single-batch losses swing with each batch's blur.
                means = {name: total / window_steps for name, total in sums.items()}
                rate = window_steps / max(time.monotonic() - window_start, 1e-9)
                self.log({"step": step, **means, "lr": self.opt.param_groups[0]["lr"],
                          "steps_per_s": rate, "samples_per_s": rate * options.batch,
                          "cpu_minutes": self.state.cpu_seconds / 60,
                          "wall_minutes": self.state.wall_seconds / 60})  # fmt: skip
                window_start, window_steps, sums = time.monotonic(), 0, {}
            out_of_time = self.out_of_time_budget()
            # A run stopped by its time budget validates its final step too: with the cosine
            # schedule that is usually the best one, and only validated steps can be kept.
            if self.val is not None and (
                step % options.val_every == 0 or step == options.steps or out_of_time
            ):
                self._validate_and_log(step)
            due = time.monotonic() - last_ckpt > options.ckpt_minutes * 60
            if step % options.ckpt_every == 0 or due or step == options.steps:
                self.save_resume()
                last_ckpt = time.monotonic()
            if self.state.stopped_early or out_of_time:
                self.save_resume()
                break
        if self.rank == 0:
            model = self.release_model()
            self.export("last.safetensors", model)
            if self.val is None:
                self.export("best.safetensors", model)
        return self.state


def calibrate(
    model: DBLRNet, windows: WindowDataset, batches: int, batch: int, seed: int, precision: str,
    device: torch.device = CPU,
) -> None:  # fmt: skip
    """Recompute ``model``'s BatchNorm statistics on a fixed set of training batches.

    A model without BatchNorm (``norm="none"``) has nothing to recompute: no batches are run."""
    if not batchnorm_layers(model):
        return
    inputs = fixed_training_inputs(windows, batches, batch, seed + CALIBRATION_SEED, device)
    with autocast(precision, device):
        recalibrate_batchnorm(model, inputs)


def fixed_training_inputs(
    windows: WindowDataset, batches: int, batch: int, seed: int, device: torch.device = CPU
) -> Iterator[torch.Tensor]:
    """The network inputs of ``batches`` training batches drawn from ``seed`` alone: the same
    at every call, whatever step the run is at (BatchNorm calibration, dormant channels)."""
    sampler = StepBatches(len(windows), batch, seed, 0, batches, 0)
    loader = DataLoader(SeededWindows(windows), batch_sampler=sampler)
    return (b.to(device).contiguous(memory_format=torch.channels_last_3d) for b, _ in loader)


def export_checkpoint(
    checkpoint: Path, output: Path, calibrate_on: list[str] | None = None, batches: int = 32,
    batch: int = 8, crop: int = 64,
) -> Path:  # fmt: skip
    """Turn a resume checkpoint (or a weights file) into a weights file for ``--model``.

    Takes the averaged weights when the run kept them. With ``calibrate_on`` (``layout:path``
    training data), BatchNorm statistics are recomputed over ``batches`` batches of ``batch``
    windows cropped to ``crop``, as ``deblur train`` does before it exports."""
    if checkpoint.suffix == ".safetensors":
        model = load_model(str(checkpoint))
        with safe_open(str(checkpoint), "pt") as handle:  # keep what the file says of itself
            stored = handle.metadata() or {}
        info: dict[str, int | str] = {k: stored[k] for k in ("stage", "step") if k in stored}
    else:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model = DBLRNet(DBLRNetConfig.from_json(payload["config"]))
        model.load_state_dict(payload.get("ema", payload["generator"]))
        options = json.loads(payload["options"])
        info = {"stage": options["stage"], "step": payload["state"]["step"]}
    if calibrate_on:
        windows = WindowDataset(
            parse_sources(calibrate_on), frames=model.config.frames, crop=crop, cache=True,
            prepare=window_preparer(model.config),
        )  # fmt: skip
        calibrate(model, windows, batches, batch, seed=0, precision="auto")
    return save_model(model.eval(), output, **info)


def train(
    options: TrainOptions, resume: bool = False, progress: ProgressHook | None = None
) -> TrainState:
    """Run one training stage; the library entry point behind ``deblur train``."""
    state = Trainer(options, resume=resume).run(progress)
    leave_process_group()
    return state
