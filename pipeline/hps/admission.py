"""`AdmissionCounter`: a key earns a row only after it has been seen `admit_after` times.

Counts are exact (a `KeyIndex` of candidate keys), so admission is deterministic and the same
on any number of shards; candidates that go unseen for the TTL are forgotten.
"""

from __future__ import annotations

import numpy as np

from pipeline.hps.key_index import KeyIndex

_COUNT, _STEP = 0, 1


class AdmissionCounter:
    """Occurrence counts of keys that do not have a row yet."""

    def __init__(self, admit_after: int) -> None:
        self.admit_after = admit_after
        self.candidates = KeyIndex(columns=2)

    def __len__(self) -> int:
        return len(self.candidates)

    def observe(self, keys: np.ndarray, counts: np.ndarray, step: int) -> np.ndarray:
        """Add this batch's occurrences of row-less unique keys; returns which are admitted now."""
        if self.admit_after <= 1:
            return np.ones(len(keys), dtype=bool)
        total = np.maximum(self.candidates.get(keys, _COUNT), 0) + counts
        admitted = total >= self.admit_after
        self.candidates.remove(keys[admitted])
        waiting = ~admitted
        self.candidates.put(keys[waiting], np.stack([total[waiting], np.full(int(waiting.sum()), step)], axis=1))
        return admitted

    def expire(self, before_step: int) -> None:
        keys, values = self.candidates.items()
        self.candidates.remove(keys[values[:, _STEP] < before_step])

    def forget(self, keys: np.ndarray) -> None:
        """Drop candidates that got a row by another route (a restore or bulk load)."""
        self.candidates.remove(keys)

    def state(self) -> dict[str, np.ndarray]:
        keys, values = self.candidates.items()
        return {"keys": keys, "counts": values[:, _COUNT], "steps": values[:, _STEP]}

    def load(self, keys: np.ndarray, counts: np.ndarray, steps: np.ndarray) -> None:
        self.candidates.clear()
        self.candidates.put(keys, np.stack([counts, steps], axis=1))
