"""DBLRNet, the generator of Zhang et al. (TIP 2018), Table I, and its ablation variants.

The network maps a window of ``frames`` consecutive luma planes (N x 1 x T x H x W, values in
[0, 1]) to the restored centre plane (N x 1 x H x W). It never changes the spatial size: every
convolution is 3x3 with stride 1 and padding 1.

The two 3D layers (L1, L2) keep their weights in the paper's 3D shape (out, in, t, 3, 3) but are
computed as 2D convolutions over temporally unfolded inputs. That is mathematically identical to a
Conv3d without temporal padding and runs on oneDNN's fast 2D path (bf16, channels-last) on CPUs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("3d", "multi", "single")
NORMS = ("batch", "none", "group", "channel")
NORM_GROUPS = 8  # GroupNorm groups (Wu & He use 32; the fast preset is only 32 wide)
BODIES = ("plain", "unet")
PREDICTIONS = ("pixels", "kernels")  # what L35 predicts
KERNEL_SIZE = 5  # taps per side of the per-pixel filters of the "kernels" prediction
DILATIONS = (1, 2, 4)  # the dilated body's blocks cycle through these (HDC: no gridding)
HINT_PLANES = 2  # motion hints: the centre frame's motion (dx, dy), see deblur_cli/motion.py


@dataclass(frozen=True)
class DBLRNetConfig:
    """Everything needed to rebuild a network; stored in every weight file's metadata."""

    arch: str = "3d"
    frames: int = 5
    first_width: int = 16
    width: int = 64
    blocks: int = 14
    head_width: int = 256
    global_residual: bool = True
    # Deviations from the paper, recorded in the weight file (defaults = the paper's design):
    # "none" drops BatchNorm (convs get biases); with small, mixed batches BN's statistics are
    # noisy and it forbids the high learning rates that make the network learn fast on a CPU.
    # "group": GroupNorm (NORM_GROUPS groups), statistics per sample, so batch size does not
    # matter (the issue-14 normalisation arm; today's dblrnet-fast): its statistics span the
    # whole input, so the engine runs it unfused after its conv, on whole frames only (no tiles).
    # "channel": LayerNorm over the channels of each pixel (NAFNet's LayerNorm2d): statistics
    # per pixel, so tiles stay exact; unfused after its conv like GroupNorm.
    norm: str = "batch"
    # Two extra input planes: the centre frame's motion, measured by classical optical flow
    # between the blurry frames themselves (motion.py). Blur follows the motion, so this turns
    # blind deblurring into a nearly non-blind problem.
    motion_hints: bool = False
    # Neighbours warped onto the centre frame by optical flow before the network sees them.
    align: bool = False
    # "unet": the residual blocks run at 1/2 and 1/4 resolution with 2x and 4x the channels
    # (same multiply-adds per block, 4x the reach), joined back by pixel shuffle; its blocks
    # take the config's norm (not BatchNorm). Experimental: it runs on the engine's general
    # path, and tiled output is exact only on tile offsets that are multiples of 4.
    body: str = "plain"
    # What L35 predicts. "kernels": not the correction itself but a KERNEL_SIZE^2 filter per
    # pixel and frame (L35 is then 1x1); the correction is those filters applied to the
    # (aligned) input frames (kernel prediction, as KPN and STFAN's filter-adaptive layers). A
    # sharp aligned neighbour can be copied in and the centre sharpened by a local filter: an
    # easier map to learn than the pixels. Experimental: it runs on the engine's general path.
    predict: str = "pixels"
    # Channel attention at the end of every residual branch (NAFNet's simplified channel
    # attention: the branch times a 1x1 conv of its mean over the frame). GroupNorm's gain is
    # its per-frame statistics (EXPERIMENTS.md rows 72, 79); this lets each block weigh its
    # channels by what the whole frame holds. Experimental: the engine's general path, whole
    # frames only (the mean spans the input).
    attention: bool = False
    # Residual blocks whose convs are dilated, cycling 1, 2, 4 block by block (hybrid dilated
    # convolution, Wang et al. 2018: the cycle leaves no gaps in the reach). The same
    # multiply-adds, nearly twice the reach: blur at 720p spans tens of pixels and the plain fast
    # body sees 19 on each side. Experimental: it runs on the engine's general path.
    dilated: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.body not in BODIES:
            raise ValueError(f"body must be one of {BODIES}, got {self.body!r}")
        if self.predict not in PREDICTIONS:
            raise ValueError(f"predict must be one of {PREDICTIONS}, got {self.predict!r}")
        if self.norm == "group" and self.width % NORM_GROUPS:
            raise ValueError(f"norm='group' needs a width divisible by {NORM_GROUPS}")
        if self.body == "unet" and (self.norm == "batch" or self.blocks < 3):
            raise ValueError("the unet body needs a norm other than 'batch' and at least 3 blocks")
        if (self.attention or self.dilated) and self.body != "plain":
            raise ValueError("channel attention and dilation need the plain body")
        if (self.motion_hints or self.align) and self.frames < 3:
            raise ValueError("motion hints and alignment need neighbour frames (frames >= 3)")
        if self.frames % 2 == 0 or not 1 <= self.frames <= 11:
            raise ValueError(f"frames must be odd and in 1..11, got {self.frames}")
        if self.arch == "3d" and self.frames < 3:
            raise ValueError("the 3d arch needs at least 3 frames")
        if self.arch == "single" and self.frames != 1:
            raise ValueError("the single arch takes exactly 1 frame")

    @property
    def window(self) -> int:
        """Frames the caller must supply per output frame."""
        return self.frames

    @property
    def input_planes(self) -> int:
        """Planes the network takes per output frame: the window, then the motion hints."""
        return self.frames + (HINT_PLANES if self.motion_hints else 0)

    @property
    def conv_layers(self) -> int:
        """Number of stacked 3x3 convolutions: sets the receptive field."""
        return 2 + 2 * self.blocks + 2 + 3

    @property
    def output_planes(self) -> int:
        """Channels of L35: the correction, or one filter per frame and pixel."""
        return self.frames * KERNEL_SIZE**2 if self.predict == "kernels" else 1

    @property
    def filter_planes(self) -> int:
        """Extra planes live at the output when filters are predicted: the filters themselves
        and one frame's unfolded patches (``apply_kernels``); none for pixels."""
        return self.output_planes + KERNEL_SIZE**2 if self.predict == "kernels" else 0

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that influence one output pixel (one per 3x3 conv at full
        resolution, two at half, four at quarter). The predicted filters reach only 2 pixels
        into the frames, well inside what the convolutions that predict them see."""
        if self.body == "plain":
            return self.conv_layers + 2 * sum(d - 1 for d in self.block_dilations)
        outer, inner = unet_split(self.blocks)
        body = 1 + 2 * 2 * outer + 2 + 4 * 2 * inner + 4 + 2 * 2 * outer + 2
        return 2 + body + 2 + 3 + 4  # + 4: the phase of the stride-4 grid

    @property
    def block_dilations(self) -> tuple[int, ...]:
        """Dilation of both convs of each residual block of the plain body."""
        cycle = DILATIONS if self.dilated else (1,)
        return tuple(cycle[i % len(cycle)] for i in range(self.blocks))

    @property
    def plain_chain(self) -> bool:
        """Whether the network, BN folded, is a plain chain of convolutions and ReLUs (and
        unfoldable norms): what the engine's fast path (InferenceNet) computes. The experimental
        body and output are not."""
        return (
            self.body == "plain"
            and self.predict == "pixels"
            and not self.attention
            and not self.dilated
        )

    @property
    def norm_couples_channels(self) -> bool:
        """Whether each norm's statistics span several channels (GroupNorm, ChannelNorm), so
        that one channel cannot change without moving the others."""
        return self.norm in ("group", "channel")

    @property
    def tileable(self) -> bool:
        """Whether a tile (with its context margin) is computed as the same pixels of the whole
        frame. Not under GroupNorm or channel attention: their statistics span the whole
        input."""
        return self.norm != "group" and not self.attention

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DBLRNetConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def unet_split(blocks: int) -> tuple[int, int]:
    """Blocks at half resolution (on each side) and at quarter resolution of the unet body."""
    outer = blocks // 3
    return outer, blocks - 2 * outer


PAPER = DBLRNetConfig()
"""The paper's DBLRNet (3D, 5 frames), plus our global residual (see MODEL_CARD.md)."""

FAST = DBLRNetConfig(first_width=8, width=32, blocks=6, head_width=32)
"""Same design, ~12x fewer FLOPs: the CPU preset ``dblrnet-fast``. The head is 32 wide, not 64:
32-channel convolutions run at a lower share of the CPU's peak than 64-channel ones, so the
FLOP cut has to be larger than the 8x speed-up it buys (measured in benchmarks/RESULTS.md)."""

TINY = DBLRNetConfig(first_width=4, width=8, blocks=1, head_width=8)
"""For tests only: runs in milliseconds."""


def conv3x3(cin: int, cout: int, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size (padding = dilation)."""
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel, with a per-channel scale and shift (NAFNet's
    LayerNorm2d). Its statistics are one pixel's, so a tile computes what the whole frame does;
    GroupNorm's span the whole input."""

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N, H, W, C is a free view of a channels-last tensor: no copy on the engine's path.
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def norm_layer(norm: str, width: int) -> nn.Module:
    """BatchNorm as in the paper, GroupNorm, the per-pixel ChannelNorm, or nothing (the conv
    before it then carries a bias)."""
    if norm == "group":
        return nn.GroupNorm(NORM_GROUPS, width)
    if norm == "channel":
        return ChannelNorm(width)
    return nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()


class TemporalConv(nn.Module):
    """A 3x3xt convolution with no temporal padding, computed as 2D convolutions.

    Input N x C x T x H x W; output N x out x (T - t + 1) x H x W. The weight keeps the Conv3d
    layout (out, C, t, 3, 3) so the layer is the paper's 3D layer parameter for parameter.
    """

    def __init__(self, cin: int, cout: int, taps: int) -> None:
        super().__init__()
        reference = nn.Conv3d(cin, cout, (taps, 3, 3), padding=(0, 1, 1))
        self.taps = taps
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        positions = t - self.taps + 1
        # (N, C, T, H, W) -> (N * positions, C * taps, H, W): each temporal position is one sample.
        windows = x.unfold(2, self.taps, 1)  # N, C, positions, H, W, taps
        windows = windows.permute(0, 2, 1, 5, 3, 4).reshape(n * positions, c * self.taps, h, w)
        weight2d = self.weight.reshape(self.weight.shape[0], c * self.taps, 3, 3)
        out = F.conv2d(windows, weight2d, self.bias, padding=1)
        return out.reshape(n, positions, -1, h, w).transpose(1, 2)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN with an identity skip (L3..L30); optionally channel attention at
    the end of the branch (DBLRNetConfig.attention)."""

    def __init__(
        self, width: int, norm: str = "batch", attention: bool = False, dilation: int = 1
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv3x3(width, width, bias=bias, dilation=dilation)
        self.bn1 = norm_layer(norm, width)
        self.conv2 = conv3x3(width, width, bias=bias, dilation=dilation)
        self.bn2 = norm_layer(norm, width)
        self.attention = nn.Conv2d(width, width, 1) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.attention is not None:
            y = y * self.attention(y.mean((2, 3), keepdim=True))
        return x + y


class UShapedBody(nn.Module):
    """The residual body at 1/2 and 1/4 resolution: strided convs down, pixel shuffle up, with
    a skip at each level. Each block costs what a full-resolution block of ``width`` costs
    (2x channels at 1/4 the pixels), but sees 2x or 4x as far: blur is long-range. The blocks
    take ``norm`` (any but "batch"); the resampling convs stay plain."""

    def __init__(self, width: int, blocks: int, norm: str = "none") -> None:
        super().__init__()
        outer, inner = unet_split(blocks)

        def stage(channels: int, count: int) -> nn.Sequential:
            return nn.Sequential(*(ResidualBlock(channels, norm) for _ in range(count)))

        self.down1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.enc1 = stage(2 * width, outer)
        self.down2 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1)
        self.mid = stage(4 * width, inner)
        self.up2 = conv3x3(4 * width, 8 * width)  # -> 2 * width after pixel shuffle
        self.dec1 = stage(2 * width, outer)
        self.up1 = conv3x3(2 * width, 4 * width)  # -> width after pixel shuffle
        # The way back up starts at zero, so the body starts as the identity and the coarse
        # levels join in as they learn: with GroupNorm in the blocks, their output (unit scale
        # per block) otherwise swamps the full-resolution features at the skip, and the head
        # never learns (session 13: output = input after 3,600 steps).
        for up in (self.up2, self.up1):
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % 4, -width % 4
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        level1 = self.enc1(F.relu(self.down1(padded)))
        y = self.mid(F.relu(self.down2(level1)))
        y = self.dec1(level1 + F.pixel_shuffle(self.up2(y), 2))
        y = padded + F.pixel_shuffle(self.up1(y), 2)
        return y[..., :height, :width]

    def macs_per_pixel(self, width: int, blocks: int) -> int:
        outer, inner = unet_split(blocks)
        half, quarter = 9 * (2 * width) ** 2 // 4, 9 * (4 * width) ** 2 // 16
        resample = 9 * width * 2 * width // 4 + 9 * 2 * width * 4 * width // 16
        resample += 9 * 4 * width * 8 * width // 16 + 9 * 2 * width * 4 * width // 4
        return 2 * outer * 2 * half + 2 * inner * quarter + resample


class DBLRNet(nn.Module):
    """The generator: temporal front end (L1, L2), 14 residual blocks, L31..L35."""

    def __init__(self, config: DBLRNetConfig = PAPER) -> None:
        super().__init__()
        self.config = config
        c = config
        hints = c.input_planes - c.frames
        if c.arch == "3d":
            self.l1 = TemporalConv(1, c.first_width, 3)
            self.l2 = TemporalConv(c.first_width, c.width, c.frames - 2)
            # Motion hints join L1 at every temporal position (one 2D conv, broadcast over time).
            self.hint = conv3x3(hints, c.first_width, bias=False) if hints else None
        else:  # "multi" stacks the frames (and hints) as channels, "single" sees one frame
            self.l1 = conv3x3(c.input_planes, c.first_width)
            self.l2 = conv3x3(c.first_width, c.width)
            self.hint = None
        self.blocks: nn.Module
        if c.body == "unet":
            self.blocks = UShapedBody(c.width, c.blocks, c.norm)
        else:
            self.blocks = nn.Sequential(
                *(ResidualBlock(c.width, c.norm, c.attention, d) for d in c.block_dilations)
            )
        bias = c.norm == "none"
        self.l31 = conv3x3(c.width, c.width, bias=bias)
        self.bn31 = norm_layer(c.norm, c.width)
        self.l32 = conv3x3(c.width, c.width, bias=bias)
        self.bn32 = norm_layer(c.norm, c.width)
        self.l33 = conv3x3(c.width, c.head_width)
        self.l34 = conv3x3(c.head_width, c.head_width)
        if c.predict == "kernels":  # 1x1: a 3x3 to 125 planes would cost a fifth more
            self.l35: nn.Conv2d = nn.Conv2d(c.head_width, c.output_planes, 1)
        else:
            self.l35 = conv3x3(c.head_width, 1)
        # Start close to "output = input centre" when the global residual is on.
        if c.global_residual:
            nn.init.normal_(self.l35.weight, std=1e-3)
            nn.init.zeros_(self.l35.bias)

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """L1 and L2: from N x 1 x P x H x W (P = input planes) to N x width x H x W."""
        if self.config.arch == "3d":
            frames = self.config.frames
            y = self.l1(x[:, :, :frames])
            if self.hint is not None:
                y = y + self.hint(x[:, 0, frames:]).unsqueeze(2)
            return F.relu(self.l2(F.relu(y))).squeeze(2)
        y = F.relu(self.l1(x[:, 0]))
        return F.relu(self.l2(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.config.input_planes
        if x.dim() != 5 or x.shape[1] != 1 or x.shape[2] != planes:
            raise ValueError(f"expected N x 1 x {planes} x H x W, got {tuple(x.shape)}")
        skip = self.front(x)
        y = self.blocks(skip)
        y = F.relu(self.bn31(self.l31(y)))
        y = self.bn32(self.l32(y)) + skip
        y = F.relu(self.l33(y))
        y = F.relu(self.l34(y))
        y = self.l35(y)
        if self.config.predict == "kernels":
            y = apply_kernels(y.float(), x[:, 0, : self.config.frames].float())
        if self.config.global_residual:
            # Added in fp32: under bf16 autocast the correction is small, the centre is not.
            y = y.float() + x[:, :, self.config.frames // 2].float()
        return y

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel (all layers are per-pixel convolutions)."""
        c = self.config
        if c.arch == "3d":
            front = (c.frames - 2) * 9 * 3 * c.first_width + 9 * (
                c.frames - 2
            ) * c.first_width * c.width
        else:
            front = 9 * c.input_planes * c.first_width + 9 * c.first_width * c.width
        if c.arch == "3d" and c.motion_hints:
            front += 9 * (c.input_planes - c.frames) * c.first_width
        body = (2 * c.blocks + 2) * 9 * c.width * c.width
        if isinstance(self.blocks, UShapedBody):
            body = 2 * 9 * c.width * c.width + self.blocks.macs_per_pixel(c.width, c.blocks)
        head = 9 * c.width * c.head_width + 9 * c.head_width**2 + 9 * c.head_width
        if c.predict == "kernels":  # the 1x1 L35, then one multiply-add per tap and frame
            head += c.head_width * c.output_planes - 9 * c.head_width + c.output_planes
        return front + body + head


def apply_kernels(kernels: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per-pixel filters applied to the frames and summed: N x 1 x H x W.

    ``kernels`` is N x (T * K * K) x H x W (frame-major), ``frames`` N x T x H x W. Frames are
    padded by replication, so a border pixel is not darkened by zeros. One frame at a time:
    the unfolded patches of all frames at once would need T * K * K planes of memory.
    """
    taps = KERNEL_SIZE**2
    pad = KERNEL_SIZE // 2
    n, count, height, width = frames.shape
    out = frames.new_zeros(n, 1, height, width)
    for t in range(count):
        padded = F.pad(frames[:, t : t + 1], (pad, pad, pad, pad), mode="replicate")
        patches = F.unfold(padded, KERNEL_SIZE).view(n, taps, height, width)
        weights = kernels[:, t * taps : (t + 1) * taps]
        out = out + (weights * patches).sum(1, keepdim=True)
    return out


def fold_batchnorm(model: DBLRNet) -> DBLRNet:
    """Fold every eval-mode BatchNorm into the conv before it, in place; BN becomes identity.

    Inference then runs one fused conv instead of conv + normalisation: fewer memory passes.
    Exact in fp32 up to rounding.
    """
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    pairs = [(b.conv1, "bn1", b) for b in blocks] + [(b.conv2, "bn2", b) for b in blocks]
    pairs += [(model.l31, "bn31", model), (model.l32, "bn32", model)]
    for conv, bn_name, owner in pairs:
        bn = getattr(owner, bn_name)
        if not isinstance(bn, nn.BatchNorm2d):  # nothing to fold, or GroupNorm: not foldable
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        with torch.no_grad():
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is None:
                conv.bias = nn.Parameter(bias.clone())
            else:
                conv.bias.copy_(conv.bias * scale + bias)
        setattr(owner, bn_name, nn.Identity())
    return model
