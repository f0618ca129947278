"""`KeyIndex`: a vectorised hash map from non-negative int64 keys to rows of int64 values.

Both the memory tier (key → slot) and the SSD tier (key → file location, last step) use it.
"""

from __future__ import annotations

import numpy as np

from pipeline.hps.hashing import mix64

_EMPTY = -1
_DELETED = -2


class KeyIndex:
    """Open addressing with linear probing, every operation a few numpy passes over the whole batch.

    Hand-written: no maintained library offers a mutable int64 hash map with batched numpy
    get/put/remove; a Python dict costs ~100 B and ~0.1 µs of interpreter time per key.
    """

    def __init__(self, columns: int = 1, capacity: int = 1024, max_load: float = 0.6) -> None:
        self.columns = columns
        self.max_load = max_load
        self._live = 0
        self._deleted = 0
        self._allocate(_table_size(capacity, max_load))

    def _allocate(self, size: int) -> None:
        self._bits = size.bit_length() - 1
        self._mask = size - 1
        self._keys = np.full(size, _EMPTY, dtype=np.int64)
        self._values = np.zeros((size, self.columns), dtype=np.int64)

    def __len__(self) -> int:
        return self._live

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return (mix64(keys) >> np.uint64(64 - self._bits)).astype(np.int64)

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Table position of each key, -1 where absent."""
        found = np.full(len(keys), -1, dtype=np.int64)
        pending = np.arange(len(keys))
        pos = self._home(keys)
        probe_keys = keys
        while len(pending):
            at = self._keys[pos]
            hit = at == probe_keys
            found[pending[hit]] = pos[hit]
            more = ~hit & (at != _EMPTY)
            pending, pos, probe_keys = pending[more], (pos[more] + 1) & self._mask, probe_keys[more]
        return found

    def get(self, keys: np.ndarray, column: int = 0) -> np.ndarray:
        """Value in `column` for each key, -1 where absent."""
        pos = self.positions(keys)
        out = np.full(len(keys), -1, dtype=np.int64)
        hit = pos >= 0
        out[hit] = self._values[pos[hit], column]
        return out

    def get_rows(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All value columns for each key and a found mask (absent keys get zeros)."""
        pos = self.positions(keys)
        hit = pos >= 0
        out = np.zeros((len(keys), self.columns), dtype=np.int64)
        out[hit] = self._values[pos[hit]]
        return out, hit

    def put(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Insert or overwrite; `keys` must be unique, `values` shaped [n] or [n, columns]."""
        values = np.asarray(values, dtype=np.int64).reshape(len(keys), self.columns)
        pos = self.positions(keys)
        hit = pos >= 0
        self._values[pos[hit]] = values[hit]
        new_keys, new_values = keys[~hit], values[~hit]
        if len(new_keys) == 0:
            return
        if self._live + self._deleted + len(new_keys) > self.max_load * len(self._keys):
            self._rehash(self._live + len(new_keys))
        self._insert_absent(new_keys, new_values)

    def set_column(self, keys: np.ndarray, column: int, values: np.ndarray) -> None:
        """Overwrite one column for keys that are present; absent keys are ignored."""
        pos = self.positions(keys)
        hit = pos >= 0
        self._values[pos[hit], column] = np.broadcast_to(values, pos.shape)[hit]

    def remove(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Delete keys; returns their value rows before removal (zeros where absent) and a found mask."""
        pos = self.positions(keys)
        hit = pos >= 0
        old = np.zeros((len(keys), self.columns), dtype=np.int64)
        old[hit] = self._values[pos[hit]]
        self._keys[pos[hit]] = _DELETED
        removed = int(hit.sum())
        self._live -= removed
        self._deleted += removed
        if self._deleted > len(self._keys) // 4:
            self._rehash(self._live)
        return old, hit

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (key, value row) pair, in table order."""
        live = self._keys >= 0
        return self._keys[live].copy(), self._values[live].copy()

    def clear(self) -> None:
        self._live = self._deleted = 0
        self._allocate(_table_size(1024, self.max_load))

    def _insert_absent(self, keys: np.ndarray, values: np.ndarray) -> None:
        pending = np.arange(len(keys))
        pos = self._home(keys)
        while len(pending):
            free = self._keys[pos] < 0
            # Several keys may probe the same free cell in one pass: the first one wins it.
            cells, first = np.unique(pos[free], return_index=True)
            winners = np.flatnonzero(free)[first]
            self._keys[cells] = keys[pending[winners]]
            self._values[cells] = values[pending[winners]]
            placed = np.zeros(len(pending), dtype=bool)
            placed[winners] = True
            # Losers retry the same cell (now taken) and step on; blocked keys step on at once.
            step = ~free
            pos = np.where(step, (pos + 1) & self._mask, pos)
            pending, pos = pending[~placed], pos[~placed]
        self._live += len(keys)

    def _rehash(self, expected_live: int) -> None:
        keys, values = self.items()
        self._allocate(_table_size(max(expected_live, 1) * 3 // 2, self.max_load))
        self._live = self._deleted = 0
        if len(keys):
            self._insert_absent(keys, values)


def _table_size(capacity: int, max_load: float) -> int:
    size = 64
    while size * max_load < capacity:
        size *= 2
    return size
