"""`KeyIndex`: a hash map from non-negative int64 keys to rows of int64 values, batched and compiled.

Both the memory tier (key → slot) and the SSD tier (key → file location, last step) use it, once
per batch of keys. Open addressing with linear probing over one interleaved array (key and values
of an entry share a cache line); deletion shifts the following entries back, so the table never
fills with tombstones. The loops are compiled by numba and release the GIL, so the prefetch thread
resolves keys while the training thread runs.

Why hand-written (compiled with numba) rather than a library: no maintained PyPI package offers a
mutable int64 → int64-row map with batched get/put/remove over numpy arrays (cykhash's last release
is a 2023 source-only package with per-key removal; pandas' khash tables are private and cannot
delete). Measured against the earlier numpy version in docs/hps.md ("Key index").
"""

from __future__ import annotations

import numba
import numpy as np

from pipeline.hps import arrays
from pipeline.hps.hashing import mix

_EMPTY = -1


@numba.njit(cache=True, nogil=True, inline="always")
def _home(key: np.int64, size: int) -> np.int64:
    # Multiply-shift range reduction: any table size, not only powers of two.
    return np.int64(((mix(key) >> np.uint64(32)) * np.uint64(size)) >> np.uint64(32))


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(table: np.ndarray, key: np.int64) -> np.int64:
    """Position of `key`, or of the empty cell that ends its probe run (where it would be inserted)."""
    size = table.shape[0]
    pos = _home(key, size)
    while table[pos, 0] != key and table[pos, 0] != _EMPTY:
        pos += 1
        if pos == size:
            pos = 0
    return pos


@numba.njit(cache=True, nogil=True)
def _positions(table: np.ndarray, keys: np.ndarray, out: np.ndarray) -> None:
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        out[i] = pos if table[pos, 0] == keys[i] else -1


@numba.njit(cache=True, nogil=True)
def _get_rows(table: np.ndarray, keys: np.ndarray, out: np.ndarray, found: np.ndarray) -> None:
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        found[i] = table[pos, 0] == keys[i]
        if found[i]:
            out[i] = table[pos, 1:]


@numba.njit(cache=True, nogil=True)
def _put(table: np.ndarray, keys: np.ndarray, values: np.ndarray) -> int:
    """Insert or overwrite each key; returns how many were new. The caller guarantees room."""
    added = 0
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        if table[pos, 0] == _EMPTY:
            table[pos, 0] = keys[i]
            added += 1
        table[pos, 1:] = values[i]
    return added


@numba.njit(cache=True, nogil=True)
def _set_column(table: np.ndarray, keys: np.ndarray, column: int, values: np.ndarray) -> None:
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        if table[pos, 0] == keys[i]:
            table[pos, column + 1] = values[i]


@numba.njit(cache=True, nogil=True)
def _remove(table: np.ndarray, keys: np.ndarray, old: np.ndarray, found: np.ndarray) -> int:
    """Delete each key (backward-shift deletion); returns how many were present."""
    size = table.shape[0]
    removed = 0
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        found[i] = table[pos, 0] == keys[i]
        if not found[i]:
            continue
        removed += 1
        old[i] = table[pos, 1:]
        # Move back every later entry of the probe run whose home does not lie in (hole, entry].
        hole = pos
        nxt = pos + 1 if pos + 1 < size else 0
        while table[nxt, 0] != _EMPTY:
            home = _home(table[nxt, 0], size)
            if (nxt > hole and (home <= hole or home > nxt)) or (nxt < hole and home <= hole and home > nxt):
                table[hole] = table[nxt]
                hole = nxt
            nxt = nxt + 1 if nxt + 1 < size else 0
        table[hole, 0] = _EMPTY
    return removed


class KeyIndex:
    """Batched int64 → int64[columns] map; every method takes and returns numpy arrays."""

    def __init__(self, columns: int = 1, capacity: int = 1024, max_load: float = 0.7) -> None:
        self.columns = columns
        self.max_load = max_load
        self._live = 0
        self._table = _empty_table(_table_size(capacity, max_load), columns)

    def __len__(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Table position of each key, -1 where absent (positions change on any write)."""
        out = np.empty(len(keys), dtype=np.int64)
        _positions(self._table, _as_keys(keys), out)
        return out

    def get(self, keys: np.ndarray, column: int = 0) -> np.ndarray:
        """Value in `column` for each key, -1 where absent."""
        rows, found = self.get_rows(keys)
        return np.where(found, rows[:, column], -1)

    def get_rows(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All value columns for each key and a found mask (absent keys get zeros)."""
        out = np.zeros((len(keys), self.columns), dtype=np.int64)
        found = np.empty(len(keys), dtype=np.bool_)
        _get_rows(self._table, _as_keys(keys), out, found)
        return out, found

    def put(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Insert or overwrite; `keys` must be unique, `values` shaped [n] or [n, columns]."""
        values = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(len(keys), self.columns))
        if self._live + len(keys) > self.max_load * len(self._table):
            self._rehash(self._live + len(keys))
        self._live += _put(self._table, _as_keys(keys), values)

    def set_column(self, keys: np.ndarray, column: int, values: np.ndarray) -> None:
        """Overwrite one column for keys that are present; absent keys are ignored."""
        values = np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=np.int64), (len(keys),)))
        _set_column(self._table, _as_keys(keys), column, values)

    def remove(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Delete keys; returns their value rows before removal (zeros where absent) and a found mask."""
        old = np.zeros((len(keys), self.columns), dtype=np.int64)
        found = np.empty(len(keys), dtype=np.bool_)
        self._live -= _remove(self._table, _as_keys(keys), old, found)
        return old, found

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (key, value row) pair, in table order."""
        live = self._table[:, 0] >= 0
        entries = self._table[live]
        return entries[:, 0].copy(), entries[:, 1:].copy()

    def clear(self) -> None:
        self._live = 0
        self._table = _empty_table(_table_size(1024, self.max_load), self.columns)

    def _rehash(self, expected_live: int) -> None:
        keys, values = self.items()
        self._table = _empty_table(_table_size(max(expected_live, 1) * 3 // 2, self.max_load), self.columns)
        self._live = _put(self._table, keys, np.ascontiguousarray(values))


def _as_keys(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys, dtype=np.int64)


def _empty_table(size: int, columns: int) -> np.ndarray:
    table = arrays.empty((size, columns + 1), np.int64)
    table[:, 0] = _EMPTY
    return table


def _table_size(capacity: int, max_load: float) -> int:
    return max(64, int(capacity / max_load) + 1)
