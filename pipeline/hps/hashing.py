"""Key hashing shared by the index, the shard router and row initialisation.

Every placement and every initial value is a pure function of the key, so a row is the same
whichever shard, process or tier creates it (1-process and N-process runs agree). `mix` is
compiled (numba) so that `KeyIndex` calls it per key inside its own compiled loops.
"""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True, inline="always")
def mix(value: np.int64) -> np.uint64:
    """SplitMix64 finaliser of one int64: a well-spread uint64 hash."""
    z = np.uint64(value) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _mix_all(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=np.uint64)
    for i in range(len(values)):
        out[i] = mix(values[i])
    return out


def mix64(values: np.ndarray) -> np.ndarray:
    """`mix` of every value of an int64 array (any shape)."""
    flat = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    return _mix_all(flat).reshape(np.shape(values))


def shard_of(keys: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard that owns each key (hash, not range, so hot key ranges spread evenly)."""
    if num_shards == 1:
        return np.zeros(len(keys), dtype=np.int64)
    # Salted so shard choice is independent of the index's bucket choice.
    return (mix64(keys ^ np.int64(0x5DEECE66D)) % np.uint64(num_shards)).astype(np.int64)


def initial_rows(keys: np.ndarray, dim: int, scale: float, seed: int) -> np.ndarray:
    """Deterministic uniform(-scale, scale) weights per key: a row's first value never depends on where it is made."""
    if scale == 0.0 or len(keys) == 0:
        return np.zeros((len(keys), dim), dtype=np.float32)
    counters = keys.astype(np.int64)[:, None] * np.int64(dim) + np.arange(dim, dtype=np.int64)[None, :]
    bits = mix64(counters ^ np.int64(seed * 0x2545F4914F6CDD1D % (1 << 62)))
    unit = (bits >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))
    return (unit * np.float32(2 * scale) - np.float32(scale)).astype(np.float32, copy=False)
