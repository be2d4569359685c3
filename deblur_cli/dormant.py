"""Dormant ReLU channels: find them and give them back to training (ReDo; Sokar et al., "The
Dormant Neuron Phenomenon in Deep Reinforcement Learning", ICML 2023).

A channel whose ReLU never fires on the training windows gets no gradient, so it never comes
back: its share of the network is lost for good. Without normalisation, a high learning rate
kills channels this way early in training (``EXPERIMENTS.md`` rows 43 and 65), and the shipped
files carry many: about half of the paper model's first two blocks and of its L34.

Recycling re-initialises a dormant channel's incoming weights and zeroes its outgoing ones. The
network's output does not change, but the channel fires again, so its outgoing weights get a
gradient and training can put it back to use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from deblur_cli.models.dblrnet import DBLRNet, ResidualBlock


def relu_layers(model: DBLRNet) -> dict[str, tuple[nn.Conv2d, nn.Module, nn.Conv2d]]:
    """Every ReLU whose channels can be recycled alone: name -> (the conv that feeds it, the
    normalisation between them, the conv that reads it).

    L1 and L2 are left out: L2 feeds the residual stream, which every later layer reads."""
    blocks = [b for b in model.blocks.modules() if isinstance(b, ResidualBlock)]
    layers = {f"block{i}": (b.conv1, b.bn1, b.conv2) for i, b in enumerate(blocks)}
    layers["l31"] = (model.l31, model.bn31, model.l32)
    layers["l33"] = (model.l33, nn.Identity(), model.l34)
    layers["l34"] = (model.l34, nn.Identity(), model.l35)
    return layers


def dormant_channels(model: DBLRNet, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per layer, the indices of the channels whose ReLU is zero on every pixel of ``batches``
    (network inputs, N x 1 x P x H x W), the network in eval mode."""
    layers = relu_layers(model)
    peaks: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            peak = output.detach().float().amax(dim=(0, 2, 3))
            peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak

        return hook

    # The ReLU's input: the normalisation's output where there is one, else the conv's.
    watched = {name: conv if isinstance(norm, nn.Identity) else norm
               for name, (conv, norm, _) in layers.items()}  # fmt: skip
    handles = [module.register_forward_hook(record(name)) for name, module in watched.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: torch.nonzero(peak <= 0).flatten() for name, peak in peaks.items()}


def recycle_dormant(
    model: DBLRNet, batches: Iterable[torch.Tensor], seed: int = 0, rounds: int = 4
) -> dict[str, int]:
    """Re-initialise the dormant channels' incoming weights (PyTorch's default conv init) and
    zero their outgoing ones; returns how many channels each layer had dormant.

    A fresh channel can be silent too (a draw of mostly negative weights over non-negative
    inputs), so the channels still dormant are drawn again, up to ``rounds`` times. The output
    is unchanged throughout. GroupNorm and ChannelNorm share statistics across channels, so one
    cannot be changed alone there: models with them are refused."""
    if model.config.norm_couples_channels:
        raise ValueError("recycling needs channels that can change alone: not under a norm")
    batches = list(batches)
    found = dormant_channels(model, batches)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        dormant = found
        for _ in range(rounds):
            if all(channels.numel() == 0 for channels in dormant.values()):
                break
            for name, layer in relu_layers(model).items():
                reinitialise(*layer, dormant[name])
            dormant = dormant_channels(model, batches)
    finally:
        torch.random.set_rng_state(generator_state)
    return {name: int(channels.numel()) for name, channels in found.items()}


@torch.no_grad()
def reinitialise(
    conv: nn.Conv2d, norm: nn.Module, reader: nn.Conv2d, channels: torch.Tensor
) -> None:
    """Fresh incoming weights for ``channels`` of ``conv``, their outgoing weights in ``reader``
    zeroed (so the output does not change)."""
    if channels.numel() == 0:
        return
    fresh = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size)
    conv.weight[channels] = fresh.weight[channels].to(conv.weight.dtype)
    if conv.bias is not None:
        conv.bias[channels] = fresh.bias[channels].to(conv.bias.dtype)
    if isinstance(norm, nn.BatchNorm2d):  # the new channel's statistics are unknown
        norm.running_mean[channels] = 0.0
        norm.running_var[channels] = 1.0
        norm.weight[channels] = 1.0
        norm.bias[channels] = 0.0
    reader.weight[:, channels] = 0.0
