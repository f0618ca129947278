"""`ChangeLog`: which keys were written or deleted since the last snapshot (for incremental export)."""

from __future__ import annotations

import numpy as np

_COMPACT_AT = 1 << 22


class ChangeLog:
    """An append-only list of (keys, written-or-deleted) events, folded to the last event per key."""

    def __init__(self) -> None:
        self._events: list[tuple[np.ndarray, bool]] = []
        self._length = 0

    def written(self, keys: np.ndarray) -> None:
        self._add(keys, True)

    def deleted(self, keys: np.ndarray) -> None:
        self._add(keys, False)

    def _add(self, keys: np.ndarray, written: bool) -> None:
        if len(keys) == 0:
            return
        self._events.append((keys.copy(), written))
        self._length += len(keys)
        if self._length > _COMPACT_AT:
            written_keys, deleted_keys = self.summary()
            self._events = [(deleted_keys, False), (written_keys, True)]
            self._length = len(written_keys) + len(deleted_keys)

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys whose last event is a write, keys whose last event is a delete), each sorted."""
        if not self._events:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        keys = np.concatenate([k for k, _ in self._events])
        flags = np.concatenate([np.full(len(k), w) for k, w in self._events])
        last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]
        keys, flags = keys[last], flags[last]
        order = np.argsort(keys)
        keys, flags = keys[order], flags[order]
        return keys[flags], keys[~flags]

    def clear(self) -> None:
        self._events = []
        self._length = 0
