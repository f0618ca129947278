"""`SSDTier`: every row of a shard on disk, as append-only segment files with an in-memory index.

Why not RocksDB or LMDB: measured on this machine (`benchmarks/hps.py --only ssd`, table in
docs/hps.md), batched uniform random reads of 65-float rows ran at 0.15 M rows/s through
rocksdict's multi-get and 0.32 M through lmdb's getmulti (each key is a Python-level object and
call), against 0.95 M from segment files; batched writes at 0.69 M, 1.02 M and 1.31 M. Reads are
what every memory-tier miss costs, so, as in the paper's SSD-PS: rows are
appended to fixed-record segment files, a `KeyIndex` maps key → (segment, record, last step),
an overwrite makes the old record stale, and a background thread rewrites segments whose live
fraction falls below a threshold (compaction) and deletes them.

A record is (key, step, row). A deletion appends a tombstone (key stored as ``~key``) so that
reopening the directory, which replays segments in order, does not bring deleted rows back.
The index keeps each key's last-use step only when asked to (a TTL is set): 8 bytes less per key.
Every read checks that the segment still holds the records the index points at and that each
record carries the key asked for, so a truncated or overwritten segment raises `CorruptSegment`
naming the file instead of handing out zeros or another key's row.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from pipeline.hps.key_index import KeyIndex

log = logging.getLogger(__name__)

_LOC, _STEP = 0, 1
_OFFSET_BITS = 32
_COMPACT_CHUNK = 1 << 16  # records a compaction reads at a time
# A segment's share of a batch is read on up to this many threads, in chunks of at least _READ_CHUNK records,
# copied from the segment mapped with MADV_RANDOM by a compiled loop that releases the GIL, so page faults
# (disk reads) overlap. 20K random rows of an 8M-row tier in 1M-record segments, one run each (2026-12-01):
# 9.2K rows/s cold (page cache dropped) and 168K warm as one numpy gather per segment; MADV_RANDOM 33.9K /
# 496K; with 8 threads 71.1K / 653K; 32 and 64 threads alike. In 64K-record segments (~160 rows of a batch
# each), chunks of 256 read 24.1K rows/s cold, chunks of 21 (all 8 threads busy) 41.5K.
_READ_THREADS = 8
_READ_CHUNK = 16


@numba.njit(cache=True, nogil=True)
def _copy_records(source: np.ndarray, offsets: np.ndarray, out: np.ndarray, picks: np.ndarray) -> None:
    for i in range(len(offsets)):
        out[picks[i]] = source[offsets[i]]


class CorruptSegment(RuntimeError):
    """A segment file is shorter than its records, or a record does not hold the key the index expects."""


@dataclass
class _Segment:
    records: int = 0
    live: int = 0


class SSDTier:
    """A persistent key → (row, last step) store for one shard, batched in and out."""

    def __init__(self, path: Path, width: int, segment_rows: int = 1 << 16, compact_below: float = 0.5,
                 background_compaction: bool = True, expected_rows: int = 0, track_steps: bool = True) -> None:
        if not 0 < segment_rows < (1 << _OFFSET_BITS):
            raise ValueError(f"segment_rows must be in (0, 2**32), got {segment_rows}")
        self.path = Path(path)
        self.width = width
        self.segment_rows = segment_rows
        self.compact_below = compact_below
        self.record = np.dtype([("key", "<i8"), ("step", "<i8"), ("row", "<f4", (width,))])
        self.track_steps = track_steps
        self.index = KeyIndex(columns=2 if track_steps else 1, capacity=max(expected_rows, 1024))
        self._segments: dict[int, _Segment] = {}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self.path.mkdir(parents=True, exist_ok=True)
        self._replay()
        self._active = max(self._segments, default=-1) + 1
        self._segments[self._active] = _Segment()
        self._file = open(self._segment_path(self._active), "ab")
        self._unflushed = False
        self._reader_pool: ThreadPoolExecutor | None = None
        self._compactor: threading.Thread | None = None
        if background_compaction:
            self._compactor = threading.Thread(target=self._compact_forever, name=f"hps-compact-{self.path.name}",
                                               daemon=True)
            self._compactor.start()

    # -- reads ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.index.positions(keys) >= 0

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows [n, width], last steps [n] (0 unless tracked), found [n]); absent keys get zero rows."""
        with self._lock:
            values, found = self.index.get_rows(keys)
            rows = np.zeros((len(keys), self.width), dtype=np.float32)
            if found.any():
                rows[found] = self._read(values[found, _LOC], keys[found])
            return rows, self._steps(values), found

    def _read(self, locations: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Rows at `locations` (each must hold its key), read by `_READ_THREADS` threads at once."""
        if self._unflushed:
            self._file.flush()
            self._unflushed = False
        segments = locations >> _OFFSET_BITS
        offsets = locations & ((1 << _OFFSET_BITS) - 1)
        out = np.empty(len(locations), dtype=self.record)
        order = np.argsort(segments, kind="stable")
        ids, starts = np.unique(segments[order], return_index=True)
        bounds = [*starts[1:].tolist(), len(order)]
        raw = out.view(np.uint8).reshape(len(out), self.record.itemsize)
        for segment, start, stop in zip(ids.tolist(), starts.tolist(), bounds):
            # One segment mapped at a time: the pages a map has faulted in count as the process's while it is
            # mapped, and with all of a batch's segments mapped at once the benchmark's (d) peaked at 5.2 GB
            # RSS on uniform keys against 2.0 GB one segment at a time.
            self._read_segment(segment, offsets, order[start:stop], raw)
        wrong = np.flatnonzero(out["key"] != keys)
        if len(wrong):
            at = wrong[0]
            raise CorruptSegment(f"{self._segment_path(int(segments[at]))}: record {int(offsets[at])} holds key "
                                 f"{int(out['key'][at])} where the index expects key {int(keys[at])} ({len(wrong)} "
                                 f"of {len(keys)} records read differ): the segment was overwritten")
        return out["row"]

    def _read_segment(self, segment: int, offsets: np.ndarray, picks: np.ndarray, out: np.ndarray) -> None:
        """Copy records `offsets[picks]` of the segment into `out[picks]`, in chunks on the reader threads."""
        count = self._segments[segment].records
        path = self._segment_path(segment)
        with open(path, "rb") as f:
            self._check_size(path, f.fileno(), count)
            mapped = mmap.mmap(f.fileno(), count * self.record.itemsize, access=mmap.ACCESS_READ)
        mapped.madvise(mmap.MADV_RANDOM)
        chunks = np.array_split(picks, min(_READ_THREADS, -(-len(picks) // _READ_CHUNK)))
        # The first chunk in this thread, so the compiled loop is loaded once before the readers use it.
        self._copy(mapped, offsets[chunks[0]], chunks[0], out)
        copies = [self._readers().submit(self._copy, mapped, offsets[part], part, out) for part in chunks[1:]]
        wait(copies)  # every copy ends before the map goes, failed or not
        for copy in copies:
            copy.result()
        # Dropped, not closed: the map is unmapped when its last view goes (at once, but for the compiled
        # loop's first call in a process, which leaves a view in a reference cycle until the next gc).
        # Unmapped after the copy, page-cache pages never count as process memory.

    @staticmethod
    def _copy(mapped: mmap.mmap, offsets: np.ndarray, picks: np.ndarray, out: np.ndarray) -> None:
        # The view of the map lives only in this call, so the map goes as soon as every copy returned.
        records = np.frombuffer(mapped, dtype=np.uint8).reshape(-1, out.shape[1])
        _copy_records(records, offsets, out, picks)

    def _readers(self) -> ThreadPoolExecutor:
        if self._reader_pool is None:
            self._reader_pool = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix=f"hps-read-{self.path.name}")
        return self._reader_pool

    def _check_size(self, path: Path, fd: int, count: int) -> None:
        size = os.fstat(fd).st_size
        if size < count * self.record.itemsize:
            raise CorruptSegment(f"{path}: {size} bytes, but it holds {count} records of {self.record.itemsize} "
                                 f"bytes ({count * self.record.itemsize} bytes): the segment was truncated")

    def scan(self, chunk_rows: int = 1 << 18) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every live (keys, rows, steps) in chunks, in disk order (for snapshots and exports)."""
        with self._lock:
            keys, values = self.index.items()
            order = np.argsort(values[:, _LOC])
            keys, values = keys[order], values[order]
            steps = self._steps(values)
            for start in range(0, len(keys), chunk_rows):
                part = slice(start, start + chunk_rows)
                yield keys[part], self._read(values[part, _LOC], keys[part]), steps[part]

    def _steps(self, values: np.ndarray) -> np.ndarray:
        return values[:, _STEP] if self.track_steps else np.zeros(len(values), dtype=np.int64)

    def _entries(self, locations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self.track_steps:
            return np.stack([locations, np.asarray(steps, dtype=np.int64)], axis=1)
        return locations

    # -- writes --------------------------------------------------------------------------------

    def put(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray) -> None:
        """Write rows (unique keys); the previous record of each key becomes stale."""
        if len(keys) == 0:
            return
        if rows.shape != (len(keys), self.width):
            raise ValueError(f"SSDTier.put: rows shape {rows.shape} != ({len(keys)}, {self.width})")
        with self._lock:
            old, found = self.index.get_rows(keys)
            self._mark_stale(old[found, _LOC])
            locations = self._append(keys, rows, steps)
            self.index.put(keys, self._entries(locations, steps))
            self._count_live(locations)

    def touch(self, keys: np.ndarray, steps: np.ndarray) -> None:
        """Record a newer last-use step without rewriting the row (the memory tier held it meanwhile)."""
        if self.track_steps:
            with self._lock:
                self.index.set_column(keys, _STEP, np.asarray(steps, dtype=np.int64))

    def delete(self, keys: np.ndarray) -> np.ndarray:
        """Drop rows; returns which keys were present."""
        with self._lock:
            old, found = self.index.remove(keys)
            if found.any():
                self._mark_stale(old[found, _LOC])
                self._append(~keys[found], np.zeros((int(found.sum()), self.width), np.float32),
                             np.zeros(int(found.sum()), np.int64))
            return found

    def expire(self, before_step: int, keep: np.ndarray | None = None) -> np.ndarray:
        """Delete rows last used before `before_step` (except keys in `keep`); returns their keys."""
        if not self.track_steps:
            raise RuntimeError(f"SSD tier {self.path} does not track last-use steps; open it with track_steps=True")
        with self._lock:
            keys, values = self.index.items()
            stale = keys[values[:, _STEP] < before_step]
            if keep is not None and len(keep):
                stale = stale[~np.isin(stale, keep)]
            self.delete(stale)
            return stale

    def clear(self) -> None:
        """Remove every row and segment (a restore starts from an empty tier)."""
        with self._lock:
            self._file.close()
            for segment in list(self._segments):
                self._segment_path(segment).unlink(missing_ok=True)
            self._segments = {self._active: _Segment()}
            self.index.clear()
            self._file = open(self._segment_path(self._active), "ab")

    def _append(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        records = np.empty(len(keys), dtype=self.record)
        records["key"], records["step"], records["row"] = keys, steps, rows
        locations = np.empty(len(keys), dtype=np.int64)
        written = 0
        while written < len(keys):
            segment = self._segments[self._active]
            take = min(self.segment_rows - segment.records, len(keys) - written)
            self._file.write(records[written:written + take].data)
            locations[written:written + take] = (self._active << _OFFSET_BITS) + segment.records + np.arange(take)
            segment.records += take
            written += take
            if segment.records == self.segment_rows:
                self._seal()
        self._unflushed = True
        return locations

    def _seal(self) -> None:
        self._file.close()
        self._active += 1
        self._segments[self._active] = _Segment()
        self._file = open(self._segment_path(self._active), "ab")
        self._wake.notify()

    def _mark_stale(self, locations: np.ndarray) -> None:
        segments, counts = np.unique(locations >> _OFFSET_BITS, return_counts=True)
        for segment, count in zip(segments.tolist(), counts.tolist()):
            self._segments[segment].live -= count

    def _count_live(self, locations: np.ndarray) -> None:
        segments, counts = np.unique(locations >> _OFFSET_BITS, return_counts=True)
        for segment, count in zip(segments.tolist(), counts.tolist()):
            self._segments[segment].live += count

    # -- compaction ----------------------------------------------------------------------------

    def _compactable(self) -> list[int]:
        return [s for s, seg in self._segments.items()
                if s != self._active and seg.records and seg.live < self.compact_below * seg.records]

    def compact(self) -> int:
        """Rewrite every sealed segment below the live threshold; returns how many were rewritten."""
        done = 0
        with self._lock:
            for segment in self._compactable():
                self._compact_segment(segment)
                done += 1
        return done

    def _compact_segment(self, segment: int) -> None:
        count = self._segments[segment].records
        path = self._segment_path(segment)
        tombstones = []
        with open(path, "rb") as f:
            self._check_size(path, f.fileno(), count)
            # In chunks: with whole 1M-record segments read at once, (d)'s peak RSS was 2.25 GB, in chunks 1.99.
            for first in range(0, count, _COMPACT_CHUNK):
                records = np.fromfile(f, dtype=self.record, count=min(_COMPACT_CHUNK, count - first))
                locations = (segment << _OFFSET_BITS) + first + np.arange(len(records), dtype=np.int64)
                is_put = records["key"] >= 0
                current = self.index.get(records["key"][is_put], _LOC)
                live = np.zeros(len(records), dtype=bool)
                live[is_put] = current == locations[is_put]
                if live.any():
                    keys = records["key"][live]
                    moved = self._append(keys, records["row"][live], records["step"][live])
                    self.index.set_column(keys, _LOC, moved)
                    self._count_live(moved)
                tombstones.append(~records["key"][~is_put])
        # A tombstone must outlive every older record of its key; none can exist below the oldest segment.
        tombstones = np.concatenate(tombstones) if tombstones else np.zeros(0, np.int64)
        if len(tombstones) and segment != min(self._segments):
            still_deleted = np.unique(tombstones[self.index.positions(tombstones) < 0])
            if len(still_deleted):
                self._append(~still_deleted, np.zeros((len(still_deleted), self.width), np.float32),
                             np.zeros(len(still_deleted), np.int64))
        del self._segments[segment]
        self._segment_path(segment).unlink()

    def _compact_forever(self) -> None:
        with self._lock:
            while not self._closed:
                for segment in self._compactable():
                    self._compact_segment(segment)
                self._wake.wait(timeout=1.0)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        return sum(seg.records for seg in self._segments.values()) * self.record.itemsize

    def flush(self, durable: bool = False) -> None:
        """Push buffered appends to the OS (and to the device when `durable`)."""
        with self._lock:
            self._file.flush()
            self._unflushed = False
            if durable:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
            self._file.close()
        if self._compactor is not None:
            self._compactor.join()
        if self._reader_pool is not None:
            self._reader_pool.shutdown(wait=True)

    def _segment_path(self, segment: int) -> Path:
        return self.path / f"seg-{segment:08d}.rec"

    def _replay(self) -> None:
        """Rebuild the index from existing segments; the last record of a key wins."""
        found = sorted(int(p.stem.split("-")[1]) for p in self.path.glob("seg-*.rec"))
        keys, steps, locations = [], [], []
        for segment in found:
            path = self._segment_path(segment)
            count = path.stat().st_size // self.record.itemsize
            os.truncate(path, count * self.record.itemsize)  # a torn final record from a crash
            self._segments[segment] = _Segment(records=count)
            if count:
                mapped = np.memmap(path, dtype=self.record, mode="r", shape=(count,))
                keys.append(np.array(mapped["key"]))
                steps.append(np.array(mapped["step"]))
                del mapped
                locations.append((segment << _OFFSET_BITS) + np.arange(count, dtype=np.int64))
        if not keys:
            return
        all_keys = np.concatenate(keys)
        decoded = np.where(all_keys < 0, ~all_keys, all_keys)
        last = len(decoded) - 1 - np.unique(decoded[::-1], return_index=True)[1]
        last = last[all_keys[last] >= 0]
        live_locations = np.concatenate(locations)[last]
        self.index.put(decoded[last], self._entries(live_locations, np.concatenate(steps)[last]))
        self._count_live(live_locations)
        log.info("SSD tier %s: replayed %d rows from %d segments", self.path, len(last), len(found))
