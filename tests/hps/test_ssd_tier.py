"""SSD tier: persistent rows in append-only segments, compaction, tombstones, expiry."""

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.hps.ssd_tier import CorruptSegment, SSDTier

from . import worker

WIDTH = 4


def rows_for(keys: np.ndarray, version: int) -> np.ndarray:
    return (keys[:, None] * 10 + version + np.arange(WIDTH)[None, :]).astype(np.float32)


def open_tier(path: Path, **kwargs: object) -> SSDTier:
    return SSDTier(path, WIDTH, segment_rows=16, background_compaction=False, **kwargs)


def test_get_returns_latest_write_and_flags_absent_keys(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    keys = np.arange(40)
    tier.put(keys, rows_for(keys, 0), np.full(40, 3))
    tier.put(keys[:10], rows_for(keys[:10], 1), np.full(10, 5))
    rows, steps, found = tier.get(np.array([2, 30, 99]))
    assert found.tolist() == [True, True, False]
    np.testing.assert_array_equal(rows[:2], np.stack([rows_for(np.array([2]), 1)[0], rows_for(np.array([30]), 0)[0]]))
    assert rows[2].tolist() == [0.0] * WIDTH
    assert steps[:2].tolist() == [5, 3]
    tier.close()


def test_a_batch_read_in_chunks_on_the_reader_threads_returns_each_keys_own_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.hps.ssd_tier._READ_CHUNK", 7)  # many chunks of every segment, on 8 threads
    tier = open_tier(tmp_path)
    keys = np.arange(3_000)
    tier.put(keys, rows_for(keys, 0), np.zeros(len(keys)))
    tier.put(keys[::3], rows_for(keys[::3], 1), np.zeros(1_000))
    wanted = np.random.default_rng(0).permutation(np.arange(3_100))  # 100 absent keys among them
    rows, _, found = tier.get(wanted)
    assert found.tolist() == (wanted < 3_000).tolist()
    expected = np.where((wanted % 3 == 0)[:, None], rows_for(wanted, 1), rows_for(wanted, 0))
    np.testing.assert_array_equal(rows[found], expected[found])
    assert not rows[~found].any()
    tier.close()


def test_reopen_replays_segments_and_keeps_deletions(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    keys = np.arange(50)
    tier.put(keys, rows_for(keys, 0), np.zeros(50))
    tier.put(keys[::2], rows_for(keys[::2], 7), np.ones(25))
    tier.delete(np.array([1, 3, 4]))
    tier.close()
    reopened = open_tier(tmp_path)
    rows, steps, found = reopened.get(keys)
    assert found.sum() == 47 and not found[[1, 3, 4]].any()
    expected = np.where((keys % 2 == 0)[:, None], rows_for(keys, 7), rows_for(keys, 0))
    np.testing.assert_array_equal(rows[found], expected[found])
    assert steps[found].tolist() == [1 if k % 2 == 0 else 0 for k in keys[found]]
    reopened.close()


def test_reopen_drops_a_torn_final_record(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    tier.put(np.array([1, 2]), rows_for(np.array([1, 2]), 0), np.zeros(2))
    tier.close()
    segment = sorted(tmp_path.glob("seg-*.rec"))[-1]
    with open(segment, "ab") as f:
        f.write(b"\x07" * 10)  # half a record, as a crash mid-write leaves it
    reopened = open_tier(tmp_path)
    assert len(reopened) == 2
    np.testing.assert_array_equal(reopened.get(np.array([2]))[0], rows_for(np.array([2]), 0))
    reopened.close()


@pytest.mark.parametrize("chunk", [1 << 16, 5], ids=["one read", "chunks of 5 records"])
def test_compaction_reclaims_stale_records_and_keeps_values(tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.hps.ssd_tier._COMPACT_CHUNK", chunk)
    tier = open_tier(tmp_path)
    keys = np.arange(64)
    for version in range(6):
        tier.put(keys, rows_for(keys, version), np.full(64, version))
    before = tier.disk_bytes
    assert tier.compact() > 0
    assert tier.disk_bytes < before / 2
    rows, steps, found = tier.get(keys)
    assert found.all() and steps.tolist() == [5] * 64
    np.testing.assert_array_equal(rows, rows_for(keys, 5))
    tier.close()
    reopened = open_tier(tmp_path)
    np.testing.assert_array_equal(reopened.get(keys)[0], rows_for(keys, 5))
    reopened.close()


@pytest.mark.parametrize("chunk", [1 << 16, 5], ids=["one read", "chunks of 5 records"])
def test_tombstone_outlives_compaction_while_older_records_exist(tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.hps.ssd_tier._COMPACT_CHUNK", chunk)
    tier = open_tier(tmp_path)
    tier.put(np.arange(16), rows_for(np.arange(16), 0), np.zeros(16))  # segment 0, stays live
    tier.delete(np.array([3]))                                           # tombstone in segment 1
    tier.put(np.arange(100, 115), rows_for(np.arange(100, 115), 0), np.zeros(15))
    tier.put(np.arange(100, 115), rows_for(np.arange(100, 115), 1), np.zeros(15))  # segment 1 now stale
    tier.compact()
    tier.close()
    reopened = open_tier(tmp_path)
    assert not reopened.contains(np.array([3]))[0]
    assert reopened.contains(np.array([2, 100]))[0:2].all()
    reopened.close()


def test_background_thread_compacts_without_being_asked(tmp_path: Path) -> None:
    tier = SSDTier(tmp_path, WIDTH, segment_rows=16, background_compaction=True)
    keys = np.arange(32)
    for version in range(8):
        tier.put(keys, rows_for(keys, version), np.zeros(32))
    written = 8 * 32 * tier.record.itemsize
    deadline = time.monotonic() + 30
    while tier.disk_bytes >= written / 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tier.disk_bytes < written / 2
    np.testing.assert_array_equal(tier.get(keys)[0], rows_for(keys, 7))
    tier.close()


def test_expire_deletes_rows_last_used_before_the_cutoff(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    keys = np.arange(6)
    tier.put(keys, rows_for(keys, 0), np.array([1, 2, 3, 4, 5, 6]))
    tier.touch(np.array([0]), np.array([9]))
    expired = tier.expire(before_step=4, keep=np.array([2]))
    assert sorted(expired.tolist()) == [1]
    assert tier.contains(keys).tolist() == [True, False, True, True, True, True]
    tier.close()


def test_put_rejects_rows_of_the_wrong_width(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    with pytest.raises(ValueError, match="rows shape"):
        tier.put(np.array([1]), np.zeros((1, WIDTH + 1), np.float32), np.zeros(1))
    tier.close()


def test_a_truncated_or_overwritten_segment_is_an_error_naming_the_file(tmp_path: Path) -> None:
    tier = open_tier(tmp_path)
    keys = np.arange(40)
    tier.put(keys, rows_for(keys, 0), np.zeros(40))
    tier.flush()
    first, second = sorted(tmp_path.glob("seg-*.rec"))[:2]
    with open(first, "r+b") as f:
        f.write(b"\x00" * tier.record.itemsize * 3)  # three records zeroed in place
    with pytest.raises(CorruptSegment, match=f"{first.name}: record 1 holds key 0 where the index expects key 1"):
        tier.get(np.array([1]))
    with open(second, "r+b") as f:
        f.truncate(tier.record.itemsize * 5)
    with pytest.raises(CorruptSegment, match=f"{second.name}: .* the segment was truncated"):
        tier.get(np.array([20]))
    tier.close()


def test_training_over_a_damaged_segment_stops_with_the_file_named(tmp_path: Path) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd")
    worker.train(server, model, optimizer, 0, 12)
    shard = server.shards[0]
    assert len(shard.ssd) > 0
    shard.ssd.flush()
    for segment in sorted(shard.ssd.path.glob("seg-*.rec")):
        segment.write_bytes(b"\x00" * segment.stat().st_size)  # every row on disk zeroed
    with pytest.raises(CorruptSegment, match=r"seg-\d+\.rec: record \d+ holds key 0 where the index expects"):
        worker.train(server, model, optimizer, 12, 40)
    server.close()
