"""Would a coarser body learn varied blur faster? A check of gap item 1 in the model card (issue 4).

The paper's DBLRNet runs all its body convolutions (L3..L32) at full resolution, so one output
pixel sees ~35 px each side, and a 20-30 px blur fills most of that. This check changes one
thing: the body runs at 1/stride resolution, behind a stride-``stride`` 3x3 conv, and comes back
through a 3x3 conv and a pixel shuffle before the long skip. Same blocks and widths, so ~stride^2
fewer body FLOPs and ~stride times the reach. It trains through the real ``deblur train`` (same
data, recipe, validation and metrics.jsonl) with only the generator swapped, so its curve can be
set against a plain run of the same command. The variant is an experiment, not a shipped
architecture: its exported files hold layers that ``load_model`` does not rebuild.

    python training/coarse_body_check.py --stride 2 -- train --preset fast --out runs/x ...
    deblur train --preset fast --out runs/baseline ...      # the same options, stride 1
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from deblur_cli import train as train_module
from deblur_cli.cli import main as cli
from deblur_cli.engine import channels_last
from deblur_cli.models.dblrnet import DBLRNet, DBLRNetConfig, conv3x3


class CoarseBodyNet(DBLRNet):
    """DBLRNet whose residual body (L3..L32) runs at 1/stride resolution."""

    def __init__(self, config: DBLRNetConfig, stride: int) -> None:
        if not config.global_residual:
            raise ValueError("the coarse-body check keeps the global residual of the presets")
        super().__init__(config)
        self.stride = stride
        self.down = nn.Conv2d(config.width, config.width, 3, stride=stride, padding=1)
        self.up = conv3x3(config.width, config.width * stride**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.front(x)
        h, w = skip.shape[-2:]
        y = self.blocks(F.relu(self.down(skip)))
        y = F.relu(self.bn31(self.l31(y)))
        y = self.bn32(self.l32(y))
        y = F.pixel_shuffle(self.up(y), self.stride)[..., :h, :w] + skip
        y = self.l35(F.relu(self.l34(F.relu(self.l33(y)))))
        return y.float() + x[:, :, self.config.frames // 2].float()


def use_coarse_body(stride: int) -> None:
    """Make the Trainer build a CoarseBodyNet from the command's preset (from scratch only)."""

    def build(trainer: train_module.Trainer) -> DBLRNet:
        if trainer.options.init:
            raise SystemExit("the coarse-body check trains from scratch: drop --init")
        return channels_last(CoarseBodyNet(trainer.options.model_config(), stride).train())

    train_module.Trainer._build_generator = build  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "--stride" or sys.argv[3] != "--":
        raise SystemExit(__doc__)
    use_coarse_body(int(sys.argv[2]))
    cli(sys.argv[4:])
