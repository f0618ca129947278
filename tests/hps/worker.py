"""A tiny real training run over the parameter server: in-process for tests, or as a worker process.

As a script it runs under `torchrun` (gloo on CPU, or nccl with one GPU per rank; one shard per
process, dense layer under DDP) or as a plain subprocess that the SIGKILL test kills and restarts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.hps import HPSConfig, ParameterServer, PSEmbedding, PSEmbeddingBag, bag_keys
from pipeline.hps.memory_tier import SLOT_OVERHEAD_BYTES

SLOTS = ["user", "item", "category"]
DIM = 8
GLOBAL_BATCH = 16
SEQUENCE = 5
NUM_IDS = 400


def make_config(ssd_path: Path, **overrides: object) -> HPSConfig:
    """Small enough that rows keep moving between memory and SSD, with admission and TTL active."""
    # Two steps pin up to ~70 rows; 90 rows of memory per process force SSD traffic.
    values: dict[str, object] = dict(
        dim=DIM, num_keys=10_000, optimizer="adagrad", lr=0.05, eps=1e-10, init_scale=0.1,
        memory_capacity_bytes=90 * (4 * 2 * DIM + SLOT_OVERHEAD_BYTES), evict_fraction=0.05, admit_after=2,
        ttl_steps=12, expire_every=3,
        ssd_path=ssd_path, segment_rows=32)
    values.update(overrides)
    return HPSConfig(**values)


def make_batch(step: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
    """Step `step`'s global batch (skewed ids, so keys repeat across steps and ranks), this rank's slice."""
    rng = np.random.default_rng(10_000 + step)
    ranks = np.minimum(rng.zipf(1.3, size=(GLOBAL_BATCH, len(SLOTS) + SEQUENCE)), NUM_IDS) - 1
    ids = (ranks * 7919 + np.arange(ranks.shape[1]) * 101) % NUM_IDS
    lengths = rng.integers(0, SEQUENCE + 1, GLOBAL_BATCH)
    labels = rng.random(GLOBAL_BATCH) < 0.3
    part = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
    return {"ids": torch.from_numpy(ids[part, :len(SLOTS)].copy()),
            "seq": torch.from_numpy(ids[part, len(SLOTS):] + NUM_IDS),
            "lengths": torch.from_numpy(lengths[part]),
            "label": torch.from_numpy(labels[part].astype(np.float32))}


def keys_of(batch: dict[str, torch.Tensor]) -> list:
    if "seq_keys" not in batch:
        batch["seq_keys"] = bag_keys(batch["seq"], batch["lengths"])
    return [batch["ids"], batch["seq_keys"]]


class TinyModel(nn.Module):
    """Per-slot embeddings and a pooled history from the server; one dense layer of ordinary parameters."""

    def __init__(self, server: ParameterServer) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fields = PSEmbedding(server, SLOTS)
        self.history = PSEmbeddingBag(server, "history", mode="mean")
        self.head = nn.Linear(DIM * (len(SLOTS) + 1), 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.fields(batch["ids"]).flatten(1)
        history = self.history(batch["seq"], lengths=batch["lengths"])
        return self.head(torch.cat([fields, history], dim=1)).squeeze(1)


def train(server: ParameterServer, model: nn.Module, optimizer: torch.optim.Optimizer, start: int, stop: int,
          checkpoint_dir: Path | None = None, checkpoint_every: int = 0, marker: Path | None = None) -> None:
    """Steps [start, stop); snapshot after every `checkpoint_every`-th; append each finished step to `marker`."""
    batches = (make_batch(s, server.rank, server.world_size) for s in range(start, stop))
    for step, batch in zip(range(start, stop), server.pipeline(batches, keys_of)):
        loss = nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"].to(server.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            server.checkpoint(checkpoint_dir, dense={"model": _plain(model).state_dict(),
                                                     "optimizer": optimizer.state_dict(), "next_step": step + 1})
        if marker is not None:
            with open(marker, "a") as f:
                f.write(f"{step}\n")


def resume(server: ParameterServer, model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint_dir: Path) -> int:
    """Restore everything from the latest snapshot; returns the step to continue from."""
    dense = server.restore(checkpoint_dir)
    _plain(model).load_state_dict(dense["model"])
    optimizer.load_state_dict(dense["optimizer"])
    return int(dense["next_step"])


def all_keys() -> np.ndarray:
    return np.arange(2 * NUM_IDS)


def table(server: ParameterServer) -> dict[int, np.ndarray]:
    """key → full row for every key that has a row on this process."""
    keys = all_keys()
    rows, found = server.read_rows(keys)
    return dict(zip(keys[found].tolist(), rows[found]))


def build(ssd_path: Path, **overrides: object) -> tuple[ParameterServer, nn.Module, torch.optim.Optimizer]:
    server = ParameterServer(make_config(ssd_path, **overrides))
    model = TinyModel(server).to(server.device)
    if server.world_size > 1:
        model = DistributedDataParallel(model)
    return server, model, torch.optim.Adam(model.parameters(), lr=0.01)


def _plain(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True, help="folder for SSD tiers and outputs")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    args = parser.parse_args()
    device = "cpu"
    if "WORLD_SIZE" in os.environ:
        if args.backend == "nccl":
            device = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(device)
        dist.init_process_group(args.backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    server, model, optimizer = build(args.work / f"ssd-rank{rank}-{'resumed' if args.resume else 'first'}",
                                     device=device)
    start = resume(server, model, optimizer, args.checkpoint) if args.resume else 0
    train(server, model, optimizer, start, args.steps, args.checkpoint, args.checkpoint_every, args.marker)
    if not args.checkpoint_every:
        server.checkpoint(args.checkpoint, dense={"model": _plain(model).state_dict(),
                                                  "optimizer": optimizer.state_dict(), "next_step": args.steps})
    rows = table(server)
    np.savez(args.work / f"table-rank{rank}.npz", keys=np.array(list(rows), dtype=np.int64),
             rows=np.array(list(rows.values()), dtype=np.float32).reshape(len(rows), -1))
    if rank == 0:
        torch.save(_plain(model).state_dict(), args.work / "dense.pt")
    server.close()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
