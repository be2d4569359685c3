"""Muon: orthogonal updates for the hidden convolutions, exact AdamW for the rest, resumable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_train import options

from deblur_cli.models import FAST, DBLRNet
from deblur_cli.optimizers import Muon, muon_groups, orthogonalise
from deblur_cli.train import Trainer


def test_orthogonalise_flattens_the_spectrum_of_wide_and_tall_matrices() -> None:
    torch.manual_seed(0)
    # A nearly rank-one gradient: one direction dominates by 100x, as in a real layer's.
    for shape in ((32, 288), (288, 32)):
        dominant = torch.randn(shape[0], 1) @ torch.randn(1, shape[1])
        matrix = 100 * dominant + torch.randn(shape)
        values = torch.linalg.svdvals(orthogonalise(matrix))
        assert orthogonalise(matrix).shape == shape
        assert values.min() > 0.5 and values.max() < 1.3, values


def test_the_groups_keep_the_planes_layers_biases_and_norms_on_adamw() -> None:
    model = DBLRNet(replace(FAST, norm="group", align=True))
    hidden, rest = muon_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    hidden_names = {names[id(p)] for p in hidden["params"]}
    assert hidden["muon"] and not rest["muon"]
    assert "blocks.0.conv1.weight" in hidden_names and "l2.weight" in hidden_names
    assert "l1.weight" not in hidden_names and "l35.weight" not in hidden_names
    assert all(
        p.ndim == 1 for p in rest["params"] if names[id(p)] not in ("l1.weight", "l35.weight")
    )
    assert len(hidden["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_the_adamw_group_steps_exactly_as_torch_adamw() -> None:
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    muon = Muon([{"params": list(ours.parameters()), "muon": False}], lr=1e-2, weight_decay=0.1)
    adamw = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(20):
        x = torch.randn(8, 4)
        for model, optimizer in ((ours, muon), (theirs, adamw)):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for mine, reference in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)


def test_a_muon_step_moves_every_direction_of_a_conv_filter_bank_alike() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 3, bias=False)
    before = conv.weight.detach().clone()
    optimizer = Muon([{"params": [conv.weight], "muon": True}], lr=1e-3, momentum=0.0)
    # A gradient with one dominant direction, as a plain gradient step would follow.
    direction = torch.randn(16, 1) @ torch.randn(1, 16 * 9)
    conv.weight.grad = (100 * direction + torch.randn(16, 16 * 9)).view_as(conv.weight)
    optimizer.step()
    step = (conv.weight.detach() - before).reshape(16, -1)
    values = torch.linalg.svdvals(step)
    assert values.max() / values.min() < 2.5  # the raw gradient's ratio is in the hundreds
    # Scaled to AdamW's typical update RMS: 0.2 * lr per entry, about.
    rms = step.pow(2).mean().sqrt().item()
    assert 0.1e-3 < rms < 0.3e-3, rms


def test_training_with_muon_learns_and_resumes_bitwise(dataset: Path, tmp_path: Path) -> None:
    settings = dict(optimizer="muon", batch=8, lr=3e-3, global_residual=False)
    trainer = Trainer(options(dataset, tmp_path / "a", steps=20, **settings))
    blurry, sharp = next(iter(trainer.batches()))

    def loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(trainer.generator(blurry), sharp).item()

    before = loss()
    trainer.run()
    assert loss() < 0.9 * before
    Trainer(options(dataset, tmp_path / "b", steps=10, **settings)).run()
    Trainer(options(dataset, tmp_path / "b", steps=20, **settings), resume=True).run()
    a = load_file(str(tmp_path / "a" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
