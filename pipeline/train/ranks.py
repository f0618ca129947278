"""Training under `torchrun`: every rank reads the same batches and works on its row slice of each, so
all ranks make the same parameter-server calls; results are gathered back for metrics."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from pipeline.train.loop import Batch, Scored


def init_distributed_from_env() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def row_slice(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's rows of a batch every rank read."""
    return batch if world == 1 else {k: v[rank::world] for k, v in batch.items()}


def gathered(mine: Scored) -> Scored:
    """Every rank's row slice put back together, so metrics under torchrun cover all rows."""
    _, world = rank_world()
    if world == 1:
        return mine
    parts: list[Scored | None] = [None] * world
    dist.all_gather_object(parts, mine)
    fields = ("sample_id", "labels", "logits", "users", "random_exposure")
    return Scored(*(np.concatenate([getattr(part, f) for part in parts]) for f in fields))  # type: ignore[arg-type]
