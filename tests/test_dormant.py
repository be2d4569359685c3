"""Dormant-channel recycling: found exactly, the output unchanged, the channel alive again."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from deblur_cli.dormant import dormant_channels, recycle_dormant
from deblur_cli.models import TINY, DBLRNet

WIDE = replace(TINY, width=16, head_width=16, blocks=2)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_recycling_keeps_the_output_and_wakes_the_dead_channels(norm: str) -> None:
    torch.manual_seed(0)
    model = DBLRNet(replace(WIDE, norm=norm)).eval()
    with torch.no_grad():  # kill channels 2 and 5 of the first block and channel 7 of L34
        for module, channels in ((model.blocks[0].bn1, [2, 5]), (model.l34, [7])):
            if isinstance(module, torch.nn.Identity):  # no BatchNorm: kill at the conv
                module = model.blocks[0].conv1
            module.bias[channels] = -1e3
        model.l35.weight.normal_(std=0.1)  # make L34's channels count in the output
    windows = [torch.rand(2, 1, 5, 24, 24) for _ in range(3)]
    dead = dormant_channels(model, windows)
    assert {2, 5} <= set(dead["block0"].tolist()) and 7 in dead["l34"].tolist()
    before = model(windows[0])
    counts = recycle_dormant(model, windows)
    assert counts == {name: channels.numel() for name, channels in dead.items()}
    assert torch.allclose(model(windows[0]), before, atol=1e-6)
    assert all(c.numel() == 0 for c in dormant_channels(model, windows).values())
    assert float(model.blocks[0].conv2.weight.detach()[:, [2, 5]].abs().max()) == 0.0


@pytest.mark.parametrize("norm", ["group", "channel"])
def test_recycling_refuses_norms_that_share_statistics_across_channels(norm: str) -> None:
    with pytest.raises(ValueError):
        recycle_dormant(DBLRNet(replace(WIDE, norm=norm)), [torch.rand(1, 1, 5, 8, 8)])
