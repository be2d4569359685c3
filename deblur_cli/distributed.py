"""Scale-out under ``torchrun``: which process am I, and which share of the work is mine.

``torchrun --nproc-per-node N`` starts N copies of a command with RANK/WORLD_SIZE/LOCAL_RANK set.
Training uses them for DistributedDataParallel; ``deblur video`` with many inputs uses them to
split the files across processes (one device each) instead of every process doing all of them,
and with one input to split that video by time (``timesplit.py``).

The collectives here wait in short sleeps instead of blocking: a process blocked inside a
collective never runs its SIGTERM/Ctrl-C handler (Python runs handlers between bytecodes), so it
could not remove its partial files when torchrun stops it because a peer failed.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
POLL_SECONDS = 0.05


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
    """Wait for every rank (so the launch ends when all files are done); signals still work."""
    if launch.distributed and dist.is_initialized():
        _wait(dist.barrier(async_op=True))


def leave_process_group() -> None:
    """Leave the process group once every rank is done (a no-op when not distributed).

    A rank that exits with the group still up can abort in gloo's threads ("terminate called
    without an active exception", exit -6): the two-process training test did, 1 run in 6."""
    if dist.is_initialized():
        _wait(dist.barrier(async_op=True))
        dist.destroy_process_group()


def _wait(work: dist.Work | None) -> None:
    """Sleep until an asynchronous collective completes; re-raise its error, if any."""
    if work is None:
        return
    while not work.is_completed():
        time.sleep(POLL_SECONDS)
    work.wait()


def _device() -> torch.device:
    """Where collective buffers must live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _to_bytes(obj: object, size: int | None = None) -> torch.Tensor:
    data = pickle.dumps(obj)
    buffer = torch.zeros(size or len(data), dtype=torch.uint8)
    buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return buffer.to(_device())


def broadcast_object(obj: T, launch: Launch, source: int = 0) -> T:
    """``obj`` as rank ``source`` has it, on every rank (pickled; like torch's
    broadcast_object_list, but interruptible)."""
    if not launch.distributed:
        return obj
    mine = _to_bytes(obj) if launch.rank == source else None
    size = torch.tensor([0 if mine is None else mine.numel()], device=_device())
    _wait(dist.broadcast(size, source, async_op=True))
    buffer = mine if mine is not None else torch.empty(int(size), dtype=torch.uint8)
    buffer = buffer.to(_device())
    _wait(dist.broadcast(buffer, source, async_op=True))
    return pickle.loads(buffer.cpu().numpy().tobytes())


def all_gather_objects(obj: T, launch: Launch) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (pickled, interruptible)."""
    if not launch.distributed:
        return [obj]
    size = torch.tensor([len(pickle.dumps(obj))], device=_device())
    sizes = [torch.zeros_like(size) for _ in range(launch.world_size)]
    _wait(dist.all_gather(sizes, size, async_op=True))
    longest = max(int(s) for s in sizes)
    buffers = [torch.zeros(longest, dtype=torch.uint8, device=_device()) for _ in sizes]
    _wait(dist.all_gather(buffers, _to_bytes(obj, longest), async_op=True))
    return [
        pickle.loads(b[: int(s)].cpu().numpy().tobytes())
        for b, s in zip(buffers, sizes, strict=True)
    ]
