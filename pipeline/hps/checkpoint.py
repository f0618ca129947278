"""Snapshots and incremental exports of the parameter server.

A snapshot is written into ``<dir>/.snapshot.tmp``, every file fsynced and listed with its
SHA-256, then renamed to ``snapshot-<step>`` and named in ``LATEST`` (written to a temporary
file and renamed). A process killed at any moment leaves either the previous snapshot or the
new one as ``LATEST``, never a half-written one; restore checks every file's hash. Rows are
stored by key, so a snapshot restores onto any number of shards by re-hashing.

An export (``changes-<step>``) holds the weights written and the keys deleted since the last
snapshot: what the streaming path and serving apply on top of that snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.hps.hashing import shard_of

if TYPE_CHECKING:
    from pipeline.hps.server import ParameterServer
    from pipeline.hps.shard import Shard

FORMAT_VERSION = 1
LATEST = "LATEST"
_TMP = ".snapshot.tmp"
_CHUNK_ROWS = 1 << 18


class CorruptSnapshot(RuntimeError):
    """A snapshot file is missing or does not match the hash recorded when it was written."""


def save_snapshot(server: ParameterServer, directory: Path, dense: dict[str, Any]) -> Path:
    """Write every shard of every rank plus `dense` (rank 0's), then publish it atomically."""
    tmp = directory / _TMP
    if server.rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed mid-snapshot
        tmp.mkdir()
    server.exchange.barrier()
    for shard_id, shard in server.shards.items():
        _write_shard(tmp, shard_id, shard)
    server.exchange.barrier()
    if server.rank == 0:
        dense_path = tmp / "dense.pt"
        torch.save(dense, dense_path)
        meta = {"format": FORMAT_VERSION, "step": server.step, "updates": server.updates,
                "num_shards": server.num_shards, "world_size": server.world_size, "dim": server.dim,
                "optimizer": server.config.optimizer, "row_width": server.optimizer.width,
                "tracks_steps": server.config.ttl_steps is not None,
                "created": datetime.now(timezone.utc).isoformat(), "dense_sha256": _sha256(dense_path)}
        _write_durably(tmp / "meta.json", json.dumps(meta, indent=1).encode())
        _fsync_path(tmp)
        name = _free_name(directory, f"snapshot-{server.step:09d}")
        os.rename(tmp, directory / name)
        _fsync_path(directory)
        _write_durably(directory / f"{LATEST}.tmp", name.encode())
        os.replace(directory / f"{LATEST}.tmp", directory / LATEST)
        _fsync_path(directory)
        _prune(directory, server.config.keep_snapshots)
    server.exchange.barrier()
    for shard in server.shards.values():
        shard.changes.clear()
    return directory / latest_snapshot(directory).name


def latest_snapshot(directory: Path) -> Path:
    """The snapshot `LATEST` names in `directory`."""
    pointer = Path(directory) / LATEST
    if not pointer.exists():
        raise FileNotFoundError(f"no snapshot in {directory}: {LATEST} is missing")
    return Path(directory) / pointer.read_text().strip()


def load_snapshot(server: ParameterServer, directory: Path) -> dict[str, Any]:
    """Replace the server's rows, counters and steps by the latest snapshot; returns its dense dict."""
    snapshot = latest_snapshot(directory)
    meta = json.loads((snapshot / "meta.json").read_text())
    expected = {"dim": server.dim, "optimizer": server.config.optimizer, "row_width": server.optimizer.width}
    found = {k: meta[k] for k in expected}
    if found != expected:
        raise ValueError(f"snapshot {snapshot} holds {found}, but this server is configured for {expected}")
    for shard in server.shards.values():
        shard.clear()
    candidates: dict[int, list[dict[str, np.ndarray]]] = {s: [] for s in server.shards}
    for old in range(meta["num_shards"]):
        if server.num_shards == meta["num_shards"] and old not in server.shards:
            continue  # same layout: only this rank's own shards are needed
        keys, steps, rows, waiting = _read_shard(snapshot, old)
        if not meta["tracks_steps"]:
            steps = np.full(len(keys), meta["step"], dtype=np.int64)  # no TTL then: count from the snapshot
        for start in range(0, len(keys), _CHUNK_ROWS):
            part = slice(start, start + _CHUNK_ROWS)
            owner = shard_of(keys[part], server.num_shards)
            chunk_rows = np.asarray(rows[part])
            for shard_id, shard in server.shards.items():
                mine = owner == shard_id
                shard.load(keys[part][mine], chunk_rows[mine], steps[part][mine])
        owner = shard_of(waiting["keys"], server.num_shards)
        for shard_id in server.shards:
            candidates[shard_id].append({k: v[owner == shard_id] for k, v in waiting.items()})
        del rows
    for shard_id, shard in server.shards.items():
        parts = candidates[shard_id]
        shard.admission.load(*(np.concatenate([p[k] for p in parts]) for k in ("keys", "counts", "steps")))
    server.step, server.updates = meta["step"], meta["updates"]
    dense_path = snapshot / "dense.pt"
    if _sha256(dense_path) != meta["dense_sha256"]:
        raise CorruptSnapshot(f"{dense_path}: SHA-256 differs from meta.json")
    return torch.load(dense_path, map_location="cpu")


def export_changes(server: ParameterServer, directory: Path) -> Path:
    """Write per shard the weights written and keys deleted since the last snapshot; returns the folder."""
    out = directory / f"changes-{server.step:09d}"
    if server.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    server.exchange.barrier()
    base = directory / LATEST
    for shard_id, shard in server.shards.items():
        written, deleted = shard.changes.summary()
        rows, found = shard.peek(written)
        tmp = out / f"shard-{shard_id:05d}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, keys=written[found], weights=rows[found, :server.dim], deleted=deleted)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / f"shard-{shard_id:05d}.npz")
    server.exchange.barrier()
    if server.rank == 0:
        manifest = {"step": server.step, "num_shards": server.num_shards, "dim": server.dim,
                    "since": base.read_text().strip() if base.exists() else None}
        _write_durably(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    server.exchange.barrier()
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
