"""Large arrays for the tiers, backed by transparent huge pages where the kernel offers them.

Tier rows and index tables are read at random, one row per key: with 4 KiB pages nearly every
access also misses the TLB. A private anonymous mapping advised MADV_HUGEPAGE is backed by 2 MiB
pages (measured 1.5× faster random index lookups on a 10M-key table, docs/hps.md), and like
`torch.empty` it is resident only where written.
"""

from __future__ import annotations

import mmap

import numpy as np

_HUGE_PAGE_FROM = 4 << 20  # smaller arrays gain nothing and would round up to a 2 MiB page


def empty(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array; huge-page backed when at least a few MiB."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < _HUGE_PAGE_FROM:
        return np.empty(shape, dtype=dtype)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        mapping.madvise(mmap.MADV_HUGEPAGE)
    # The array keeps the mapping alive through its base buffer.
    return np.frombuffer(mapping, dtype=dtype).reshape(shape)
