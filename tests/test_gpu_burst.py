"""The GPU burst's plans resolve to valid training options (the burst itself needs a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import gpu_burst

from deblur_cli.models import DBLRNet

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


def test_the_group_plan_trains_groupnorm_from_scratch_without_the_clean_clips(
    tmp_path: Path,
) -> None:
    stages = [stage for chain in gpu_burst.PLANS["group"] for stage in chain]
    assert {s.options["norm"] for s in stages} == {"group"}
    assert all("init" not in s.options for s in stages)
    for stage in stages:  # session 13's winner (EXPERIMENTS.md row 83) leaves train_clean out
        options = gpu_burst.stage_options(stage, tmp_path, tmp_path / "runs", 10.0, "cuda")
        assert options.train_data == [
            f"dvd:{tmp_path / n}" for n in ("train_moderate", "train_sharp")
        ]
    shipped = gpu_burst.stage_options(gpu_burst.CHAINS[1][0], tmp_path, tmp_path, 10.0, "cuda")
    assert len(shipped.train_data) == 3  # the shipped line keeps its own data
