"""Scale-out under ``torchrun``: which process am I, and which share of the work is mine.

``torchrun --nproc-per-node N`` starts N copies of a command with RANK/WORLD_SIZE/LOCAL_RANK set.
Training uses them for DistributedDataParallel; ``deblur video`` with many inputs uses them to
split the files across processes (one device each) instead of every process doing all of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch (all zeros/ones when run directly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_launch() -> Launch:
    """Read torchrun's environment variables."""
    env = os.environ
    return Launch(
        rank=int(env.get("RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
    )


def init_process_group(launch: Launch) -> None:
    """Join the process group (NCCL with GPUs, else gloo) once; a no-op when not distributed."""
    if launch.distributed and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(launch.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def shard(items: Sequence[T], launch: Launch) -> list[T]:
    """Round-robin share of ``items`` for this rank: every item goes to exactly one rank."""
    return list(items[launch.rank :: launch.world_size])


def threads_per_process(launch: Launch) -> int:
    """CPU threads for this process so the processes on one machine do not oversubscribe it."""
    return max(1, torch.get_num_threads() // launch.local_world_size)


def barrier(launch: Launch) -> None:
    """Wait for every rank (so the launch ends when all files are done)."""
    if launch.distributed and dist.is_initialized():
        dist.barrier()
