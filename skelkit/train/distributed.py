"""torchrun/DDP plumbing: process-group setup from the environment, rank-aware helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment (no-op for one process).

    NCCL on CUDA, gloo on CPU. Already-initialised groups (tests using torch.multiprocessing)
    are reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    if not launched_by_torchrun():
        return DistContext()
    backend = "nccl" if device_type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def sum_across_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The element-wise sum of ``values`` over the ranks (in place; returned).
    A collective: every rank calls it at the same point."""
    if ctx.enabled:
        dist.all_reduce(values)
    return values
