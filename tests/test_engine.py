"""The frame-window engine: edge repetition, streaming order, tiling, precision choice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deblur_cli.engine import Deblurrer, edge_clamped_windows, resolve_device, resolve_precision
from deblur_cli.models import TINY, DBLRNet, DBLRNetConfig


class CentreProbe(DBLRNet):
    """A network that reports which frames it saw: output = sum of frame k times 10^k."""

    def __init__(self, frames: int) -> None:
        super().__init__(DBLRNetConfig(**{**TINY.__dict__, "frames": frames}))
        self.register_buffer("weights", 10.0 ** torch.arange(frames, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * self.weights[None, :, None, None]).sum(1, keepdim=True)


def probe_engine(frames: int, batch_size: int, split_at_cuts: bool = False) -> Deblurrer:
    """Constant planes 0, 1, 2... jump like cuts, so cut splitting is off unless asked for."""
    return Deblurrer(
        CentreProbe(frames), "cpu", "fp32", batch_size=batch_size, split_at_cuts=split_at_cuts
    )


def two_scenes(per_scene: int = 6) -> list[np.ndarray]:
    """A textured scene panning slowly, then a different one: one cut, before frame per_scene."""
    smooth = cv2.GaussianBlur(np.random.default_rng(0).random((64, 96), np.float32), (0, 0), 6)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    scenes = [smooth, 1.0 - smooth[::-1]]
    return [np.roll(scene, k, axis=1) for scene in scenes for k in range(per_scene)]


def windows_seen(engine: Deblurrer, planes: list[np.ndarray]) -> list[list[int]]:
    """The frame indices of every window the engine ran, in order."""
    seen: list[list[int]] = []
    run = engine.run_windows

    def recording(windows: np.ndarray) -> np.ndarray:
        for window in windows:
            seen.append(
                [next(i for i, p in enumerate(planes) if np.array_equal(p, f)) for f in window]
            )
        return run(windows)

    engine.run_windows = recording  # type: ignore[method-assign]
    assert len(list(engine.stream(enumerate(planes)))) == len(planes)
    return seen


@pytest.mark.parametrize("batch_size", [1, 4])
def test_stream_never_fuses_across_a_scene_cut(batch_size: int) -> None:
    planes = two_scenes()
    seen = windows_seen(probe_engine(5, batch_size, split_at_cuts=True), planes)
    assert seen[4] == [2, 3, 4, 5, 5] and seen[5] == [3, 4, 5, 5, 5]
    assert seen[6] == [6, 6, 6, 7, 8] and seen[7] == [6, 6, 7, 8, 9]
    assert all(len({i // 6 for i in window}) == 1 for window in seen)
    mixed = windows_seen(probe_engine(5, batch_size, split_at_cuts=False), planes)
    assert mixed[5] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_stream_repeats_edge_frames_and_keeps_order(count: int, batch_size: int) -> None:
    engine = probe_engine(5, batch_size)
    planes = [np.full((4, 4), i, np.float32) for i in range(count)]
    out = list(engine.stream((f"frame{i}", p) for i, p in enumerate(planes)))
    assert [payload for payload, _ in out] == [f"frame{i}" for i in range(count)]
    for (_, plane), window in zip(out, edge_clamped_windows(count, 5), strict=True):
        expected = sum(index * 10.0**k for k, index in enumerate(window))
        assert np.allclose(plane, expected)


def test_edge_clamped_windows() -> None:
    assert edge_clamped_windows(3, 5) == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 2]]
    assert edge_clamped_windows(1, 3) == [[0, 0, 0]]


def test_stream_memory_is_bounded() -> None:
    """Only the window's planes are held, however long the stream."""
    engine = probe_engine(5, 2)
    held: list[int] = []
    stream = engine.stream((i, np.zeros((2, 2), np.float32)) for i in range(200))
    for _ in stream:
        held.append(len(stream.gi_frame.f_locals["planes"]))
    assert len(held) == 200
    assert max(held) <= 5 + 2


def trained_like_tiny() -> DBLRNet:
    torch.manual_seed(3)
    model = DBLRNet(DBLRNetConfig(**{**TINY.__dict__, "blocks": 2})).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    return model


def test_tiled_equals_untiled_in_fp32() -> None:
    model = trained_like_tiny()
    windows = np.random.default_rng(0).random((2, 5, 97, 130), dtype=np.float32)
    whole = Deblurrer(model, device="cpu", precision="fp32").run_windows(windows)
    tiled = Deblurrer(model, device="cpu", precision="fp32", tile=32).run_windows(windows)
    assert np.abs(whole - tiled).max() < 1e-3


def test_automatic_tiling_under_a_small_memory_budget() -> None:
    model = trained_like_tiny()
    engine = Deblurrer(model, device="cpu", precision="fp32", memory_budget=2**20)
    plan = engine.tile_plan(1000, 1000)
    assert plan is not None and plan.margin >= model.config.receptive_radius
    windows = np.random.default_rng(1).random((1, 5, 120, 90), dtype=np.float32)
    reference = Deblurrer(model, device="cpu", precision="fp32").run_windows(windows)
    assert np.abs(engine.run_windows(windows) - reference).max() < 1e-3


def test_engine_matches_the_plain_model_in_fp32() -> None:
    model = trained_like_tiny()
    windows = np.random.default_rng(2).random((3, 5, 24, 31), dtype=np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(windows).unsqueeze(1))[:, 0].numpy()
    fast = Deblurrer(model, device="cpu", precision="fp32").run_windows(windows)
    assert np.abs(fast - reference).max() < 1e-5


def test_bf16_stays_close_to_fp32() -> None:
    model = trained_like_tiny()
    windows = np.random.default_rng(3).random((1, 5, 40, 40), dtype=np.float32)
    ref = Deblurrer(model, device="cpu", precision="fp32").run_windows(windows)
    bf16 = Deblurrer(model, device="cpu", precision="bf16").run_windows(windows)
    assert np.abs(ref - bf16).max() * 255 < 4.0


def test_device_and_precision_resolution() -> None:
    cpu = resolve_device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(ValueError):
        resolve_precision("int8", cpu)


def test_aligned_windows_of_a_batch_are_prepared_in_parallel_with_the_same_result() -> None:
    # A batch's flows run in threads (on CUDA they set the speed): the output must not change.
    torch.manual_seed(0)
    model = DBLRNet(DBLRNetConfig(first_width=4, width=8, blocks=1, head_width=8, align=True))
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((80, 120)).astype(np.float32), (0, 0), 2)
    planes = [base[8 + k : 72 + k, 8 + 2 * k : 104 + 2 * k] for k in range(7)]

    def restored(batch_size: int) -> list[np.ndarray]:
        engine = Deblurrer(model, "cpu", "fp32", batch_size=batch_size)
        return [plane for _, plane in engine.stream(enumerate(planes))]

    one, four = restored(1), restored(4)
    assert all(np.array_equal(a, b) for a, b in zip(one, four, strict=True))
