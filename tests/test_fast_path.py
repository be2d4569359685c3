"""The fast inference path: InferenceNet equals DBLRNet, bf16 stays close, memory stays bounded."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from deblur_cli.engine import (
    COMPILE_AFTER_FRAMES,
    Deblurrer,
    InferenceNet,
    cpu_has_native_bf16,
    plan_tiles,
)
from deblur_cli.models import TINY, DBLRNet, DBLRNetConfig
from deblur_cli.models.dblrnet import ChannelNorm


def trained_like(config: DBLRNetConfig, seed: int = 0) -> DBLRNet:
    """Non-trivial BN statistics and affines, and a last layer that really changes the output
    (a fresh init returns ~ its centre frame, which any precision would reproduce)."""
    torch.manual_seed(seed)
    model = DBLRNet(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, ChannelNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
        torch.nn.init.normal_(model.l35.weight, std=0.5)
    return model


def small(**changes: object) -> DBLRNetConfig:
    return DBLRNetConfig(**{**TINY.__dict__, "blocks": 2, **changes})


def reference(model: DBLRNet, windows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(windows).unsqueeze(1))[:, 0].numpy()


CONFIGS = [
    small(),
    small(frames=7),
    small(frames=3),
    small(arch="multi"),
    small(arch="single", frames=1),
    small(global_residual=False),
    small(norm="group", width=16),
    small(norm="channel"),
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: f"{c.arch}{c.frames}r{c.global_residual}{c.norm}"
)
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "conv2d"])
def test_inference_net_equals_dblrnet_in_fp32(config: DBLRNetConfig, onednn: bool) -> None:
    model = trained_like(config)
    windows = np.random.default_rng(0).random((2, config.frames, 23, 30), dtype=np.float32)
    net = InferenceNet(model).eval()
    if onednn and not net.use_onednn():
        pytest.skip("oneDNN fused convolutions are not available in this torch build")
    with torch.inference_mode():
        fast = net(torch.from_numpy(windows)).numpy()
    expected = reference(model, windows)
    assert np.abs(expected - windows[:, config.frames // 2]).mean() > 0.01  # a real correction
    assert np.abs(fast - expected).max() < 1e-5


@pytest.mark.parametrize("norm", ["batch", "group", "channel"])
def test_default_fast_path_matches_fp32_within_bf16_error(norm: str) -> None:
    """Default precision (bf16 on CPUs that have it) against the fp32 eager reference."""
    model = trained_like(small(width=16, head_width=32, blocks=4, norm=norm), seed=1)
    if norm != "batch":  # unit-variance features: a tenth of L35 gives BN's ~50-level correction
        with torch.no_grad():
            model.l35.weight.mul_(0.1)
    windows = np.random.default_rng(1).random((1, 5, 48, 64), dtype=np.float32)
    engine = Deblurrer(model, device="cpu")
    error = np.abs(engine.run_windows(windows) - reference(model, windows)) * 255
    if engine.precision == "fp32":
        assert error.max() < 1e-3
    else:
        assert error.max() < 6.0 and error.mean() < 1.0
    assert engine.precision == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_onednn_and_conv2d_paths_agree_in_bf16() -> None:
    model = trained_like(small(), seed=2)
    windows = torch.rand(1, 5, 32, 40)
    fused, plain = InferenceNet(model, torch.bfloat16), InferenceNet(model, torch.bfloat16)
    if not fused.use_onednn():
        pytest.skip("oneDNN fused convolutions are not available in this torch build")
    with torch.inference_mode():
        difference = (fused(windows) - plain(windows)).abs()
    assert float(difference.max()) * 255 < 4.0


def test_bf16_tiles_equal_bf16_whole_frames() -> None:
    """Tiles only change which pixels run together, so in bf16 they agree to bf16 rounding."""
    model = trained_like(small(), seed=3)
    windows = np.random.default_rng(3).random((1, 5, 90, 70), dtype=np.float32)
    whole = Deblurrer(model, device="cpu", precision="bf16").run_windows(windows)
    tiled = Deblurrer(model, device="cpu", precision="bf16", tile=32).run_windows(windows)
    assert np.abs(whole - tiled).max() * 255 < 1.0


@pytest.mark.parametrize("size", [(1080, 1920), (720, 1280), (97, 130), (2000, 40)])
def test_tile_plan_covers_the_frame_within_budget(size: tuple[int, int]) -> None:
    height, width = size
    margin, max_pixels = 40, 400_000
    plan = plan_tiles(height, width, margin, max_pixels)
    if height * width <= max_pixels:
        assert plan is None
        return
    assert plan is not None
    covered = np.zeros(size, np.int32)
    for rows, cols in plan.tiles(height, width):
        covered[rows, cols] += 1
        assert plan.padded_area(rows, cols, height, width) <= max_pixels
    assert (covered == 1).all()


def test_tile_plan_prefers_fewer_tiles_to_squares() -> None:
    """1080p under a budget that fits half a frame: two or three tiles, not a dozen squares."""
    plan = plan_tiles(1080, 1920, 40, 1_300_000)
    assert plan is not None
    assert len(list(plan.tiles(1080, 1920))) <= 3


def test_long_stream_holds_no_more_than_a_window() -> None:
    """Every input plane and every output plane is released once the window has moved past it:
    what the engine keeps alive is bounded by the window and the batch, not the clip length."""
    model = trained_like(TINY)
    engine = Deblurrer(model, device="cpu", precision="fp32", batch_size=3)
    alive: set[int] = set()
    worst = 0

    def frames():  # type: ignore[no-untyped-def]
        for i in range(150):
            plane = np.full((8, 8), i / 150, np.float32)
            alive.add(i)
            weakref.finalize(plane, alive.discard, i)
            yield i, plane

    count = 0
    for _, restored in engine.stream(frames()):
        worst = max(worst, len(alive))
        del restored
        count += 1
    assert count == 150
    assert worst <= engine.window + engine.batch_size
    assert len(alive) == 0


def test_compile_waits_for_enough_frames() -> None:
    """A short clip never triggers torch.compile (its cost would not be repaid)."""
    engine = Deblurrer(trained_like(TINY), device="cpu", precision="fp32", compile=True)
    windows = np.random.default_rng(4).random((COMPILE_AFTER_FRAMES - 1, 5, 8, 8), dtype=np.float32)
    engine.run_windows(windows)
    assert engine._compiled is None


def test_subclass_with_its_own_forward_keeps_it() -> None:
    class Doubler(DBLRNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x[:, :, self.config.frames // 2]

    windows = np.random.default_rng(5).random((1, 5, 8, 8), dtype=np.float32)
    out = Deblurrer(Doubler(TINY), device="cpu", precision="fp32").run_windows(windows)
    assert np.allclose(out, 2 * windows[:, 2])


def test_channel_norm_models_tile_exactly() -> None:
    """ChannelNorm's statistics are each pixel's own, so tiles compute the whole frame's pixels
    (GroupNorm's span the frame: those models never tile)."""
    model = trained_like(small(norm="channel", width=16), seed=4)
    windows = np.random.default_rng(4).random((1, 5, 90, 70), dtype=np.float32)
    engine = Deblurrer(model, device="cpu", precision="fp32", tile=32)
    assert engine.tile_plan(90, 70) is not None
    tiled = engine.run_windows(windows)
    expected = reference(model, windows)
    assert np.abs(expected - windows[:, 2]).mean() > 0.01  # a real correction
    assert np.abs(tiled - expected).max() < 1e-4
