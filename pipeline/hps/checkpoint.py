"""Snapshots and incremental exports of the parameter server.

A snapshot is written into ``<dir>/.snapshot.tmp``, every file fsynced and listed with its
SHA-256, then renamed to ``snapshot-<step>`` and named in ``LATEST`` (written to a temporary
file and renamed). A process killed at any moment leaves either the previous snapshot or the
new one as ``LATEST``, never a half-written one; restore checks every file's hash. Rows are
stored by key, so a snapshot restores onto any number of shards by re-hashing.

An export (``changes-<step>``) holds the weights written and the keys deleted since the last
snapshot: what the streaming path and serving apply on top of that snapshot.

The functions take what a snapshot needs (the process's `Layout`, its shards, the exchange, the
step counters) rather than the server, and return restored counters for the server to adopt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.hps.hashing import shard_of
from pipeline.hps.shard import Shard
from pipeline.hps.sharding import Exchange

FORMAT_VERSION = 1
LATEST = "LATEST"
_TMP = ".snapshot.tmp"
_CHUNK_ROWS = 1 << 18


class CorruptSnapshot(RuntimeError):
    """A snapshot file is missing or does not match the hash recorded when it was written."""


@dataclass(frozen=True)
class Layout:
    """What a snapshot records about the process writing it and checks on the process restoring it."""

    rank: int
    world_size: int
    num_shards: int
    dim: int
    optimizer: str
    row_width: int
    tracks_steps: bool
    keep_snapshots: int


@dataclass(frozen=True)
class Counters:
    """The server's step counters: training steps and optimizer updates."""

    step: int
    updates: int


def save_snapshot(directory: Path, layout: Layout, shards: dict[int, Shard], exchange: Exchange,
                  counters: Counters, dense: dict[str, Any]) -> Path:
    """Write every shard of every rank plus `dense` (rank 0's), then publish it atomically."""
    tmp = directory / _TMP
    if layout.rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed mid-snapshot
        tmp.mkdir()
    exchange.barrier()
    for shard_id, shard in shards.items():
        _write_shard(tmp, shard_id, shard)
    exchange.barrier()
    if layout.rank == 0:
        dense_path = tmp / "dense.pt"
        torch.save(dense, dense_path)
        meta = {"format": FORMAT_VERSION, "step": counters.step, "updates": counters.updates,
                "num_shards": layout.num_shards, "world_size": layout.world_size, "dim": layout.dim,
                "optimizer": layout.optimizer, "row_width": layout.row_width, "tracks_steps": layout.tracks_steps,
                "created": datetime.now(timezone.utc).isoformat(), "dense_sha256": _sha256(dense_path)}
        _write_durably(tmp / "meta.json", json.dumps(meta, indent=1).encode())
        _fsync_path(tmp)
        name = _free_name(directory, f"snapshot-{counters.step:09d}")
        os.rename(tmp, directory / name)
        _fsync_path(directory)
        _write_durably(directory / f"{LATEST}.tmp", name.encode())
        os.replace(directory / f"{LATEST}.tmp", directory / LATEST)
        _fsync_path(directory)
        _prune(directory, layout.keep_snapshots)
    exchange.barrier()
    for shard in shards.values():
        shard.changes.clear()
    return directory / latest_snapshot(directory).name


def latest_snapshot(directory: Path) -> Path:
    """The snapshot `LATEST` names in `directory`."""
    pointer = Path(directory) / LATEST
    if not pointer.exists():
        raise FileNotFoundError(f"no snapshot in {directory}: {LATEST} is missing")
    return Path(directory) / pointer.read_text().strip()


def has_snapshot(directory: Path) -> bool:
    """Whether `directory` is a checkpoint folder with a published snapshot (a run to resume)."""
    return (Path(directory) / LATEST).exists()


def snapshot_info(path: Path) -> tuple[Path, dict[str, Any]]:
    """(snapshot folder, its meta.json) for a snapshot folder or a checkpoint folder (its latest snapshot)."""
    path = Path(path)
    snapshot = latest_snapshot(path) if has_snapshot(path) else path
    meta_path = snapshot / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{snapshot} is not a parameter-server snapshot: {meta_path.name} is missing "
                                f"(give a snapshot-<step> folder or a checkpoint folder with {LATEST})")
    return snapshot, json.loads(meta_path.read_text())


def load_snapshot(directory: Path, layout: Layout, shards: dict[int, Shard]) -> tuple[Counters, dict[str, Any]]:
    """Replace the shards' rows, counts and steps by the latest snapshot; returns its counters and dense dict."""
    snapshot, meta = snapshot_info(latest_snapshot(directory))
    expected = {"dim": layout.dim, "optimizer": layout.optimizer, "row_width": layout.row_width}
    found = {k: meta[k] for k in expected}
    if found != expected:
        raise ValueError(f"snapshot {snapshot} holds {found}, but this server is configured for {expected}")
    for shard in shards.values():
        shard.clear()
    candidates: dict[int, list[dict[str, np.ndarray]]] = {s: [] for s in shards}
    for old in range(meta["num_shards"]):
        if layout.num_shards == meta["num_shards"] and old not in shards:
            continue  # same layout: only this rank's own shards are needed
        keys, steps, rows, waiting = _read_shard(snapshot, old)
        if not meta["tracks_steps"]:
            steps = np.full(len(keys), meta["step"], dtype=np.int64)  # no TTL then: count from the snapshot
        for start in range(0, len(keys), _CHUNK_ROWS):
            part = slice(start, start + _CHUNK_ROWS)
            owner = shard_of(keys[part], layout.num_shards)
            chunk_rows = np.asarray(rows[part])
            for shard_id, shard in shards.items():
                mine = owner == shard_id
                shard.load(keys[part][mine], chunk_rows[mine], steps[part][mine])
        owner = shard_of(waiting["keys"], layout.num_shards)
        for shard_id in shards:
            candidates[shard_id].append({k: v[owner == shard_id] for k, v in waiting.items()})
        del rows
    for shard_id, shard in shards.items():
        parts = candidates[shard_id]
        shard.admission.load(*(np.concatenate([p[k] for p in parts]) for k in ("keys", "counts", "steps")))
    dense_path = snapshot / "dense.pt"
    if _sha256(dense_path) != meta["dense_sha256"]:
        raise CorruptSnapshot(f"{dense_path}: SHA-256 differs from meta.json")
    return Counters(step=meta["step"], updates=meta["updates"]), torch.load(dense_path, map_location="cpu")


def export_changes(directory: Path, layout: Layout, shards: dict[int, Shard], exchange: Exchange,
                   step: int) -> Path:
    """Write per shard the weights written and keys deleted since the last snapshot; returns the folder."""
    out = directory / f"changes-{step:09d}"
    if layout.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    exchange.barrier()
    base = directory / LATEST
    for shard_id, shard in shards.items():
        written, deleted = shard.changes.summary()
        rows, found = shard.peek(written)
        tmp = out / f"shard-{shard_id:05d}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, keys=written[found], weights=rows[found, :layout.dim], deleted=deleted)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / f"shard-{shard_id:05d}.npz")
    exchange.barrier()
    if layout.rank == 0:
        manifest = {"step": step, "num_shards": layout.num_shards, "dim": layout.dim,
                    "since": base.read_text().strip() if base.exists() else None}
        _write_durably(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    exchange.barrier()
    return out


def _write_shard(tmp: Path, shard_id: int, shard: Shard) -> None:
    stem = f"shard-{shard_id:05d}"
    keys, steps = [], []
    digest = hashlib.sha256()
    with open(tmp / f"{stem}.rows", "wb") as f:
        for chunk_keys, chunk_rows, chunk_steps in shard.rows(_CHUNK_ROWS):
            data = np.ascontiguousarray(chunk_rows, dtype=np.float32).data
            f.write(data)
            digest.update(data)
            keys.append(chunk_keys)
            steps.append(chunk_steps)
        f.flush()
        os.fsync(f.fileno())
    all_keys = np.concatenate(keys) if keys else np.empty(0, np.int64)
    all_steps = np.concatenate(steps) if steps else np.empty(0, np.int64)
    files = {f"{stem}.rows": digest.hexdigest()}
    for name, array in ((f"{stem}.keys.npy", all_keys), (f"{stem}.steps.npy", all_steps)):
        files[name] = _save_array(tmp / name, array)
    waiting = shard.admission.state()
    for field, array in waiting.items():
        files[f"{stem}.candidates.{field}.npy"] = _save_array(tmp / f"{stem}.candidates.{field}.npy", array)
    manifest = {"rows": int(len(all_keys)), "width": shard.width, "files": files}
    _write_durably(tmp / f"{stem}.json", json.dumps(manifest, indent=1).encode())


def _read_shard(snapshot: Path, shard_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    stem = f"shard-{shard_id:05d}"
    manifest_path = snapshot / f"{stem}.json"
    if not manifest_path.exists():
        raise CorruptSnapshot(f"{manifest_path} is missing")
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest["files"].items():
        path = snapshot / name
        if not path.exists() or _sha256(path) != digest:
            raise CorruptSnapshot(f"{path}: missing or SHA-256 differs from {manifest_path.name}")
    keys = np.load(snapshot / f"{stem}.keys.npy")
    steps = np.load(snapshot / f"{stem}.steps.npy")
    shape = (manifest["rows"], manifest["width"])
    rows = np.memmap(snapshot / f"{stem}.rows", dtype=np.float32, mode="r", shape=shape) if shape[0] \
        else np.empty(shape, np.float32)
    waiting = {field: np.load(snapshot / f"{stem}.candidates.{field}.npy") for field in ("keys", "counts", "steps")}
    return keys, steps, rows, waiting


def _save_array(path: Path, array: np.ndarray) -> str:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    return _sha256(path)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _free_name(directory: Path, name: str) -> str:
    candidate, n = name, 0
    while (directory / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the `keep` most recently written snapshots (never the one LATEST names)."""
    current = latest_snapshot(directory)
    snapshots = sorted((p for p in directory.glob("snapshot-*") if (p / "meta.json").exists()),
                       key=lambda p: (p / "meta.json").stat().st_mtime_ns)
    for old in snapshots[:-keep]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
