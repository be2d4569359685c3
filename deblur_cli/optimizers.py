"""Training optimisers: Adam, AdamW, and Muon for the hidden convolutions.

Muon (Jordan et al. 2024; "Muon is scalable", Liu et al. 2025) replaces each hidden layer's
momentum update by its nearest semi-orthogonal matrix, so that every direction of the layer's
filters moves at the same rate instead of the few that dominate the gradient. On convnets it cut
the steps to a given accuracy (the CIFAR-10 speed runs); the issue-14 question is whether it
does the same per CPU-minute here. A conv filter bank (out, in, kh, kw) is orthogonalised as the
(out, in * kh * kw) matrix it multiplies the unfolded input with. The layers that touch the
planes (the first, and the last, which has one output channel) and every bias and norm scale
stay on AdamW, as in the reference implementation. The update is scaled to AdamW's typical RMS
(0.2 * sqrt(max(rows, cols)), Liu et al.), so one learning rate and schedule drive both groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "muon")
# Quintic Newton-Schulz coefficients of the reference implementation: five iterations take the
# singular values of a normalised matrix to roughly [0.7, 1.2], which is all the update needs.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 5
# Names of the layers that stay on AdamW: the first (reads the planes, one input channel), the
# motion hints' input conv, and L35 (one output channel: its "orthogonal" update would be the
# gradient's sign pattern scaled up).
PLANE_LAYERS = ("l1.", "hint.", "l35.")


def orthogonalise(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """The nearest semi-orthogonal matrix (approximately: U V^T of the SVD), by Newton-Schulz.

    Computed in fp32: the matrices are small next to a training step, and bf16 is emulated (and
    ~100x slower) on CPUs without native bf16."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.float()
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon for the groups marked ``muon=True``, AdamW for the rest, under one learning rate.

    One optimiser object, so that the schedule, the resume file and ``param_groups`` work as
    they do for AdamW."""

    def __init__(
        self,
        groups: list[dict],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "betas": betas, "eps": eps, "muon": False}  # fmt: skip
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                param.mul_(1 - group["lr"] * group["weight_decay"])
                if group["muon"]:
                    self._muon_update(param, group)
                else:
                    self._adamw_update(param, group)
        return loss

    def _muon_update(self, param: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(param)
        buffer = state["momentum"]
        buffer.lerp_(param.grad, 1 - group["momentum"])
        nesterov = param.grad.lerp(buffer, group["momentum"])
        rows = param.shape[0]
        update = orthogonalise(nesterov.reshape(rows, -1))
        scale = 0.2 * math.sqrt(max(update.shape))
        param.add_(update.view_as(param).to(param.dtype), alpha=-group["lr"] * scale)

    def _adamw_update(self, param: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].lerp_(param.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
        first = 1 - beta1 ** state["step"]
        second = 1 - beta2 ** state["step"]
        denominator = (state["exp_avg_sq"] / second).sqrt_().add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / first)


def muon_groups(model: nn.Module) -> list[dict]:
    """The hidden convolutions' weights (Muon) and everything else (AdamW)."""
    hidden, rest = [], []
    for name, param in model.named_parameters():
        plane_layer = name.startswith(PLANE_LAYERS)
        (hidden if param.ndim >= 2 and not plane_layer else rest).append(param)
    return [{"params": hidden, "muon": True}, {"params": rest, "muon": False}]


def build_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimiser ``--optimizer`` names, over ``model`` (Muon sorts its layers by name)."""
    if name == "muon":
        return Muon(muon_groups(model), lr=lr, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
