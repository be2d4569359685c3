"""The inference engine: frame windows, batching, spatial tiles, device and precision.

No file or container handling lives here. Callers hand in luma planes (float32, black 0.0,
white 1.0) paired with an opaque payload (a decoded frame, a file name...) and get the restored
plane back with the same payload, in order. That keeps video.py free of tensors and this module
free of codecs.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblur_cli.models import DBLRNet, DBLRNetConfig, fold_batchnorm
from deblur_cli.motion import window_preparer
from deblur_cli.scenes import CutDetector

Payload = TypeVar("Payload")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Peak memory while one window runs, per pixel, in units of (2 * head_width + width) channels of
# the compute dtype: the head's two wide maps alive together plus the long skip. MEASURED, not
# guessed: benchmarks/speed.py fits the RSS high-water mark of fresh processes over 256^2..768^2
# frames (paper config): 1135-1167 B/pixel in bf16 (factor 0.99-1.01), 2258-2262 B/pixel in fp32
# (factor 0.98), in two runs; see benchmarks/RESULTS.md.
PEAK_LIVE_CHANNELS_FACTOR = 1.02
# Activation budget per batch. Torch, the model and the process take ~0.3 GiB, so a 1080p frame
# (two tiles in bf16) peaks near 1.5 GiB, under the 2 GiB target; 720p runs untiled in bf16.
DEFAULT_MEMORY_BUDGET = 1280 * 2**20
# On CUDA the activations live in device memory: the default budget is this share of it instead.
CUDA_MEMORY_SHARE = 0.4
# Frames run eagerly before torch.compile kicks in (when asked for): a clip shorter than this
# never pays the compile time; a long one repays it.
COMPILE_AFTER_FRAMES = 64


def activation_bytes_per_pixel(config: DBLRNetConfig, dtype: torch.dtype) -> float:
    """Peak bytes per pixel of one window, from the measured constants above."""
    channels = 2 * config.head_width + config.width + config.filter_planes
    itemsize = torch.finfo(dtype).bits // 8
    return PEAK_LIVE_CHANNELS_FACTOR * channels * itemsize


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


def window_indices(index: int, count: int, frames: int) -> list[int]:
    """Frame indices of the window centred on ``index``; out-of-range neighbours repeat the edge.

    A 3-frame Blurred KITTI sequence with a 5-frame window gives [0, 0, 0, 1, 2] for frame 0.
    """
    if not 0 <= index < count:
        raise IndexError(f"frame {index} outside a sequence of {count}")
    radius = frames // 2
    return [min(max(j, 0), count - 1) for j in range(index - radius, index + radius + 1)]


def edge_clamped_windows(count: int, window: int) -> list[list[int]]:
    """Frame indices of every window; edge frames repeat so each frame gets one output."""
    return [window_indices(i, count, window) for i in range(count)]


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store 2D conv weights channels-last (the 5D temporal weights are reshaped per call)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return model


class InferenceNet(nn.Module):
    """A BN-folded DBLRNet rewritten as a plain chain of 2D convolutions, for inference only.

    The temporal front end is turned into two ordinary convolutions over the frames stacked as
    channels: L1 (a 3-frame 3D conv at every temporal position) becomes one conv whose output
    holds the positions side by side, with zero weights for the frames a position does not see;
    L2 (spanning all positions) becomes one conv over those concatenated channels. No unfold,
    permute or 5D layout is left, so every layer is a channels-last 2D conv.

    On CPUs with oneDNN the ReLUs and residual additions are fused into the convolutions and
    the weights are pre-packed once into oneDNN's blocked layout, instead of being cast and
    reordered on every call as under autocast. Elsewhere it runs plain ``F.conv2d``.

    Input: N x T x H x W float32; output: N x H x W float32. The global residual (the centre
    frame) is added in float32, so bf16/fp16 only ever touch the small correction.
    """

    def __init__(self, model: DBLRNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        folded = fold_batchnorm(copy.deepcopy(model).eval())
        self.config = model.config
        self.dtype = dtype
        weights = [_front_l1(folded), _front_l2(folded)]
        norms: list[nn.Module] = [nn.Identity(), nn.Identity()]
        for block in folded.blocks:
            weights += [_conv_weights(block.conv1), _conv_weights(block.conv2)]
            norms += [block.bn1, block.bn2]
        weights += [_conv_weights(getattr(folded, name)) for name in LATE_LAYERS]
        norms += [folded.bn31, folded.bn32] + [nn.Identity()] * (len(LATE_LAYERS) - 2)
        self.weights = nn.ParameterList(_frozen(w, dtype, channels_last=True) for w, _ in weights)
        self.biases = nn.ParameterList(_frozen(b, dtype) for _, b in weights)
        # GroupNorm and ChannelNorm cannot fold (their statistics are the input's): each stays
        # a layer after its conv, which then runs unfused; BatchNorm was folded to the identity.
        # They run in the compute dtype (torch sums the statistics in float32): on a real frame
        # in bf16 GroupNorm is as close to fp32 as in float32, at 1.3x the BN path's time, not
        # 1.6-2.1x.
        self.norms = nn.ModuleList(norms).to(dtype).requires_grad_(False)
        self._packed: list[torch.Tensor] | None = None

    def use_onednn(self) -> bool:
        """Switch to fused oneDNN kernels with pre-packed weights, if they work here.

        Checked on a tiny input against ``F.conv2d``; any failure keeps the plain path, so an
        unusual build (or a dtype oneDNN lacks on this CPU) costs speed, never correctness.
        """
        if self.weights[0].device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return False
        try:
            packed = [_pack_onednn(w) for w in self.weights]
            probe = torch.rand(1, self.weights[0].shape[1], 9, 11).to(self.dtype)
            probe = probe.contiguous(memory_format=torch.channels_last)
            fused = _ONEDNN_CONV(
                probe, packed[0], self.biases[0], *_ONEDNN_GEOMETRY, "relu", [], ""
            )
            plain = F.relu(F.conv2d(probe, self.weights[0], self.biases[0], padding=1))
            if not torch.allclose(fused.float(), plain.float(), atol=1e-2, rtol=1e-2):
                return False
        except (RuntimeError, NotImplementedError, AttributeError, TypeError):
            return False
        self._packed = packed
        return True

    def _conv_alone(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The convolution alone (the layer's norm comes between it and the rest)."""
        if self._packed is not None:
            weight, bias = self._packed[index], self.biases[index]
            return _ONEDNN_CONV(x, weight, bias, *_ONEDNN_GEOMETRY, "none", [], "")
        return F.conv2d(x, self.weights[index], self.biases[index], padding=1)

    def _conv(
        self, x: torch.Tensor, index: int, relu: bool = False, add: torch.Tensor | None = None
    ) -> torch.Tensor:
        """conv(x) [then its norm] [+ add] [then ReLU]: one fused kernel on oneDNN, unless a
        norm that cannot fold (GroupNorm, ChannelNorm) has to come between the conv and the
        rest."""
        norm = self.norms[index]
        if self._packed is not None and isinstance(norm, nn.Identity):
            weight, bias = self._packed[index], self.biases[index]
            if add is None:
                unary = "relu" if relu else "none"
                return _ONEDNN_CONV(x, weight, bias, *_ONEDNN_GEOMETRY, unary, [], "")
            return _ONEDNN_CONV.binary(
                x,
                add,
                weight,
                bias,
                *_ONEDNN_GEOMETRY,
                "add",
                None,
                "relu" if relu else None,
                [],
                None,
            )
        y = norm(self._conv_alone(x, index))
        if add is not None:
            y = y.add_(add)
        return y.relu_() if relu else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.config.input_planes
        if x.dim() != 4 or x.shape[1] != planes:
            raise ValueError(f"expected N x {planes} x H x W, got {tuple(x.shape)}")
        y = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        y = self._conv(y, 0, relu=True)
        skip = self._conv(y, 1, relu=True)
        y = skip
        index = 2
        for _ in range(self.config.blocks):
            inner = self._conv(y, index, relu=True)
            y = self._conv(inner, index + 1, add=y)
            index += 2
        y = self._conv(y, index, relu=True)
        y = self._conv(y, index + 1, add=skip)
        del skip
        y = self._conv(y, index + 2, relu=True)
        y = self._conv(y, index + 3, relu=True)
        y = self._conv(y, index + 4)[:, 0].float()
        if self.config.global_residual:
            y = y + x[:, self.config.frames // 2].float()
        return y


class ReferenceNet(nn.Module):
    """Any DBLRNet (subclasses included) run through its own forward: BN folded, channels-last,
    under autocast. The slow but general path, also the baseline that benchmarks compare with."""

    def __init__(self, model: DBLRNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = channels_last(fold_batchnorm(copy.deepcopy(model).eval()))
        self.config = model.config
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last_3d)
        device = x.device.type
        with torch.autocast(device, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return self.net(x)[:, 0].float()


LATE_LAYERS = ("l31", "l32", "l33", "l34", "l35")
_ONEDNN_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_ONEDNN_GEOMETRY = ([1, 1], [1, 1], [1, 1], 1)  # padding, stride, dilation, groups


def _conv_weights(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = conv.weight.detach()
    bias = conv.bias if conv.bias is not None else torch.zeros(weight.shape[0])
    return weight, bias.detach()


def _front_l1(model: DBLRNet) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 at every temporal position as one 2D conv over all T frames (zeros elsewhere)."""
    if model.config.arch != "3d":
        return _conv_weights(model.l1)
    weight, bias = model.l1.weight.detach(), model.l1.bias.detach()  # out, 1, taps, 3, 3
    out, _, taps, _, _ = weight.shape
    frames = model.config.frames
    positions = frames - taps + 1
    dense = weight.new_zeros(positions * out, model.config.input_planes, 3, 3)
    for p in range(positions):
        dense[p * out : (p + 1) * out, p : p + taps] = weight[:, 0]
        if model.hint is not None:  # the hint planes reach every position alike
            dense[p * out : (p + 1) * out, frames:] = model.hint.weight.detach()
    return dense, bias.repeat(positions)


def _front_l2(model: DBLRNet) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 over the positions' concatenated channels (position-major, as _front_l1 lays out)."""
    if model.config.arch != "3d":
        return _conv_weights(model.l2)
    weight = model.l2.weight.detach()  # out, C, positions, 3, 3
    return weight.permute(0, 2, 1, 3, 4).reshape(weight.shape[0], -1, 3, 3), model.l2.bias.detach()


def _frozen(t: torch.Tensor, dtype: torch.dtype, channels_last: bool = False) -> nn.Parameter:
    t = t.to(dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return nn.Parameter(t, requires_grad=False)


def _pack_onednn(weight: torch.Tensor) -> torch.Tensor:
    """Reorder a conv weight once into oneDNN's blocked layout (otherwise done every call)."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(
        weight.to_mkldnn(), [1, 1], [1, 1], [1, 1], 1, None
    )


@dataclass(frozen=True)
class TilePlan:
    """Core tile size (the frame is split evenly) and the context margin on inner sides."""

    height: int
    width: int
    margin: int

    def tiles(self, height: int, width: int) -> Iterator[tuple[slice, slice]]:
        for top in range(0, height, self.height):
            for left in range(0, width, self.width):
                yield (
                    slice(top, min(top + self.height, height)),
                    slice(left, min(left + self.width, width)),
                )

    def padded_area(self, rows: slice, cols: slice, height: int, width: int) -> int:
        """Pixels actually run for one tile: its core plus the margins inside the frame."""
        m = self.margin
        return (min(rows.stop + m, height) - max(rows.start - m, 0)) * (
            min(cols.stop + m, width) - max(cols.start - m, 0)
        )


MIN_TILE = 32
"""Smallest core tile side: below this the margins dwarf the useful work."""


def even_split(length: int, parts: int) -> int:
    """Tile length that splits ``length`` into ``parts`` nearly equal pieces, multiple of 8."""
    return int(math.ceil(length / parts / 8) * 8)


def plan_tiles(height: int, width: int, margin: int, max_pixels: int) -> TilePlan | None:
    """The grid of tiles (with margins) that fits ``max_pixels`` per tile at least total work.

    Margins are recomputed work, so among all grids whose tiles fit, the one with the smallest
    total tile area wins (fewer, squarer tiles), not simply the largest square.
    """
    if height * width <= max_pixels:
        return None
    finest = (math.ceil(height / MIN_TILE), math.ceil(width / MIN_TILE))
    best: tuple[int, TilePlan] | None = None
    for rows in range(1, finest[0] + 1):
        for cols in range(1, finest[1] + 1):
            plan = TilePlan(even_split(height, rows), even_split(width, cols), margin)
            areas = [plan.padded_area(r, c, height, width) for r, c in plan.tiles(height, width)]
            if max(areas) > max_pixels and (rows, cols) != finest:
                continue
            if best is None or sum(areas) < best[0]:
                best = (sum(areas), plan)
            break  # more columns for these rows would only add margin work
    assert best is not None  # the finest grid is always evaluated
    return best[1]


class Deblurrer(Generic[Payload]):
    """A model prepared for inference on one device and precision.

    Preparation folds BatchNorm into the convolutions, rewrites the network as plain 2D
    convolutions (:class:`InferenceNet`) stored channels-last in the compute dtype, and on CPUs
    fuses ReLUs and skips into oneDNN kernels with pre-packed weights. On CUDA, windows are
    batched and copied through pinned memory without blocking.

    ``compile`` wraps the network in ``torch.compile`` (CUDA graphs on CUDA), but only once
    ``COMPILE_AFTER_FRAMES`` frames have gone through eagerly, so a short clip never pays the
    compile time. ``threads`` sets torch's intra-op threads (default: torch's own choice, one
    per physical core).
    """

    def __init__(
        self,
        model: DBLRNet,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 0,
        tile: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        compile: bool = False,
        threads: int | None = None,
        split_at_cuts: bool = True,
    ) -> None:
        self.config = model.config
        self.split_at_cuts = split_at_cuts
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.batch_size = batch_size or (4 if self.device.type == "cuda" else 1)
        self.memory_budget = memory_budget
        if self.device.type == "cuda" and memory_budget == DEFAULT_MEMORY_BUDGET:
            total = torch.cuda.get_device_properties(self.device).total_memory
            self.memory_budget = int(CUDA_MEMORY_SHARE * total)
        self.tile = tile
        if threads:
            torch.set_num_threads(threads)
        self.model: torch.nn.Module
        if type(model).forward is DBLRNet.forward and model.config.plain_chain:
            self.model = InferenceNet(model, self.dtype).to(self.device).eval()
            self.kernels = "onednn" if self.model.use_onednn() else "aten"
        else:  # a subclass with its own forward: run it as it is
            self.model = ReferenceNet(model, self.dtype).to(self.device).eval()
            self.kernels = "reference"
        self.macs_per_pixel = model.macs_per_pixel()
        self.prepare = window_preparer(self.config)  # flow inputs, for models that take them
        self.compile = compile
        self._compiled: torch.nn.Module | None = None
        self._frames_done = 0
        self._prepare_pool: ThreadPoolExecutor | None = None

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def margin(self) -> int:
        """Context on each side of a tile: the receptive radius, rounded up to a multiple of 8."""
        return int(math.ceil(self.config.receptive_radius / 8) * 8)

    @property
    def bytes_per_pixel(self) -> float:
        """Peak memory per pixel of one window while the network runs (see the constants)."""
        return activation_bytes_per_pixel(self.config, self.dtype)

    def tile_plan(self, height: int, width: int) -> TilePlan | None:
        """Tiles for a frame of this size, or None to run whole frames.

        An explicit ``tile`` wins (tiles of at most about that side); otherwise tile only when
        one batch would exceed the memory budget, with the grid that wastes least work. A model
        whose normalisation spans its input (GroupNorm) always runs whole frames,
        whatever the budget: a tile would change its statistics, and so its output.
        """
        if not self.config.tileable:
            return None
        if self.tile:
            if max(height, width) <= self.tile:
                return None
            rows, cols = math.ceil(height / self.tile), math.ceil(width / self.tile)
            return TilePlan(even_split(height, rows), even_split(width, cols), self.margin)
        max_pixels = int(self.memory_budget / (self.batch_size * self.bytes_per_pixel))
        return plan_tiles(height, width, self.margin, max_pixels)

    def _network(self, frames: int) -> torch.nn.Module:
        """The eager network, or the compiled one once enough frames have repaid its cost."""
        self._frames_done += frames
        if not self.compile or self._frames_done < COMPILE_AFTER_FRAMES:
            return self.model
        if self._compiled is None:
            plain = copy.copy(self.model)  # shares the weights; compiles the F.conv2d path
            plain._packed = None  # type: ignore[assignment]
            if self.device.type == "cuda":
                self._compiled = torch.compile(plain, mode="reduce-overhead", dynamic=False)
            else:  # freezing: inductor pre-packs the weights and fuses like the eager path
                self._compiled = torch.compile(plain, dynamic=False, options={"freezing": True})
        return self._compiled

    @torch.inference_mode()
    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        """B x T x H x W float32 on the device -> B x H x W float32."""
        return self._network(windows.shape[0])(windows)

    def run_windows(self, windows: np.ndarray) -> np.ndarray:
        """B x T x H x W windows (float32, unit range) -> B x H x W restored centre planes.

        Models trained with motion hints or aligned neighbours get them here, from the whole
        frames (before any tiling), exactly as their training windows were prepared.
        """
        if windows.ndim != 4 or windows.shape[1] != self.window:
            raise ValueError(f"expected B x {self.window} x H x W, got {windows.shape}")
        if self.prepare is not None:
            windows = np.stack(self._prepared(windows))
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x = x.to(self.device)
        plan = self.tile_plan(*windows.shape[2:])
        y = self._forward(x) if plan is None else self._forward_tiled(x, plan)
        return self._to_host(y)

    def _prepared(self, windows: np.ndarray) -> list[np.ndarray]:
        """Each window's flow inputs, the windows of a batch in parallel threads (OpenCV's flow
        releases the GIL). On CUDA the flow runs on the host: done one window after another, it
        set the speed of aligned models there (benchmarks/RESULTS.md)."""
        assert self.prepare is not None
        if len(windows) == 1:
            return [self.prepare(windows[0])]
        if self._prepare_pool is None:
            threads = min(self.batch_size, os.cpu_count() or 1)
            self._prepare_pool = ThreadPoolExecutor(threads, thread_name_prefix="deblur-flow")
        return list(self._prepare_pool.map(self.prepare, windows))

    def _to_host(self, y: torch.Tensor) -> np.ndarray:
        if self.device.type == "cuda":
            host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            host.copy_(y, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            return host.numpy()
        return y.cpu().numpy()

    def _forward_tiled(self, x: torch.Tensor, plan: TilePlan) -> torch.Tensor:
        """Run overlapping tiles and keep each tile's core; equals the untiled result because
        the margin covers the receptive field."""
        _, _, height, width = x.shape
        out = torch.empty((x.shape[0], height, width), dtype=torch.float32, device=x.device)
        m = plan.margin
        for rows, cols in plan.tiles(height, width):
            t0, l0 = max(rows.start - m, 0), max(cols.start - m, 0)
            b1, r1 = min(rows.stop + m, height), min(cols.stop + m, width)
            y = self._forward(x[:, :, t0:b1, l0:r1])
            out[:, rows, cols] = y[
                :, rows.start - t0 : rows.stop - t0, cols.start - l0 : cols.stop - l0
            ]
        return out

    def stream(
        self, frames: Iterable[tuple[Payload, np.ndarray]], cuts: CutDetector | None = None
    ) -> Iterator[tuple[Payload, np.ndarray]]:
        """Deblur a stream of (payload, luma plane) pairs, yielding them in order.

        Memory is bounded: only the last ``window`` planes and one batch are held, whatever the
        length of the stream. Edge frames are repeated, so a stream of n frames gives n outputs
        (n = 1..4 included). With ``split_at_cuts``, a scene cut is treated like an edge: no
        window mixes frames from both sides of it. ``cuts`` replaces the fresh detector, for a
        stream that starts mid-video (a time-split part) and must see the whole video's cuts.
        """
        radius = self.window // 2
        planes: dict[int, np.ndarray] = {}
        payloads: dict[int, Payload] = {}
        scene_starts: set[int] = set()
        detector = CutDetector() if cuts is None else cuts
        batch: list[int] = []
        count = 0

        def window_of(i: int, last: int) -> np.ndarray:
            first, final = max(i - radius, 0), min(i + radius, last)
            for j in range(i, i - radius, -1):  # the nearest cut at or before i ...
                if j in scene_starts:
                    first = max(first, j)
                    break
            for j in range(i + 1, i + radius + 1):  # ... and after it bound the window
                if j in scene_starts:
                    final = min(final, j - 1)
                    break
            indices = range(i - radius, i + radius + 1)
            return np.stack([planes[min(max(j, first), final)] for j in indices])

        def flush(last: int) -> Iterator[tuple[Payload, np.ndarray]]:
            restored = self.run_windows(np.stack([window_of(i, last) for i in batch]))
            for i, plane in zip(batch, restored, strict=True):
                yield payloads.pop(i), plane
                # Frames before i - radius + 1 are needed by no later window.
                planes.pop(i - radius, None)
                scene_starts.discard(i - radius)
            batch.clear()

        for payload, plane in frames:
            planes[count], payloads[count] = plane, payload
            if self.split_at_cuts and detector.starts_scene(plane):
                scene_starts.add(count)
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
