"""The inference engine: frame windows, batching, spatial tiles, device and precision.

No file or container handling lives here. Callers hand in luma planes (float32, black 0.0,
white 1.0) paired with an opaque payload (a decoded frame, a file name...) and get the restored
plane back with the same payload, in order. That keeps video.py free of tensors and this module
free of codecs.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from deblur_cli.models import DBLRNet, fold_batchnorm

Payload = TypeVar("Payload")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Peak activation bytes per pixel of one window, measured for the paper config in fp32 at
# 256x256 (the head holds two 256-channel maps plus skips); used to choose tile sizes.
ACTIVATION_BYTES_PER_PIXEL_PER_CHANNEL = 4 * 2.6
DEFAULT_MEMORY_BUDGET = 768 * 2**20


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16, AMX): bf16 runs ~4x fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: fp16 on CUDA, bf16 on CPUs with native bf16, otherwise fp32."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def edge_clamped_windows(count: int, window: int) -> list[list[int]]:
    """Frame indices of every window; edge frames repeat so each frame gets one output."""
    radius = window // 2
    return [
        [min(max(j, 0), count - 1) for j in range(i - radius, i + radius + 1)] for i in range(count)
    ]


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store 2D conv weights channels-last (the 5D temporal weights are reshaped per call)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


@dataclass(frozen=True)
class TilePlan:
    """Core tile size and the context margin added on every side of each tile."""

    size: int
    margin: int


class Deblurrer(Generic[Payload]):
    """A model prepared for inference on one device and precision.

    Preparation folds BatchNorm into the convolutions and switches to channels-last memory,
    which is what oneDNN's bf16 kernels (and cuDNN's fp16 ones) run fastest on.
    """

    def __init__(
        self,
        model: DBLRNet,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 0,
        tile: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        self.config = model.config
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        self.memory_budget = memory_budget
        self.tile = tile
        net = fold_batchnorm(copy.deepcopy(model).eval())
        self.model = channels_last(net.to(self.device))
        self.macs_per_pixel = model.macs_per_pixel()

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def margin(self) -> int:
        """Context on each side of a tile: the receptive radius, rounded up to a multiple of 8."""
        return int(math.ceil(self.config.receptive_radius / 8) * 8)

    def tile_plan(self, height: int, width: int) -> TilePlan | None:
        """Tiles for a frame of this size, or None to run whole frames.

        An explicit ``tile`` wins; otherwise tile only when one window would exceed the memory
        budget, choosing the largest square tile that fits.
        """
        if self.tile:
            return TilePlan(self.tile, self.margin) if max(height, width) > self.tile else None
        peak_channels = max(self.config.head_width, self.config.width) * 2 + self.config.width
        bytes_per_pixel = ACTIVATION_BYTES_PER_PIXEL_PER_CHANNEL * peak_channels
        if self.batch_size * height * width * bytes_per_pixel <= self.memory_budget:
            return None
        side = int(math.sqrt(self.memory_budget / bytes_per_pixel)) - 2 * self.margin
        return TilePlan(max(64, side // 8 * 8), self.margin)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        """B x T x H x W float32 on the device -> B x H x W float32."""
        x = windows.unsqueeze(1).contiguous(memory_format=torch.channels_last_3d)
        with self.autocast():
            y = self.model(x)
        return y[:, 0].float()

    def run_windows(self, windows: np.ndarray) -> np.ndarray:
        """B x T x H x W windows (float32, unit range) -> B x H x W restored centre planes."""
        if windows.ndim != 4 or windows.shape[1] != self.window:
            raise ValueError(f"expected B x {self.window} x H x W, got {windows.shape}")
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        x = x.to(self.device, non_blocking=True)
        plan = self.tile_plan(*windows.shape[2:])
        y = self._forward(x) if plan is None else self._forward_tiled(x, plan)
        return y.cpu().numpy()

    def _forward_tiled(self, x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
        """Run overlapping tiles and keep each tile's core; equals the untiled result because
        the margin covers the receptive field."""
        _, _, height, width = x.shape
        out = torch.empty((x.shape[0], height, width), dtype=torch.float32, device=x.device)
        for top in range(0, height, plan.size):
            for left in range(0, width, plan.size):
                bottom, right = min(top + plan.size, height), min(left + plan.size, width)
                t0, l0 = max(top - plan.margin, 0), max(left - plan.margin, 0)
                b1, r1 = min(bottom + plan.margin, height), min(right + plan.margin, width)
                y = self._forward(x[:, :, t0:b1, l0:r1])
                out[:, top:bottom, left:right] = y[
                    :, top - t0 : bottom - t0, left - l0 : right - l0
                ]
        return out

    def stream(
        self, frames: Iterable[tuple[Payload, np.ndarray]]
    ) -> Iterator[tuple[Payload, np.ndarray]]:
        """Deblur a stream of (payload, luma plane) pairs, yielding them in order.

        Memory is bounded: only the last ``window`` planes and one batch are held, whatever the
        length of the stream. Edge frames are repeated, so a stream of n frames gives n outputs
        (n = 1..4 included).
        """
        radius = self.window // 2
        planes: dict[int, np.ndarray] = {}
        payloads: dict[int, Payload] = {}
        batch: list[int] = []
        count = 0

        def window_of(i: int, last: int) -> np.ndarray:
            return np.stack(
                [planes[min(max(j, 0), last)] for j in range(i - radius, i + radius + 1)]
            )

        def flush(last: int) -> Iterator[tuple[Payload, np.ndarray]]:
            restored = self.run_windows(np.stack([window_of(i, last) for i in batch]))
            for i, plane in zip(batch, restored, strict=True):
                yield payloads.pop(i), plane
                # Frames before i - radius + 1 are needed by no later window.
                planes.pop(i - radius, None)
            batch.clear()

        for payload, plane in frames:
            planes[count], payloads[count] = plane, payload
            ready = count - radius
            if ready >= 0:
                batch.append(ready)
                if len(batch) == self.batch_size:
                    yield from flush(last=10**12)
            count += 1
        for i in range(max(count - radius, 0), count):
            batch.append(i)
            if len(batch) == self.batch_size:
                yield from flush(last=count - 1)
        if batch:
            yield from flush(last=count - 1)
