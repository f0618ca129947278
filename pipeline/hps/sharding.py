"""Sharding: which process owns a key, and the all-to-all that moves keys, rows and gradients.

Keys are hashed onto `num_shards` shards; shard s lives on rank s % world_size, so a snapshot
taken with one shard count can be restored onto any other by re-hashing. One process is the
degenerate case (`LocalExchange`): nothing moves.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist

from pipeline.hps.hashing import shard_of


def owner_of(keys: np.ndarray, num_shards: int, world_size: int) -> np.ndarray:
    """Rank that owns each key."""
    return shard_of(keys, num_shards) % world_size


def local_shards(num_shards: int, rank: int, world_size: int) -> list[int]:
    return [s for s in range(num_shards) if s % world_size == rank]


class Exchange(Protocol):
    """All-to-all of variable-length tensors between the ranks of one group."""

    rank: int
    world_size: int
    bytes_sent: int
    bytes_received: int

    def all_to_all(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """parts[j] goes to rank j; returns what each rank sent here, in rank order."""
        ...

    def barrier(self) -> None: ...


class LocalExchange:
    """One process: every part is already home."""

    rank = 0
    world_size = 1
    bytes_sent = 0
    bytes_received = 0

    def all_to_all(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        return parts

    def barrier(self) -> None:
        return None


class DistExchange:
    """torch.distributed all_to_all_single with uneven splits (gloo on CPU, nccl on GPU)."""

    def __init__(self, group: dist.ProcessGroup, device: torch.device) -> None:
        self.group = group
        self.device = device
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.bytes_sent = 0
        self.bytes_received = 0

    def all_to_all(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(parts) != self.world_size:
            raise ValueError(f"all_to_all needs one part per rank ({self.world_size}), got {len(parts)}")
        tail = tuple(parts[0].shape[1:])
        row = int(np.prod(tail, dtype=np.int64)) if tail else 1
        send_rows = torch.tensor([len(p) for p in parts], dtype=torch.int64, device=self.device)
        recv_rows = torch.empty_like(send_rows)
        dist.all_to_all_single(recv_rows, send_rows, group=self.group)
        recv_counts = recv_rows.tolist()
        send = torch.cat([p.reshape(-1) for p in parts]).to(self.device)
        recv = torch.empty(sum(recv_counts) * row, dtype=send.dtype, device=self.device)
        dist.all_to_all_single(recv, send, output_split_sizes=[c * row for c in recv_counts],
                               input_split_sizes=[len(p) * row for p in parts], group=self.group)
        self.bytes_sent += send.numel() * send.element_size()
        self.bytes_received += recv.numel() * recv.element_size()
        return [chunk.reshape((-1, *tail)) for chunk in recv.split([c * row for c in recv_counts])]

    def barrier(self) -> None:
        dist.barrier(group=self.group)


def make_exchanges(device: torch.device) -> tuple[Exchange, Exchange]:
    """(step exchange, prefetch exchange): separate groups, because the prefetch thread talks
    while the training thread does; the prefetch group is gloo since keys stay on the CPU."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return LocalExchange(), LocalExchange()
    backend = dist.get_backend()
    step_device = device if backend == "nccl" else torch.device("cpu")
    step = DistExchange(dist.new_group(backend=backend), step_device)
    prefetch = DistExchange(dist.new_group(backend="gloo"), torch.device("cpu"))
    return step, prefetch
