"""`deblur video` under torchrun splits the input files across ranks (2 gloo ranks on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import read_clip

from deblur_cli.distributed import Launch, shard, threads_per_process


def test_shard_gives_every_item_to_exactly_one_rank() -> None:
    items = list(range(7))
    shares = [shard(items, Launch(rank=r, world_size=3)) for r in range(3)]
    assert sorted(item for share in shares for item in share) == items
    assert shares[0] == [0, 3, 6]


def test_threads_are_divided_between_local_processes() -> None:
    one = threads_per_process(Launch())
    assert threads_per_process(Launch(local_world_size=2)) == max(1, one // 2)


def test_torchrun_two_ranks_split_the_files(
    clip_factory: Callable[..., Path], model_args: list[str], tmp_path: Path
) -> None:
    inputs = [clip_factory(f"clip{i}.mp4", frames=3 + i) for i in range(3)]
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", "29541", "-m", "deblur_cli", "video", *map(str, inputs),
        "-o", str(out), *model_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # Each file was deblurred once (one summary line each), not once per rank.
    summaries = [line for line in done.stderr.splitlines() if " -> " in line]
    assert len(summaries) == 3, done.stderr
    for index, source in enumerate(inputs):
        result = read_clip(out / source.name)
        assert len(result.times) == 3 + index
