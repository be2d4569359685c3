"""A real (tiny) training run: loss falls, resume is bitwise, GAN updates both, export loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import free_port
from safetensors.torch import load_file

from deblur_cli.cli import main
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import DeblurError
from deblur_cli.metrics import psnr
from deblur_cli.models import FAST, DBLRNet
from deblur_cli.train import (
    Trainer,
    TrainOptions,
    charbonnier,
    fixed_validation_windows,
    psnr_loss,
    recalibrate_batchnorm,
    spectral_l1,
    zero_residual_branches,
)
from deblur_cli.weights import load_model, save_model


def options(dataset: Path, out: Path, **extra: object) -> TrainOptions:
    base = dict(
        out_dir=str(out), train_data=[f"dvd:{dataset}"], val_data=[f"dvd:{dataset}"],
        preset="tiny", batch=2, crop=32, val_every=5, log_every=5, val_windows=4, lr=1e-3,
        precision="fp32", bn_calibration=2,
    )  # fmt: skip
    base.update(extra)
    return TrainOptions(**base)  # type: ignore[arg-type]


def test_every_validation_set_gives_the_same_number_of_windows(
    dataset: Path, tmp_path: Path
) -> None:
    # A small sharp-input set beside a large blurry one must weigh alike in the mean PSNR that
    # picks best.safetensors: evenly spaced over the sets pooled, it would get no window here.
    from deblur_cli.synth import bundled_sources, synthesize_dataset, write_dataset

    small = tmp_path / "small"
    clips = synthesize_dataset(bundled_sources("val"), 1, 5, (40, 40), seed=2, process="shake")
    write_dataset(clips, small, layout="dvd")
    config = TrainOptions(out_dir="", train_data=[], preset="tiny").model_config()
    blurry, sharp = fixed_validation_windows([f"dvd:{dataset}", f"dvd:{small}"], config, 2, 32)
    alone, alone_sharp = fixed_validation_windows([f"dvd:{small}"], config, 2, 32)
    assert blurry.shape[0] == sharp.shape[0] == 4
    assert torch.equal(blurry[2:], alone) and torch.equal(sharp[2:], alone_sharp)


def test_twenty_steps_lower_the_loss(dataset: Path, tmp_path: Path) -> None:
    # Without the global residual the loss starts far from its floor, so 20 steps must show.
    trainer = Trainer(options(dataset, tmp_path, steps=20, lr=3e-3, batch=8, global_residual=False))
    blurry, sharp = next(iter(trainer.batches()))

    def loss() -> float:  # train-mode BN: the statistics the optimiser actually sees
        with torch.no_grad():
            return torch.nn.functional.mse_loss(trainer.generator(blurry), sharp).item()

    before = loss()
    trainer.run()
    assert loss() < 0.9 * before
    assert (tmp_path / "metrics.jsonl").read_text().count("val_psnr") >= 2


def test_resume_is_bitwise_equal(dataset: Path, tmp_path: Path) -> None:
    Trainer(options(dataset, tmp_path / "a", steps=20)).run()
    Trainer(options(dataset, tmp_path / "b", steps=10)).run()
    Trainer(options(dataset, tmp_path / "b", steps=20), resume=True).run()
    a = load_file(str(tmp_path / "a" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gan_stage_updates_both_networks(dataset: Path, tmp_path: Path) -> None:
    Trainer(options(dataset, tmp_path / "content", steps=4)).run()
    init = tmp_path / "content" / "last.safetensors"
    trainer = Trainer(
        options(
            dataset,
            tmp_path / "gan",
            stage="gan",
            init=str(init),
            steps=3,
            d_width=0.125,
            log_every=1,
        )
    )
    g_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    assert trainer.discriminator is not None
    d_before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    trainer.run()
    g_after, d_after = trainer.generator.state_dict(), trainer.discriminator.state_dict()
    assert any(not torch.equal(g_before[k], g_after[k]) for k in g_before)
    assert any(not torch.equal(d_before[k], d_after[k]) for k in d_before)
    assert "d_loss" in (tmp_path / "gan" / "metrics.jsonl").read_text()


def test_the_discriminator_sees_real_and_restored_crops_in_one_batch(
    dataset: Path, tmp_path: Path
) -> None:
    # D has BatchNorm: real and restored crops normalised apart lose the difference D must see
    # (it stayed at chance for 300 steps that way, and learnt when they shared one batch).
    Trainer(options(dataset, tmp_path / "content", steps=2)).run()
    trainer = Trainer(options(dataset, tmp_path / "gan", stage="gan", steps=2, d_width=0.125,
                              init=str(tmp_path / "content" / "last.safetensors")))  # fmt: skip
    assert trainer.discriminator is not None
    batches: list[int] = []
    trainer.discriminator.register_forward_pre_hook(lambda _, args: batches.append(len(args[0])))
    trainer.run()
    assert batches and all(size == 2 * trainer.options.batch for size in batches)


def test_cli_train_then_export_then_load(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", f"dvd:{dataset}", "--out", str(out), "--preset", "tiny",
            "--steps", "3", "--batch", "1", "--crop", "32",
            "--precision", "fp32", "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    exported = tmp_path / "exported.safetensors"
    result = CliRunner().invoke(main, ["export", str(out / "resume.pt"), "-o", str(exported)])
    assert result.exit_code == 0, result.output
    assert load_model(str(exported)).config.width == 8
    # A weights file re-exported with its BatchNorm statistics recomputed on the data.
    calibrated = tmp_path / "calibrated.safetensors"
    args = ["export", str(exported), "-o", str(calibrated), "--calibrate-on", f"dvd:{dataset}",
            "--batches", "2"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    before, after = load_file(str(exported)), load_file(str(calibrated))
    assert torch.equal(before["l35.weight"], after["l35.weight"])
    assert not torch.equal(before["bn31.running_var"], after["bn31.running_var"])


@pytest.mark.parametrize(
    ("flags", "stored", "path"),
    [
        (["--norm", "none", "--predict", "kernels"], {"predict": "kernels"}, {"reference"}),
        (["--norm", "group"], {"norm": "group"}, {"onednn", "aten"}),
    ],
    ids=["kernels", "group-norm"],
)
def test_cli_trains_an_experimental_layer_option_and_the_file_keeps_it(
    dataset: Path, tmp_path: Path, flags: list[str], stored: dict[str, str], path: set[str]
) -> None:
    # --predict kernels and --norm group are layer changes: the weight file must rebuild them,
    # and the engine must run them on a whole frame (kernels on its general path, GroupNorm on
    # its fast one).
    out = tmp_path / "run"
    args = ["train", "--data", f"dvd:{dataset}", "--out", str(out), "--preset", "tiny",
            "--steps", "2", "--batch", "2", "--crop", "32", "--align", *flags,
            "--precision", "fp32", "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model = load_model(str(out / "last.safetensors"))
    assert model.config.align
    assert {key: getattr(model.config, key) for key in stored} == stored
    engine = Deblurrer(model, device="cpu", precision="fp32")
    assert engine.kernels in path
    frames = np.random.default_rng(0).random((5, 40, 48), dtype=np.float32)
    assert engine.run_windows(frames[None]).shape == (1, 40, 48)


def test_zero_init_residual_starts_the_body_as_the_identity_and_still_learns(
    dataset: Path, tmp_path: Path
) -> None:
    model = DBLRNet(replace(FAST, norm="none"))
    zero_residual_branches(model)
    features = torch.rand(2, FAST.width, 12, 12)
    assert torch.equal(model.blocks(features), features)
    # Through the CLI: the gradient must still reach the zeroed convolutions, and they must
    # have started at zero (Adam moves a weight by at most about lr a step; a default
    # initialisation is ~0.1).
    out = tmp_path / "run"
    args = ["train", "--data", f"dvd:{dataset}", "--out", str(out), "--preset", "tiny",
            "--steps", "3", "--batch", "2", "--crop", "32", "--norm", "none", "--lr", "1e-3",
            "--zero-init-residual", "--ema-decay", "0", "--precision", "fp32", "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    trained = load_model(str(out / "last.safetensors"))
    for conv in (trained.blocks[0].conv2, trained.l32):
        assert 0 < float(conv.weight.detach().abs().max()) < 3.5e-3


def test_zero_init_residual_under_a_norm_zeroes_the_norms_scale_not_the_conv() -> None:
    # A zero conv before a GroupNorm would hand the norm a constant input (a 1/eps gradient);
    # the branch starts at zero by the norm's scale and shift instead ("zero gamma").
    model = DBLRNet(replace(FAST, norm="group")).requires_grad_(False)
    zero_residual_branches(model)
    features = torch.rand(2, FAST.width, 12, 12)
    assert torch.equal(model.blocks(features), features)
    for block in model.blocks:
        assert float(block.bn2.weight.abs().max()) == 0.0
        assert float(block.conv2.weight.abs().max()) > 0.01
    assert float(model.bn32.weight.abs().max()) == 0.0
    assert float(model.l32.weight.abs().max()) > 0.01


def test_cli_recycles_the_init_files_dormant_channels_and_logs_them(
    dataset: Path, tmp_path: Path
) -> None:
    common = ["--data", f"dvd:{dataset}", "--preset", "tiny", "--steps", "1", "--batch", "2",
              "--crop", "32", "--norm", "none", "--precision", "fp32", "-q"]  # fmt: skip
    first = tmp_path / "first"
    assert CliRunner().invoke(main, ["train", *common, "--out", str(first)]).exit_code == 0
    dead = load_model(str(first / "last.safetensors"))
    with torch.no_grad():
        dead.l34.bias[:3] = -1e3  # three channels of L34 that never fire
    save_model(dead, tmp_path / "dead.safetensors")
    second = tmp_path / "second"
    args = ["train", *common, "--out", str(second), "--init", str(tmp_path / "dead.safetensors"),
            "--recycle-dormant"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    recycled = next(r["recycled"] for r in records if "recycled" in r)
    assert recycled["l34"] >= 3


def test_cli_gan_stage_takes_the_discriminator_learning_rate(dataset: Path, tmp_path: Path) -> None:
    # At the paper's 1e-5 a discriminator from scratch stayed at chance (d_loss 2 ln 2) for
    # 460 CPU steps, so the adversarial term was noise: the rate must be settable.
    common = ["--data", f"dvd:{dataset}", "--preset", "tiny", "--steps", "2", "--batch", "2",
              "--crop", "32", "--precision", "fp32", "-q"]  # fmt: skip
    content = tmp_path / "content"
    result = CliRunner().invoke(main, ["train", *common, "--out", str(content)])
    assert result.exit_code == 0, result.output
    gan = tmp_path / "gan"
    args = ["train", *common, "--out", str(gan), "--stage", "gan", "--init",
            str(content / "last.safetensors"), "--lr-d", "3e-4"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    payload = torch.load(gan / "resume.pt", map_location="cpu", weights_only=False)
    assert payload["optimizer_d"]["param_groups"][0]["lr"] == pytest.approx(3e-4)


def test_two_process_ddp_with_gloo(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", free_port(), "-m", "deblur_cli", "train", "--data", f"dvd:{dataset}",
        "--out", str(out), "--preset", "tiny", "--steps", "4", "--batch", "1", "--crop", "32",
        "--log-every", "2",
        "--precision", "fp32", "-q",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "last.safetensors").is_file()
    assert (out / "metrics.jsonl").is_file()


def test_precise_batchnorm_is_the_plain_average_of_batch_statistics() -> None:
    norm = torch.nn.BatchNorm2d(3, momentum=0.1)
    batches = [torch.randn(4, 3, 5, 5) * scale + shift for scale, shift in ((1, 0), (3, 2))]
    recalibrate_batchnorm(norm, batches)
    expected_mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    expected_var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(norm.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, expected_var, atol=1e-5)
    assert norm.momentum == 0.1  # the training setting is restored


def test_charbonnier_is_a_smooth_l1() -> None:
    x = torch.zeros(2, 8, 8)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    assert charbonnier(x + 0.5, x).item() == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(DeblurError, match="--loss"):
        TrainOptions(out_dir="x", train_data=[], loss="l2")


def test_psnr_loss_is_minus_the_mean_window_psnr() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 1, 16, 16)
    output = target + torch.randn(2, 1, 16, 16) * torch.tensor([0.01, 0.2]).view(2, 1, 1, 1)
    pairs = zip(output.numpy(), target.numpy(), strict=True)
    expected = np.mean([psnr(o, t, data_range=1.0) for o, t in pairs])
    assert psnr_loss(output, target, floor=0.0).item() == pytest.approx(-expected, abs=1e-3)


def test_psnr_loss_weighs_a_nearly_sharp_window_like_a_blurry_one() -> None:
    # Halving the error of either window lowers the loss by the same 3 dB / 2 windows, though
    # their absolute errors differ 20-fold: unlike MSE, the sharp window is not drowned out.
    target = torch.zeros(2, 1, 8, 8)
    errors = torch.tensor([0.01, 0.2]).view(2, 1, 1, 1)
    base = psnr_loss(target + errors, target, floor=0.0)
    for window in range(2):
        halved = errors.clone()
        halved[window] /= 2
        drop = base - psnr_loss(target + halved, target, floor=0.0)
        assert drop.item() == pytest.approx(10 * np.log10(4) / 2, rel=1e-4)


def test_spectral_l1_counts_a_cosine_error_by_its_one_spectral_coefficient() -> None:
    # An error a*cos(2 pi k x / n) has one coefficient a*n*n/2 in the half spectrum (n rows of
    # n/2 + 1, real and imaginary parts): the same at every k, low or high.
    n, a = 16, 0.1
    target = torch.zeros(1, 1, n, n)
    expected = (a * n * n / 2) / (2 * n * (n // 2 + 1))
    for k in (1, 3, 7):
        wave = a * torch.cos(2 * torch.pi * k * torch.arange(n) / n)
        assert spectral_l1(target + wave, target).item() == pytest.approx(expected, rel=1e-5)
    assert spectral_l1(target, target).item() == 0.0


def test_cli_fft_weight_adds_the_spectral_term_to_the_logged_loss(
    dataset: Path, tmp_path: Path
) -> None:
    def first_loss(weight: str) -> float:
        out = tmp_path / weight
        args = ["train", "--data", f"dvd:{dataset}", "--out", str(out), "--preset", "tiny",
                "--steps", "1", "--log-every", "1", "--batch", "2", "--crop", "32", "--loss",
                "charbonnier", "--fft-weight", weight, "--precision", "fp32", "-q"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        records = (out / "metrics.jsonl").read_text().splitlines()
        return next(r["loss"] for r in map(json.loads, records) if "loss" in r)

    # The same seed, batch and start: only the spectral term differs.
    assert first_loss("1") > first_loss("0") + 0.01


def test_release_model_is_the_weight_average_with_recomputed_statistics(
    dataset: Path, tmp_path: Path
) -> None:
    raw = Trainer(options(dataset, tmp_path / "raw", steps=6, ema_decay=0.0, bn_calibration=0))
    raw.run()
    exported = load_file(str(tmp_path / "raw" / "last.safetensors"))
    assert all(torch.equal(v, exported[k]) for k, v in raw.generator.state_dict().items())

    averaged = Trainer(options(dataset, tmp_path / "avg", steps=6, loss="charbonnier"))
    averaged.run()
    release = averaged.release_model().state_dict()
    weights = averaged.generator.state_dict()
    assert not torch.equal(release["l35.weight"], weights["l35.weight"])  # averaged weights
    assert not torch.equal(release["bn31.running_mean"], weights["bn31.running_mean"])


def test_gan_stage_stops_when_psnr_falls_below_the_tolerance(dataset: Path, tmp_path: Path) -> None:
    Trainer(options(dataset, tmp_path / "content", steps=2)).run()
    init = str(tmp_path / "content" / "last.safetensors")
    common = dict(stage="gan", init=init, steps=6, val_every=1, d_width=0.125, early_stop=2)
    # A floor above any PSNR: two validations below it end the run at step 2, nothing is kept.
    strict = Trainer(options(dataset, tmp_path / "strict", gan_tolerance=-1e3, **common))
    assert strict.run().stopped_early and strict.state.step == 2
    assert not (tmp_path / "strict" / "best.safetensors").exists()
    # A floor below any PSNR: the run goes on and keeps the latest generator.
    lenient = Trainer(options(dataset, tmp_path / "lenient", gan_tolerance=1e3, **common))
    state = lenient.run()
    assert not state.stopped_early and state.step == 6
    assert load_model(str(tmp_path / "lenient" / "best.safetensors")) is not None


def test_a_wall_clock_budget_ends_the_run_and_drives_the_cosine(
    dataset: Path, tmp_path: Path
) -> None:
    trainer = Trainer(options(dataset, tmp_path, steps=10**6, minutes=0.05, schedule="cosine",
                              lr_min=0.0, val_every=10**6))  # fmt: skip
    state = trainer.run()
    assert 0 < state.step < 10**6 and state.wall_seconds >= 0.05 * 60
    assert trainer.progress() == 1.0
    # Decayed to the end: the last step's rate is set at its start, so on a loaded machine,
    # where one step can take a tenth of this budget, it is not quite zero (session 11 saw
    # 0.14 x lr with a 1.2 s budget).
    assert trainer.opt.param_groups[0]["lr"] < 0.2 * trainer.options.lr
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    validated = [r["step"] for r in records if "val_psnr" in r]
    assert validated[-1] == state.step  # the final step is validated, whatever val_every says


def test_a_curriculum_trains_on_the_easy_data_first_then_on_the_training_data(
    dataset: Path, tmp_path: Path
) -> None:
    from deblur_cli.synth import BlurRanges, bundled_sources, synthesize_dataset, write_dataset

    easy = tmp_path / "easy"  # no blur at all: each window's centre frame is its target
    clips = synthesize_dataset(bundled_sources("train"), 2, 5, (48, 48), seed=4, process="shake",
                               ranges=BlurRanges.static_clean())  # fmt: skip
    write_dataset(clips, easy, layout="dvd")
    trainer = Trainer(options(dataset, tmp_path / "run", steps=8, easy_data=[f"dvd:{easy}"],
                              easy_share=0.5))  # fmt: skip
    unblurred = []
    for blurry, sharp in trainer.batches():  # the trainer counts the steps as run() does
        centre = blurry[:, :, blurry.shape[2] // 2]
        unblurred.append(torch.equal(centre, sharp.reshape(centre.shape)))
        trainer.state.step += 1
    assert unblurred == [True] * 4 + [False] * 4


def test_easy_share_without_easy_data_is_an_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DeblurError, match="--easy-share needs --easy-data"):
        options(dataset, tmp_path, easy_share=0.3)


def test_cuda_training_without_a_gpu_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeblurError, match="no CUDA device"):
        Trainer(options(dataset, tmp_path, device="cuda"))


def test_align_switches_alignment_on_for_init_weights(dataset: Path, tmp_path: Path) -> None:
    # Alignment prepares the inputs and leaves the layers alone, so an --init file trained
    # without it can go on with it; the exported file must say so (it was silently dropped).
    Trainer(options(dataset, tmp_path / "plain", steps=2, norm="none")).run()
    start = tmp_path / "plain" / "last.safetensors"
    assert not load_model(str(start)).config.align
    trainer = Trainer(options(dataset, tmp_path / "aligned", steps=2, init=str(start), align=True))
    assert trainer.config.align and trainer.train_set.prepare is not None
    trainer.run()
    assert load_model(str(tmp_path / "aligned" / "last.safetensors")).config.align
    with pytest.raises(DeblurError, match="motion hints"):
        Trainer(options(dataset, tmp_path / "hints", init=str(start), motion_hints=True))


def test_train_needs_no_pyav() -> None:
    # A lent GPU machine had no PyAV: subcommands load lazily, so training runs there.
    code = (
        "import sys; sys.modules['av'] = None\n"
        "from deblur_cli.cli import main\n"
        "main(['train', '--help'], prog_name='deblur')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--device" in done.stdout and "--minutes" in done.stdout
