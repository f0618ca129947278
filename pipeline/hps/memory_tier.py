"""`MemoryTier`: a bounded cache of full rows (weights and optimizer state) in CPU memory.

A row's weights and its optimizer state live in two arrays addressed by slot (the layout of
fbgemm's table-batched embedding, which trains them in place: `kernels.py`), found through a
`KeyIndex`. Eviction is
LRU (oldest access) or LFU (fewest accesses, oldest first among equals), skips rows pinned by an
in-flight batch, and hands dirty rows back to the caller for write-back to the SSD tier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.hps import arrays
from pipeline.hps.key_index import KeyIndex

# Bytes of bookkeeping per slot besides the row: key, tick, count, step (8 each), dirty, pins, index share.
SLOT_OVERHEAD_BYTES = 8 * 4 + 1 + 4 + 40


@dataclass
class Evicted:
    """Rows that left the memory tier: all keys and steps; rows only where dirty."""

    keys: np.ndarray
    steps: np.ndarray
    dirty: np.ndarray
    dirty_rows: np.ndarray


class MemoryTierFull(RuntimeError):
    """Every row is pinned by an in-flight batch: the tier is smaller than two batches' working sets."""


class MemoryTier:
    """Bounded row cache with LRU/LFU eviction and dirty write-back."""

    def __init__(self, capacity_rows: int, width: int, policy: Literal["lru", "lfu"] = "lru",
                 evict_fraction: float = 0.01, dim: int | None = None) -> None:
        """`width` floats per row, of which the first `dim` (default: all) are weights, the rest state."""
        if capacity_rows < 1:
            raise ValueError(f"memory tier needs at least one row of capacity, got {capacity_rows}")
        self.capacity = capacity_rows
        self.width = width
        self.dim = width if dim is None else dim
        self.policy = policy
        # Evicting a small batch at once amortises the O(capacity) victim search.
        self.evict_batch = max(1, math.ceil(evict_fraction * capacity_rows))
        # Pages are resident only once written: memory grows as rows arrive.
        self.weights = arrays.empty((capacity_rows, self.dim))
        self.state = arrays.empty((capacity_rows, width - self.dim))
        self.clear()

    def clear(self) -> None:
        """Forget every row (the row array itself is reused)."""
        capacity_rows = self.capacity
        self.index = KeyIndex(columns=1, capacity=capacity_rows)
        self.slot_key = np.full(capacity_rows, -1, dtype=np.int64)
        self.tick = np.zeros(capacity_rows, dtype=np.int64)
        self.count = np.zeros(capacity_rows, dtype=np.int64)
        self.step = np.zeros(capacity_rows, dtype=np.int64)
        self.dirty = np.zeros(capacity_rows, dtype=bool)
        self.pins = np.zeros(capacity_rows, dtype=np.int32)
        self._free = np.arange(capacity_rows - 1, -1, -1, dtype=np.int64)
        self._free_top = capacity_rows
        self._clock = 0

    def __len__(self) -> int:
        return self.capacity - self._free_top

    @property
    def nbytes(self) -> int:
        return len(self) * (self.width * 4 + SLOT_OVERHEAD_BYTES)

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where not cached."""
        return self.index.get(keys)

    def touch(self, slots: np.ndarray) -> None:
        """Record an access in order (unique slots): newest tick, one more use."""
        self.tick[slots] = self._clock + np.arange(len(slots))
        self._clock += len(slots)
        self.count[slots] += 1

    def read(self, slots: np.ndarray) -> np.ndarray:
        """Full rows, weights then state."""
        return np.concatenate([np.take(self.weights, slots, axis=0), np.take(self.state, slots, axis=0)], axis=1)

    def write(self, slots: np.ndarray, rows: np.ndarray) -> None:
        """Overwrite full rows; they now differ from the SSD copy."""
        self._store(slots, rows)
        self.mark_dirty(slots)

    def mark_dirty(self, slots: np.ndarray) -> None:
        """Rows updated in place (by a kernel) now differ from the SSD copy."""
        self.dirty[slots] = True

    def _store(self, slots: np.ndarray, rows: np.ndarray) -> None:
        self.weights[slots] = rows[:, :self.dim]
        self.state[slots] = rows[:, self.dim:]

    def pin(self, slots: np.ndarray) -> None:
        self.pins[slots] += 1

    def unpin(self, slots: np.ndarray) -> None:
        self.pins[slots] -= 1

    # -- membership ----------------------------------------------------------------------------

    def insert(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray, dirty: bool) -> tuple[np.ndarray, Evicted]:
        """Add rows for absent, unique keys; evicts unpinned rows if full. Returns slots and what was evicted."""
        evicted = self.evict(len(keys) - self._free_top) if len(keys) > self._free_top else _nothing(self.width)
        slots = self._free[self._free_top - len(keys):self._free_top][::-1].copy()
        self._free_top -= len(keys)
        self._store(slots, rows)
        self.slot_key[slots] = keys
        self.step[slots] = steps
        self.dirty[slots] = dirty
        self.count[slots] = 0
        self.touch(slots)
        self.index.put(keys, slots)
        return slots, evicted

    def evict(self, needed: int) -> Evicted:
        """Evict at least `needed` unpinned rows, chosen by the policy."""
        evictable = (self.slot_key >= 0) & (self.pins == 0)
        available = int(evictable.sum())
        if available < needed:
            raise MemoryTierFull(
                f"memory tier: {needed} more rows needed but only {available} of {self.capacity} are unpinned; "
                f"raise memory_capacity_bytes to hold at least two batches' unique keys")
        victims = self._choose(evictable, min(available, max(needed, self.evict_batch)))
        return self._remove_slots(victims)

    def _choose(self, evictable: np.ndarray, n: int) -> np.ndarray:
        candidates = np.flatnonzero(evictable)
        if n >= len(candidates):
            return candidates
        ticks = self.tick[candidates]
        if self.policy == "lru":
            return candidates[np.argpartition(ticks, n - 1)[:n]]
        counts = self.count[candidates]
        threshold = np.partition(counts, n - 1)[n - 1]
        below = candidates[counts < threshold]
        tied = np.flatnonzero(counts == threshold)
        rest = n - len(below)
        oldest_tied = tied[np.argpartition(ticks[tied], rest - 1)[:rest]] if rest < len(tied) else tied
        return np.concatenate([below, candidates[oldest_tied]])

    def remove(self, keys: np.ndarray) -> Evicted:
        """Drop cached keys (absent ones are ignored)."""
        slots = self.lookup(keys)
        return self._remove_slots(slots[slots >= 0])

    def expire(self, before_step: int) -> Evicted:
        """Drop unpinned rows last used before `before_step`."""
        stale = np.flatnonzero((self.slot_key >= 0) & (self.step < before_step) & (self.pins == 0))
        return self._remove_slots(stale)

    def _remove_slots(self, slots: np.ndarray) -> Evicted:
        keys = self.slot_key[slots].copy()
        dirty = self.dirty[slots].copy()
        evicted = Evicted(keys=keys, steps=self.step[slots].copy(), dirty=dirty,
                          dirty_rows=self.read(slots[dirty]))
        self.index.remove(keys)
        self.slot_key[slots] = -1
        self.dirty[slots] = False
        self._free[self._free_top:self._free_top + len(slots)] = slots
        self._free_top += len(slots)
        return evicted

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, slots) of every cached row."""
        slots = np.flatnonzero(self.slot_key >= 0)
        return self.slot_key[slots], slots


def _nothing(width: int) -> Evicted:
    empty = np.empty(0, dtype=np.int64)
    return Evicted(keys=empty, steps=empty, dirty=np.empty(0, dtype=bool),
                   dirty_rows=np.empty((0, width), dtype=np.float32))
