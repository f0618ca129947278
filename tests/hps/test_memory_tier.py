"""Memory tier: LRU and LFU eviction order, pinning, dirty write-back."""

import numpy as np
import pytest

from pipeline.hps.memory_tier import MemoryTier, MemoryTierFull

WIDTH = 3


def row(key: int) -> np.ndarray:
    return np.full((1, WIDTH), key, dtype=np.float32)


def insert(tier: MemoryTier, key: int, dirty: bool = False) -> np.ndarray:
    slots, evicted = tier.insert(np.array([key]), row(key), np.array([0]), dirty=dirty)
    return evicted.keys


def use(tier: MemoryTier, key: int) -> None:
    tier.touch(tier.lookup(np.array([key])))


def test_lru_evicts_the_least_recently_used_row() -> None:
    tier = MemoryTier(3, WIDTH, "lru", evict_fraction=1e-9)
    for key in (1, 2, 3):
        insert(tier, key)
    use(tier, 1)
    assert insert(tier, 4).tolist() == [2]
    use(tier, 3)
    assert insert(tier, 5).tolist() == [1]
    assert sorted(tier.items()[0].tolist()) == [3, 4, 5]


def test_lfu_evicts_the_least_used_row_and_the_oldest_among_equals() -> None:
    tier = MemoryTier(3, WIDTH, "lfu", evict_fraction=1e-9)
    for key in (1, 2, 3):
        insert(tier, key)
    use(tier, 1)
    use(tier, 1)
    use(tier, 3)
    assert insert(tier, 4).tolist() == [2]   # uses: 1→3, 2→1, 3→2
    assert insert(tier, 5).tolist() == [4]   # 4 has one use; 3 has two
    use(tier, 5)
    use(tier, 5)
    assert insert(tier, 6).tolist() == [3]   # 3 has two uses; 1 and 5 have three


def test_pinned_rows_are_never_evicted_and_a_full_pin_set_is_a_clear_error() -> None:
    tier = MemoryTier(2, WIDTH, "lru", evict_fraction=1e-9)
    insert(tier, 1)
    insert(tier, 2)
    tier.pin(tier.lookup(np.array([1])))
    assert insert(tier, 3).tolist() == [2]
    tier.pin(tier.lookup(np.array([3])))
    with pytest.raises(MemoryTierFull, match="unpinned"):
        insert(tier, 4)
    tier.unpin(tier.lookup(np.array([1])))
    assert insert(tier, 4).tolist() == [1]


def test_only_dirty_rows_are_handed_back_for_write_back_with_their_latest_values() -> None:
    tier = MemoryTier(2, WIDTH, "lru", evict_fraction=1.0)
    insert(tier, 1)
    insert(tier, 2)
    updated = np.full((1, WIDTH), 42, dtype=np.float32)
    tier.write(tier.lookup(np.array([2])), updated)
    evicted = tier.evict(2)
    assert sorted(evicted.keys.tolist()) == [1, 2]
    assert evicted.keys[evicted.dirty].tolist() == [2]
    np.testing.assert_array_equal(evicted.dirty_rows, updated)


def test_batch_eviction_frees_a_share_of_capacity_at_once() -> None:
    tier = MemoryTier(10, WIDTH, "lru", evict_fraction=0.3)
    tier.insert(np.arange(10), np.zeros((10, WIDTH), np.float32), np.zeros(10), dirty=False)
    slots, evicted = tier.insert(np.array([99]), row(99), np.array([0]), dirty=False)
    assert sorted(evicted.keys.tolist()) == [0, 1, 2]
    assert len(tier) == 8
