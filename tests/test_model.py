"""The network matches Table I: parameter count, shapes, variants, BN folding."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from deblur_cli.models import FAST, PAPER, TINY, DBLRNet, DBLRNetConfig, fold_batchnorm
from deblur_cli.models.dblrnet import KERNEL_SIZE, ChannelNorm, TemporalConv
from deblur_cli.models.discriminator import Discriminator

# Table I, counted layer by layer (convs followed by BN carry no bias; BN has gamma and beta):
# 448 + 27,712 + 1,035,776 + 73,984 + 147,712 + 590,080 + 2,305 = 1,878,017.
PAPER_PARAMS = (
    (27 * 1 * 16 + 16)  # L1
    + (27 * 16 * 64 + 64)  # L2
    + 14 * 2 * (9 * 64 * 64 + 2 * 64)  # L3..L30: conv + BN per layer
    + 2 * (9 * 64 * 64 + 2 * 64)  # L31, L32 (conv + BN)
    + (9 * 64 * 256 + 256)  # L33
    + (9 * 256 * 256 + 256)  # L34
    + (9 * 256 * 1 + 1)  # L35
)


def test_paper_parameter_count_follows_table_one() -> None:
    model = DBLRNet(PAPER)
    count = sum(p.numel() for p in model.parameters())
    assert count == PAPER_PARAMS == 1_878_017  # "about 1.88 M" in the paper


def test_paper_macs_per_pixel() -> None:
    assert DBLRNet(PAPER).macs_per_pixel() == 1_874_448  # paper: ~1.87 M multiply-adds per pixel


@pytest.mark.parametrize("size", [(17, 23), (32, 32), (5, 64)])
def test_maps_window_to_one_frame_any_size(size: tuple[int, int]) -> None:
    model = DBLRNet(PAPER).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 5, *size))
    assert out.shape == (2, 1, *size)


@pytest.mark.parametrize(
    "config",
    [
        DBLRNetConfig(arch="single", frames=1, **{"blocks": 1, "width": 8}),
        DBLRNetConfig(arch="multi", frames=5, blocks=1, width=8),
        *[DBLRNetConfig(frames=n, blocks=1, width=8) for n in (3, 5, 7, 9, 11)],
    ],
)
def test_variants_and_window_lengths(config: DBLRNetConfig) -> None:
    out = DBLRNet(config)(torch.rand(1, 1, config.frames, 12, 10))
    assert out.shape == (1, 1, 12, 10)


def test_bad_configs_are_refused() -> None:
    for bad in [dict(frames=4), dict(frames=13), dict(arch="2d"), dict(arch="single", frames=5)]:
        with pytest.raises(ValueError):
            DBLRNetConfig(**bad)


def test_config_round_trips_through_json() -> None:
    assert DBLRNetConfig.from_json(FAST.to_json()) == FAST


def test_temporal_conv_equals_conv3d_without_temporal_padding() -> None:
    layer = TemporalConv(4, 6, 3)
    reference = torch.nn.Conv3d(4, 6, (3, 3, 3), padding=(0, 1, 1))
    reference.weight.data.copy_(layer.weight.data)
    reference.bias.data.copy_(layer.bias.data)
    x = torch.rand(2, 4, 5, 9, 11)
    assert torch.allclose(layer(x), reference(x), atol=1e-6)


def test_global_residual_flag_changes_output() -> None:
    x = torch.rand(1, 1, 5, 8, 8)
    torch.manual_seed(0)
    with_residual = DBLRNet(TINY).eval()(x)
    # Freshly initialised, the residual model starts near "output = centre frame".
    assert (with_residual - x[:, :, 2]).abs().max() < 0.05


def test_batchnorm_folding_is_exact_in_fp32() -> None:
    torch.manual_seed(1)
    model = DBLRNet(DBLRNetConfig(blocks=2, width=16, head_width=16, global_residual=False)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    folded = fold_batchnorm(copy.deepcopy(model))
    x = torch.rand(2, 1, 5, 20, 20)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_discriminator_outputs_two_logits_for_any_crop() -> None:
    d = Discriminator(width_scale=0.125, fc_width=32)
    assert d(torch.rand(3, 1, 64, 48)).shape == (3, 2)


UNET = DBLRNetConfig(first_width=4, width=8, blocks=3, head_width=8, norm="none", body="unet")


@pytest.mark.parametrize("size", [(37, 50), (64, 64)])
def test_unet_body_keeps_any_frame_size_and_runs_in_the_engine(size: tuple[int, int]) -> None:
    from deblur_cli.engine import Deblurrer

    model = DBLRNet(UNET).eval()
    window = torch.rand(1, 1, 5, *size)
    expected = model(window)[:, 0].detach().numpy()
    restored = Deblurrer(model, device="cpu", precision="fp32").run_windows(window[:, 0].numpy())
    assert restored.shape == (1, *size)
    assert float(abs(restored - expected).max()) < 1e-5


def gradient_reach(config: DBLRNetConfig, size: int = 96) -> int:
    """Pixels on each side of the centre whose input moves the centre output (by gradient)."""
    model = DBLRNet(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # no dead paths: every weight positive
    x = torch.zeros(1, 1, 5, size, size, requires_grad=True)
    centre = size // 2
    model(x)[0, 0, centre, centre].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs().sum(0) > 0, as_tuple=True)
    return max(centre - int(rows.min()), int(rows.max()) - centre,
               centre - int(cols.min()), int(cols.max()) - centre)  # fmt: skip


def test_unet_receptive_radius_covers_its_reach() -> None:
    assert gradient_reach(UNET) <= UNET.receptive_radius


def test_unet_takes_group_norm_but_not_batchnorm() -> None:
    with pytest.raises(ValueError):
        DBLRNetConfig(body="unet")
    model = DBLRNet(replace(UNET, norm="group"))
    norms = [m for m in model.blocks.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 2 * UNET.blocks  # two per residual block, at every level
    assert {m.num_channels for m in norms} == {2 * UNET.width, 4 * UNET.width}


@pytest.mark.parametrize("norm", ["none", "group"])
def test_unet_body_starts_as_the_identity(norm: str) -> None:
    # Its way back up starts at zero: the coarse levels join in as they learn, instead of
    # swamping the full-resolution features (under GroupNorm the head then never learnt).
    body = DBLRNet(replace(UNET, norm=norm)).blocks
    x = torch.randn(2, UNET.width, 21, 30)
    assert torch.equal(body(x), x)


def test_unet_with_group_norm_runs_whole_frames_in_the_engine() -> None:
    from deblur_cli.engine import Deblurrer

    model = DBLRNet(replace(UNET, norm="group")).eval()
    window = torch.rand(1, 1, 5, 41, 58)
    expected = model(window)[:, 0].detach().numpy()
    deblurrer = Deblurrer(model, device="cpu", precision="fp32", tile=16)
    assert deblurrer.tile_plan(41, 58) is None  # GroupNorm: never tiled, even when asked
    restored = deblurrer.run_windows(window[:, 0].numpy())
    assert float(abs(restored - expected).max()) < 1e-5


def test_group_norm_is_per_sample_and_not_folded() -> None:
    # GroupNorm's statistics belong to each window: the output of one window must not depend
    # on the others in the batch (BatchNorm's training-mode output does), and folding, which
    # only BatchNorm allows, must leave it in place.
    model = DBLRNet(replace(TINY, norm="group"))
    window = torch.rand(1, 1, 5, 24, 24)
    alone = model(window)
    together = model(torch.cat([window, torch.rand(3, 1, 5, 24, 24) * 4]))[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    assert isinstance(folded.bn31, nn.GroupNorm)
    assert torch.allclose(folded(window), model.eval()(window), atol=1e-6)
    with pytest.raises(ValueError):
        DBLRNetConfig(width=12, norm="group")


def test_channel_norm_is_a_layer_norm_over_each_pixels_channels() -> None:
    norm = ChannelNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    mean = x.mean(1, keepdim=True)
    variance = x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(variance + norm.eps)
    expected = expected * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(norm(channels_last), expected, atol=1e-5)


def test_channel_attention_weighs_each_block_by_its_frame_mean_and_runs_whole_frames() -> None:
    from deblur_cli.engine import Deblurrer

    config = replace(TINY, norm="group", attention=True)
    model = DBLRNet(config).eval()
    block = model.blocks[0]
    x = torch.rand(2, config.width, 9, 11)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    weights = block.attention(branch.mean((2, 3), keepdim=True))
    assert torch.allclose(block(x), x + branch * weights, atol=1e-6)
    with torch.no_grad():
        model.l35.weight.normal_(std=0.5)
    window = torch.rand(1, 1, 5, 40, 48)
    expected = model(window)[:, 0].detach().numpy()
    engine = Deblurrer(model, device="cpu", precision="fp32", tile=16)
    assert engine.kernels == "reference" and engine.tile_plan(40, 48) is None
    assert abs(engine.run_windows(window[:, 0].numpy()) - expected).max() < 1e-4
    with pytest.raises(ValueError):
        DBLRNetConfig(attention=True, body="unet", norm="none")


def test_dilated_blocks_cycle_1_2_4_reach_further_and_tile_exactly() -> None:
    from deblur_cli.engine import Deblurrer

    config = replace(TINY, blocks=4, dilated=True, norm="none")
    model = DBLRNet(config).eval()
    assert [b.conv1.dilation[0] for b in model.blocks] == [1, 2, 4, 1]
    plain = replace(config, dilated=False)
    assert gradient_reach(config) == config.receptive_radius == plain.receptive_radius + 2 * 4
    assert gradient_reach(plain) == plain.receptive_radius
    with torch.no_grad():
        model.l35.weight.normal_(std=0.5)
    window = torch.rand(1, 1, 5, 40, 48)
    expected = model(window)[:, 0].detach().numpy()
    engine = Deblurrer(model, device="cpu", precision="fp32", tile=16)
    assert engine.kernels == "reference" and engine.tile_plan(40, 48) is not None
    assert abs(engine.run_windows(window[:, 0].numpy()) - expected).max() < 1e-4
    with pytest.raises(ValueError):
        DBLRNetConfig(dilated=True, body="unet", norm="none")


def test_group_norm_models_run_whole_frames_even_when_tiles_are_asked_for() -> None:
    from deblur_cli.engine import Deblurrer

    model = DBLRNet(replace(TINY, norm="group")).eval()
    with torch.no_grad():  # a correction large enough for tile statistics to show
        model.l35.weight.normal_(std=0.5)
    window = torch.rand(1, 1, 5, 40, 48)
    expected = model(window)[:, 0].detach().numpy()
    engine = Deblurrer(model, device="cpu", precision="fp32", tile=16)
    assert engine.tile_plan(40, 48) is None
    restored = engine.run_windows(window[:, 0].numpy())
    assert abs(restored - expected).max() < 1e-4  # fp32 rounding on outputs of ~1


KERNELS = replace(TINY, norm="none", predict="kernels")


def test_kernel_output_starts_as_the_centre_frame_and_runs_in_the_engine() -> None:
    from deblur_cli.engine import Deblurrer

    model = DBLRNet(KERNELS).eval()
    window = torch.rand(2, 1, 5, 37, 50)
    expected = model(window)[:, 0].detach()
    assert float((expected - window[:, 0, 2]).abs().max()) < 0.05  # near identity at init
    restored = Deblurrer(model, device="cpu", precision="fp32").run_windows(window[:, 0].numpy())
    assert float(abs(restored - expected.numpy()).max()) < 1e-5


def test_kernel_output_applies_the_predicted_filter_to_the_frames() -> None:
    """With L35 fixed to a constant filter (one tap of the next frame, one pixel to the
    right), the output is the centre plus that neighbour shifted: the filters act on the
    frames, frame-major, with replicated borders."""
    model = DBLRNet(KERNELS).eval()
    taps = KERNEL_SIZE**2
    with torch.no_grad():
        model.l35.weight.zero_()
        model.l35.bias.zero_()
        model.l35.bias[3 * taps + (KERNEL_SIZE // 2) * KERNEL_SIZE + KERNEL_SIZE // 2 + 1] = 1.0
    window = torch.rand(1, 1, 5, 16, 20)
    out = model(window)[0, 0]
    shifted = torch.cat([window[0, 0, 3, :, 1:], window[0, 0, 3, :, -1:]], dim=1)
    assert torch.allclose(out, window[0, 0, 2] + shifted, atol=1e-6)


def test_kernel_output_radius_covers_its_reach() -> None:
    model = DBLRNet(KERNELS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    x = torch.full((1, 1, 5, 64, 64), 0.5, requires_grad=True)  # at 0 the filters act on 0
    model(x)[0, 0, 32, 32].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs().sum(0) > 0, as_tuple=True)
    reach = max(
        32 - int(rows.min()), int(rows.max()) - 32, 32 - int(cols.min()), int(cols.max()) - 32
    )
    assert reach == KERNELS.receptive_radius - 1  # L35 is a 1x1 convolution here
