"""`Shard`: one hash shard's rows across the memory and SSD tiers, with admission and expiry.

The work of a step is split in two so that the slow half can run ahead in the prefetch thread:
`resolve` only moves rows between tiers and pins them (it never changes a value, a count or a
step), while `admit` — counting, creating rows, stamping last use — runs in step order on the
training thread. That is what makes prefetching give bit-identical results to not prefetching.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pipeline.hps.admission import AdmissionCounter
from pipeline.hps.changes import ChangeLog
from pipeline.hps.config import HPSConfig
from pipeline.hps.hashing import initial_rows
from pipeline.hps.kernels import RowKernel, make_kernel
from pipeline.hps.memory_tier import Evicted, MemoryTier
from pipeline.hps.optimizers import SparseOptimizer
from pipeline.hps.ssd_tier import SSDTier
from pipeline.hps.stats import StatsRecorder


class Shard:
    """Rows of one shard: cached in memory, all persisted on SSD, admitted and expired by policy."""

    def __init__(self, shard_id: int, config: HPSConfig, optimizer: SparseOptimizer, memory_rows: int,
                 expected_rows: int, stats: StatsRecorder, device: torch.device) -> None:
        self.shard_id = shard_id
        self.config = config
        self.optimizer = optimizer
        self.width = optimizer.width
        self.stats = stats
        self.memory = MemoryTier(memory_rows, self.width, config.eviction, config.evict_fraction, dim=optimizer.dim)
        self.kernel: RowKernel = make_kernel(self.memory, optimizer, device, config.working_set_table)
        self.ssd = SSDTier(Path(config.ssd_path) / f"shard-{shard_id:05d}", self.width, config.segment_rows,
                           config.compact_below, config.background_compaction, expected_rows=expected_rows,
                           track_steps=config.ttl_steps is not None)
        self.admission = AdmissionCounter(config.admit_after)
        self.changes = ChangeLog()
        # Pin counts are read-modify-write from both the training and the prefetch thread.
        self._pin_lock = threading.Lock()
        self._row_bytes = 4 * self.width

    # -- a step, in order --------------------------------------------------------------------

    def resolve(self, keys: np.ndarray) -> np.ndarray:
        """Bring every existing row of `keys` (unique) into memory and pin it; slot per key, -1 if none exists."""
        slots = self.memory.lookup(keys)
        hit = slots >= 0
        with self._pin_lock:
            self.memory.pin(slots[hit])
        self.memory.touch(slots[hit])
        missing = np.flatnonzero(~hit)
        rows, steps, on_ssd = self.ssd.get(keys[missing])
        loaded = missing[on_ssd]
        if len(loaded):
            new_slots, evicted = self.memory.insert(keys[loaded], rows[on_ssd], steps[on_ssd], dirty=False)
            self._write_back(evicted)
            with self._pin_lock:
                self.memory.pin(new_slots)
            slots[loaded] = new_slots
        n_loaded = len(loaded)
        self.stats.add(memory_hits=int(hit.sum()), memory_misses=len(missing), ssd_hits=n_loaded,
                       ssd_misses=len(missing) - n_loaded, rows_ssd_to_memory=n_loaded,
                       bytes_ssd_to_memory=n_loaded * self._row_bytes)
        return slots

    def admit(self, keys: np.ndarray, counts: np.ndarray, slots: np.ndarray, step: int, train: bool) -> np.ndarray:
        """Count row-less keys, create rows for those now admitted, stamp last use; returns final slots."""
        if not train:
            self.stats.add(rows_default=int((slots < 0).sum()))
            return slots
        absent = np.flatnonzero(slots < 0)
        if len(absent):
            admitted = absent[self.admission.observe(keys[absent], counts[absent], step)]
            if len(admitted):
                weights = initial_rows(keys[admitted], self.optimizer.dim, self.config.init_scale, self.config.seed)
                rows = np.concatenate([weights, self.optimizer.initial_state(len(admitted)).numpy()], axis=1)
                new_slots, evicted = self.memory.insert(keys[admitted], rows, np.full(len(admitted), step), dirty=True)
                self._write_back(evicted)
                with self._pin_lock:
                    self.memory.pin(new_slots)
                slots = slots.copy()
                slots[admitted] = new_slots
                self.changes.written(keys[admitted])
            self.stats.add(rows_admitted=len(admitted), rows_default=len(absent) - len(admitted))
        self.memory.step[slots[slots >= 0]] = step
        return slots

    def gather(self, slots: np.ndarray, train: bool) -> torch.Tensor:
        """Weights of the rows of `slots` (pinned, all >= 0) for a step; when training, ready for `update`."""
        with torch.set_grad_enabled(train):
            return self.kernel.gather(slots)

    def update(self, keys: np.ndarray, slots: np.ndarray, gathered: torch.Tensor, grads: torch.Tensor,
               step: int) -> None:
        """Apply the optimizer to a step's rows (slots pinned by it) in the memory tier."""
        self.kernel.update(gathered, slots, grads, step)
        self.changes.written(keys)

    def release(self, slots: np.ndarray) -> None:
        """Unpin a finished step's rows, after its write."""
        with self._pin_lock:
            self.memory.unpin(slots[slots >= 0])

    def expire(self, before_step: int) -> np.ndarray:
        """Delete rows (and admission candidates) unused since before `before_step`; returns expired keys."""
        gone = self.memory.expire(before_step).keys
        self.ssd.delete(gone)
        cached, _ = self.memory.items()
        on_ssd_only = self.ssd.expire(before_step, keep=cached)
        self.admission.expire(before_step)
        expired = np.concatenate([gone, on_ssd_only])
        self.changes.deleted(expired)
        self.stats.add(rows_expired=len(expired))
        return expired

    def _write_back(self, evicted: Evicted) -> None:
        dirty = evicted.dirty
        self.ssd.put(evicted.keys[dirty], evicted.dirty_rows, evicted.steps[dirty])
        # Clean rows are already on SSD; only their last-use step may be newer.
        self.ssd.touch(evicted.keys[~dirty], evicted.steps[~dirty])
        n_dirty = int(dirty.sum())
        self.stats.add(rows_evicted=len(evicted.keys), rows_memory_to_ssd=n_dirty,
                       bytes_memory_to_ssd=n_dirty * self._row_bytes)

    # -- whole-shard operations (no step in flight) ---------------------------------------------

    def peek(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full rows, found) from whichever tier holds each key, with no side effects on either."""
        rows = np.zeros((len(keys), self.width), dtype=np.float32)
        slots = self.memory.lookup(keys)
        cached = slots >= 0
        rows[cached] = self.memory.read(slots[cached])
        uncached = np.flatnonzero(~cached)
        ssd_rows, _, on_ssd = self.ssd.get(keys[uncached])
        rows[uncached[on_ssd]] = ssd_rows[on_ssd]
        found = cached.copy()
        found[uncached[on_ssd]] = True
        return rows, found

    def rows(self, chunk_rows: int = 1 << 18) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every row of the shard as (keys, full rows, last steps) chunks; memory copies win over SSD."""
        cached_keys, cached_slots = self.memory.items()
        for start in range(0, len(cached_keys), chunk_rows):
            part = cached_slots[start:start + chunk_rows]
            yield cached_keys[start:start + chunk_rows], self.memory.read(part), self.memory.step[part]
        for keys, rows, steps in self.ssd.scan(chunk_rows):
            fresh = self.memory.lookup(keys) < 0
            if fresh.any():
                yield keys[fresh], rows[fresh], steps[fresh]

    def load(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray) -> None:
        """Bulk-write rows (restore, or importing a trained table): SSD gets all, memory what fits."""
        self._write_back(self.memory.remove(keys))
        self.ssd.put(keys, rows, steps)
        self.admission.forget(keys)
        room = self.memory.capacity - len(self.memory)
        if room:
            self.memory.insert(keys[:room], rows[:room], steps[:room], dirty=False)

    def clear(self) -> None:
        self.memory.clear()
        self.ssd.clear()
        self.admission = AdmissionCounter(self.config.admit_after)
        self.changes.clear()

    def close(self) -> None:
        self.ssd.close()
