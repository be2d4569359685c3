"""Motion inputs (DIS flow hints, aligned neighbours) and the BN-free variant, end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deblur_cli.datasets import WindowDataset, find_sequences
from deblur_cli.engine import Deblurrer
from deblur_cli.models import TINY, DBLRNet, DBLRNetConfig
from deblur_cli.motion import HINT_SCALE, aligned, motion_hints, prepare_window, window_preparer
from deblur_cli.train import Trainer, TrainOptions
from deblur_cli.weights import load_model, save_model

MOTION_CONFIGS = [
    replace(TINY, norm="none", motion_hints=True),
    replace(TINY, align=True),
    replace(TINY, arch="multi", motion_hints=True, align=True),
]


def panning_window(step: float, size: int = 96, frames: int = 5) -> np.ndarray:
    """A textured picture moving right by ``step`` px per frame: known motion."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((size, size + 64)).astype(np.float32), (0, 0), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    return np.stack(
        [
            cv2.warpAffine(
                texture,
                np.float32([[1, 0, -32 + step * k], [0, 1, 0]]),
                (size, size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT,
            )
            for k in range(frames)
        ]
    )


def test_hints_measure_the_centre_frames_motion() -> None:
    window = panning_window(step=3.0)
    hints = motion_hints(window)
    core = (slice(16, -16), slice(16, -16))
    assert hints.shape == (2, *window.shape[1:])
    assert np.median(hints[0][core]) * HINT_SCALE == pytest.approx(3.0, abs=0.3)
    assert abs(np.median(hints[1][core])) * HINT_SCALE < 0.3


def test_alignment_brings_neighbours_onto_the_centre() -> None:
    window = panning_window(step=4.0)
    core = (slice(16, -16), slice(16, -16))
    before = np.abs(window[0] - window[2])[core].mean()
    after = np.abs(aligned(window)[0] - window[2])[core].mean()
    assert after < 0.3 * before
    assert np.array_equal(aligned(window)[2], window[2])  # the centre is never touched


def test_plain_models_take_raw_windows() -> None:
    assert window_preparer(TINY) is None
    window = panning_window(1.0)
    assert prepare_window(window, TINY).shape == window.shape


@pytest.mark.parametrize("config", MOTION_CONFIGS, ids=lambda c: f"{c.arch}-{c.norm}")
def test_engine_equals_the_training_network(config: DBLRNetConfig) -> None:
    """The engine computes the motion inputs itself and its folded network matches the model."""
    torch.manual_seed(0)
    model = DBLRNet(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    window = panning_window(2.0, size=40)
    planes = prepare_window(window, config)
    assert planes.shape[0] == config.input_planes
    expected = model(torch.from_numpy(planes)[None, None])[0, 0].detach().numpy()
    restored = Deblurrer(model, device="cpu", precision="fp32").run_windows(window[None])[0]
    np.testing.assert_allclose(restored, expected, atol=1e-5)


def test_config_travels_in_the_weight_file(tmp_path: Path) -> None:
    config = replace(TINY, norm="none", motion_hints=True, align=True)
    path = save_model(DBLRNet(config), tmp_path / "m.safetensors")
    assert load_model(str(path)).config == config


def test_old_configs_without_the_new_keys_still_load() -> None:
    legacy = '{"arch": "3d", "first_width": 4, "frames": 5, "global_residual": true, ' \
        '"head_width": 8, "width": 8, "blocks": 1}'  # fmt: skip
    assert DBLRNetConfig.from_json(legacy) == TINY


def test_training_windows_carry_the_motion_planes(dataset: Path) -> None:
    config = replace(TINY, motion_hints=True)
    windows = WindowDataset(
        find_sequences("dvd", dataset, split="train"), crop=24, progress=False,
        prepare=window_preparer(config),
    )  # fmt: skip
    blurry, sharp = windows[0]
    assert blurry.shape == (1, config.input_planes, 24, 24)
    assert sharp.shape == (1, 24, 24)


@pytest.mark.usefixtures("one_torch_thread")
def test_cosine_run_with_hints_stops_at_its_cpu_budget(dataset: Path, tmp_path: Path) -> None:
    options = TrainOptions(
        out_dir=str(tmp_path), train_data=[f"dvd:{dataset}"], val_data=[f"dvd:{dataset}"],
        preset="tiny", batch=2, crop=32, steps=100_000, val_every=10**6, log_every=5,
        val_windows=2, precision="fp32", norm="none", motion_hints=True, optimizer="adamw",
        schedule="cosine", warmup=3, lr=1e-3, lr_min=1e-5, cpu_minutes=0.02,
    )  # fmt: skip
    trainer = Trainer(options)
    state = trainer.run()
    assert 0 < state.step < 100_000
    assert state.cpu_seconds >= 0.02 * 60
    assert trainer.opt.param_groups[0]["lr"] < 1e-4  # decayed to near lr_min by the budget's end
    assert load_model(str(tmp_path / "last.safetensors")).config.motion_hints
    # Step 0 starts from "output = centre frame": its gain over the input is about zero (the
    # input is the centre frame, not a hint plane).
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["gain_db"]) < 0.2
