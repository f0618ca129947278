"""Row kernels: a step's embedding lookup, and its sparse optimizer update, over the memory tier.

`gather(slots)` returns the weights of memory-tier slots as a tensor that remembers how to update
them; `update(gathered, slots, grads)` applies the optimizer to exactly those rows. Three kernels:

- `InPlaceKernel` (CPU): fbgemm's table-batched embedding (TBE) built over the memory tier's own
  weight and state arrays, so lookup and the fused backward + optimizer step read and write the
  rows where they live; no copy in, no write-back.
- `CompactKernel` (CUDA, or any device): the step's rows are copied into a compact working-set
  TBE on the device, trained there by the fused kernel and copied back into their slots.
- `TorchKernel`: the optimizer in torch over the memory tier's arrays, for `adam`, which fbgemm's
  CPU build does not implement ("Optimizer adam is not supported in CPU mode").
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np
import torch

from pipeline.hps.memory_tier import MemoryTier
from pipeline.hps.optimizers import SparseOptimizer


class RowKernel(Protocol):
    def gather(self, slots: np.ndarray) -> torch.Tensor:
        """Weights [n, dim] of unique memory-tier slots, on the training device."""

    def update(self, gathered: torch.Tensor, slots: np.ndarray, grads: torch.Tensor, step: int) -> None:
        """Apply the optimizer to the rows of `slots` (as gathered this step) given their summed gradients."""


def make_kernel(memory: MemoryTier, optimizer: SparseOptimizer, device: torch.device,
                table: str | None = None) -> RowKernel:
    """The fused kernel for the optimizer and device; `table` forces "memory_tier" or "compact"."""
    if optimizer.fbgemm_name is None:
        return TorchKernel(memory, optimizer, device)
    if (table or ("memory_tier" if device.type == "cpu" else "compact")) == "memory_tier":
        if device.type != "cpu":
            raise ValueError(f"the memory-tier table trains on the CPU only, not on {device}; use 'compact'")
        return InPlaceKernel(memory, optimizer)
    if device.type != "cpu" and _fbgemm_variant() == "cpu":
        raise RuntimeError(f"training on {device} needs fbgemm's CUDA build (pip install --no-deps fbgemm-gpu==1.8.0, "
                           "as benchmarks/hps_gpu.sh does); this environment has the CPU build, fbgemm-gpu-cpu")
    return CompactKernel(memory, optimizer, device)


def _fbgemm_variant() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import fbgemm_gpu
    return fbgemm_gpu.__variant__


# fbgemm's CPU backward slows down with the bags per feature: over 106K unique ids it took 85 ms as one
# feature against 49 ms dealt over 26 features of the same table (one thread, 10M-row table, 2026-12-01).
# A lookup therefore deals its ids round-robin over this many features; 16-128 measured alike.
_FEATURES = 32


class _FusedTable:
    """One fbgemm TBE table trained by the optimizer's fused backward; pooling of one id per bag.

    The TBE sees `_FEATURES` features over the one table: id i of a lookup is bag i // F of feature
    i % F, so the pooled output [bags, F * dim] viewed as [bags * F, dim] is the ids' rows in order.
    """

    def __init__(self, rows: int, optimizer: SparseOptimizer, device: torch.device,
                 weights: np.ndarray | None = None, state: np.ndarray | None = None) -> None:
        with warnings.catch_warnings():  # fbgemm announces every SSD-offload kernel its CPU build lacks
            warnings.simplefilter("ignore", DeprecationWarning)
            from fbgemm_gpu.split_embedding_configs import EmbOptimType
            from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode, PoolingMode
            from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
                ComputeDevice, EmbeddingLocation, SplitTableBatchedEmbeddingBagsCodegen)
            from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode

        cpu = device.type == "cpu"
        shared = None
        if weights is not None and state is not None:
            shared = {"weights": torch.from_numpy(weights).view(-1), "momentum1": torch.from_numpy(state).view(-1)}
        self.tbe = SplitTableBatchedEmbeddingBagsCodegen(
            [(rows, optimizer.dim, EmbeddingLocation.HOST if cpu else EmbeddingLocation.DEVICE,
              ComputeDevice.CPU if cpu else ComputeDevice.CUDA)], feature_table_map=[0] * _FEATURES,
            optimizer=EmbOptimType(optimizer.fbgemm_name), learning_rate=optimizer.lr, eps=optimizer.eps,
            weight_decay=optimizer.weight_decay,
            weight_decay_mode=WeightDecayMode.L2 if optimizer.weight_decay else WeightDecayMode.NONE,
            pooling_mode=PoolingMode.SUM, bounds_check_mode=BoundsCheckMode.NONE,
            device=device, preallocated_host_buffers=shared)
        self.rows, self.dim, self.device = rows, optimizer.dim, device
        suffix = "host" if cpu else "dev"
        self.weights = getattr(self.tbe, f"weights_{suffix}").view(rows, optimizer.dim)
        self.state = getattr(self.tbe, f"momentum1_{suffix}").view(rows, optimizer.state_width)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        n = len(indices)
        if n == 0:
            return torch.zeros((0, self.dim), device=self.device)
        bags = -(-n // _FEATURES)
        # Feature-major positions (feature f lists bags 0..bags-1, i.e. ids f, f + F, ...); past n: empty bags.
        position = torch.arange(bags * _FEATURES, device=self.device).view(bags, _FEATURES).t().reshape(-1)
        present = position < n
        offsets = torch.zeros(len(position) + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(present, 0, out=offsets[1:])
        pooled = self.tbe(indices[position[present]], offsets)
        return pooled.view(bags * _FEATURES, self.dim)[:n]


def _backward(gathered: torch.Tensor, grads: torch.Tensor) -> None:
    # Runs the TBE's fused backward, which applies the optimizer to the looked-up rows in place.
    if gathered.grad_fn is not None:
        torch.autograd.backward(gathered, grads.to(gathered.device))


class InPlaceKernel:
    """TBE over the memory tier's arrays: rows are looked up and updated where they live."""

    def __init__(self, memory: MemoryTier, optimizer: SparseOptimizer) -> None:
        self.memory = memory
        self.table = _FusedTable(memory.capacity, optimizer, torch.device("cpu"), memory.weights, memory.state)

    def gather(self, slots: np.ndarray) -> torch.Tensor:
        return self.table.lookup(torch.from_numpy(slots))

    def update(self, gathered: torch.Tensor, slots: np.ndarray, grads: torch.Tensor, step: int) -> None:
        _backward(gathered, grads)
        self.memory.mark_dirty(slots)


class CompactKernel:
    """A working-set TBE on the device: rows copied in per step, trained by the fused kernel, copied back."""

    def __init__(self, memory: MemoryTier, optimizer: SparseOptimizer, device: torch.device) -> None:
        self.memory = memory
        self.optimizer = optimizer
        self.device = device
        self.table: _FusedTable | None = None

    def gather(self, slots: np.ndarray) -> torch.Tensor:
        n = len(slots)
        if self.table is None or self.table.rows < n:
            self.table = _FusedTable(max(n, 1024, 2 * (self.table.rows if self.table else 0)), self.optimizer,
                                     self.device)
        with torch.no_grad():
            self.table.weights[:n].copy_(torch.from_numpy(np.take(self.memory.weights, slots, axis=0)))
            self.table.state[:n].copy_(torch.from_numpy(np.take(self.memory.state, slots, axis=0)))
        return self.table.lookup(torch.arange(n, device=self.device))

    def update(self, gathered: torch.Tensor, slots: np.ndarray, grads: torch.Tensor, step: int) -> None:
        _backward(gathered, grads)
        n = len(slots)
        self.memory.weights[slots] = self.table.weights[:n].detach().cpu().numpy()
        self.memory.state[slots] = self.table.state[:n].detach().cpu().numpy()
        self.memory.mark_dirty(slots)


class TorchKernel:
    """The optimizer's own torch update, in place on the memory tier's arrays (no fused kernel for it)."""

    def __init__(self, memory: MemoryTier, optimizer: SparseOptimizer, device: torch.device) -> None:
        self.memory = memory
        self.optimizer = optimizer
        self.device = device

    def gather(self, slots: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.take(self.memory.weights, slots, axis=0)).to(self.device)

    def update(self, gathered: torch.Tensor, slots: np.ndarray, grads: torch.Tensor, step: int) -> None:
        rows = torch.from_numpy(self.memory.read(slots)).to(self.device)
        self.optimizer.step(rows, grads, step)
        self.memory.write(slots, rows.cpu().numpy())
