"""The GPU burst's plans resolve to valid training options (the burst itself needs a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import gpu_burst

from deblur_cli.models import DBLRNet
from deblur_cli.weights import load_model

STAGES = [(plan, stage) for plan, chains in gpu_burst.PLANS.items() for c in chains for stage in c]


@pytest.mark.parametrize(("plan", "stage"), STAGES, ids=[f"{p}-{s.name}" for p, s in STAGES])
def test_every_stage_of_every_plan_builds_its_options_and_network(
    plan: str, stage: gpu_burst.Stage, tmp_path: Path
) -> None:
    options = gpu_burst.stage_options(stage, tmp_path / "data", tmp_path / "runs", 10.0, "cuda")
    assert options.minutes == pytest.approx(stage.share * 10.0)
    assert options.out_dir == str(tmp_path / "runs" / stage.name)
    init = stage.options.get("init")
    if init is None:  # from scratch: the options alone must make the network
        assert isinstance(DBLRNet(options.model_config()), DBLRNet)
    elif init.startswith("@"):  # the weights the chain's previous stage just made
        assert options.init == str(tmp_path / "runs" / init[1:] / "last.safetensors")
    else:
        assert Path(gpu_burst.ROOT / init).is_file()


def sets_of(stage: gpu_burst.Stage, data: Path) -> list[str]:
    """The names of the training sets a stage's options point at."""
    options = gpu_burst.stage_options(stage, data, data / "runs", 10.0, "cuda")
    return [Path(d.removeprefix("dvd:")).name for d in options.train_data]


def test_the_fast_line_and_the_group_plan_train_with_still_scenes_not_the_clean_clips(
    tmp_path: Path,
) -> None:
    stages = [stage for chain in gpu_burst.PLANS["group"] for stage in chain]
    paper, fast_group = stages
    assert paper.options["norm"] == "group" and "init" not in paper.options
    # The fast file's layers come from the file: it must be a GroupNorm one.
    assert load_model(str(gpu_burst.ROOT / fast_group.options["init"])).config.norm == "group"
    fast = [s for chain in gpu_burst.CHAINS for s in chain if s.name == "dblrnet-fast"]
    static = ["train_moderate", "train_sharp", "train_static"]  # EXPERIMENTS.md rows 95, 98
    for stage in [*stages, *fast]:
        assert sets_of(stage, tmp_path) == static
    dblrnet = gpu_burst.CHAINS[0][0]  # the paper-size line keeps the data it trained on
    assert sets_of(dblrnet, tmp_path) == ["train_moderate", "train_sharp", "train_clean"]


def test_the_machine_makes_only_the_sets_its_plan_trains_on() -> None:
    assert gpu_burst.plan_sets(gpu_burst.PLANS["group"]) == [
        "train_moderate", "train_sharp", "train_static"
    ]  # fmt: skip
    assert gpu_burst.plan_sets(gpu_burst.PLANS["shipped"]) == [
        "train_clean", "train_moderate", "train_sharp", "train_static"
    ]  # fmt: skip


def test_a_burst_validates_on_every_set_it_is_given(tmp_path: Path) -> None:
    stage = gpu_burst.PLANS["group"][1][0]
    val = [tmp_path / "val_other_128", tmp_path / "val_sharp_128"]
    options = gpu_burst.stage_options(stage, tmp_path, tmp_path / "runs", 10.0, "cuda", val)
    assert options.val_data == [f"dvd:{folder}" for folder in val]
    assert [Path(d).name for d in options.train_data] == list(stage.options["sets"])
    unvalidated = gpu_burst.stage_options(stage, tmp_path, tmp_path / "runs", 10.0, "cuda")
    assert unvalidated.val_data == []


def test_the_line_plan_gives_half_its_sharp_chain_windows_to_sharp_input_and_still_scenes(
    tmp_path: Path,
) -> None:
    plain, sharp = [stage for chain in gpu_burst.PLANS["line"] for stage in chain]
    assert sets_of(plain, tmp_path) == ["train_moderate", "train_sharp", "train_static"]
    names = sets_of(sharp, tmp_path)
    assert names.count("train_moderate") == 1 and len(names) == 5  # a set given twice: twice
    assert gpu_burst.plan_sets(gpu_burst.PLANS["line"]) == [
        "train_moderate", "train_sharp", "train_static"
    ]  # fmt: skip


@pytest.mark.parametrize("plan", ["line", "muon"])
def test_a_validated_plan_refuses_to_run_without_both_validation_sets(
    plan: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["gpu_burst.py", "--data", "d", "--runs", "r", "--out", "o", "--minutes", "1",
            "--plan", plan, "--val", str(tmp_path / "val_other_128")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        gpu_burst.main()
    assert "give --val both" in capsys.readouterr().err


def test_the_muon_plan_trains_both_sizes_from_scratch_with_muon(tmp_path: Path) -> None:
    paper, fast = [stage for chain in gpu_burst.PLANS["muon"] for stage in chain]
    for stage, preset in ((paper, "paper"), (fast, "fast")):
        options = gpu_burst.stage_options(stage, tmp_path, tmp_path / "runs", 10.0, "cuda")
        assert options.optimizer == "muon" and options.init is None
        assert options.preset == preset and options.model_config().norm == "group"
