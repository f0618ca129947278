"""Snapshots: atomic, verified, restorable onto other shard counts, resumable after SIGKILL; exports."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.hps import CorruptSnapshot, latest_snapshot

from . import worker


def assert_same_tables(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"row of key {key}")


def uninterrupted(tmp_path: Path, steps: int, **overrides: object) -> tuple[dict[int, np.ndarray], dict]:
    server, model, optimizer = worker.build(tmp_path / "ssd-uninterrupted", **overrides)
    worker.train(server, model, optimizer, 0, steps)
    result = worker.table(server), model.state_dict()
    server.close()
    return result


def test_checkpoint_restore_continue_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    expected_table, expected_dense = uninterrupted(tmp_path, 20)
    server, model, optimizer = worker.build(tmp_path / "ssd-first")
    worker.train(server, model, optimizer, 0, 10, tmp_path / "ck", checkpoint_every=10)
    server.close()
    server, model, optimizer = worker.build(tmp_path / "ssd-second")
    start = worker.resume(server, model, optimizer, tmp_path / "ck")
    assert start == 10 and server.step == 10
    worker.train(server, model, optimizer, start, 20)
    assert_same_tables(worker.table(server), expected_table)
    for name, tensor in expected_dense.items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    server.close()


def test_snapshot_restores_onto_a_different_number_of_shards(tmp_path: Path) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd-one", num_shards=1)
    worker.train(server, model, optimizer, 0, 10, tmp_path / "ck1", checkpoint_every=10)
    at_ten = worker.table(server)
    worker.train(server, model, optimizer, 10, 16)
    expected = worker.table(server)
    server.close()
    three, model3, optimizer3 = worker.build(tmp_path / "ssd-three", num_shards=3)
    start = worker.resume(three, model3, optimizer3, tmp_path / "ck1")
    assert_same_tables(worker.table(three), at_ten)
    assert all(len(shard.ssd) for shard in three.shards.values())
    three.checkpoint(tmp_path / "ck3")
    two, _, _ = worker.build(tmp_path / "ssd-two", num_shards=2)
    two.restore(tmp_path / "ck3")
    assert_same_tables(worker.table(two), at_ten)
    two.close()
    worker.train(three, model3, optimizer3, start, 16)
    assert_same_tables(worker.table(three), expected)
    three.close()


def test_export_holds_exactly_the_rows_changed_since_the_snapshot(tmp_path: Path) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd")
    worker.train(server, model, optimizer, 0, 10, tmp_path / "ck", checkpoint_every=10)
    at_snapshot = worker.table(server)
    worker.train(server, model, optimizer, 10, 16)
    now = worker.table(server)
    export = np.load(server.export_changes(tmp_path / "exports") / "shard-00000.npz")
    changed = sorted(k for k, row in now.items() if k not in at_snapshot or not np.array_equal(row, at_snapshot[k]))
    assert export["keys"].tolist() == changed
    np.testing.assert_array_equal(export["weights"], np.stack([now[k][:worker.DIM] for k in changed]))
    assert export["deleted"].tolist() == sorted(set(at_snapshot) - set(now))
    assert len(export["deleted"]) > 0  # TTL expired some rows in between
    server.close()


def test_a_corrupted_snapshot_file_is_refused(tmp_path: Path) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd")
    worker.train(server, model, optimizer, 0, 4, tmp_path / "ck", checkpoint_every=4)
    rows_file = latest_snapshot(tmp_path / "ck") / "shard-00000.rows"
    data = bytearray(rows_file.read_bytes())
    data[5] ^= 0xFF
    rows_file.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshot, match="shard-00000.rows"):
        server.restore(tmp_path / "ck")
    server.close()


def test_a_half_written_snapshot_is_ignored_and_cleaned_up(tmp_path: Path) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd")
    worker.train(server, model, optimizer, 0, 4, tmp_path / "ck", checkpoint_every=4)
    published = latest_snapshot(tmp_path / "ck")
    torn = tmp_path / "ck" / ".snapshot.tmp"
    torn.mkdir()
    (torn / "shard-00000.rows").write_bytes(b"\x00" * 7)
    assert latest_snapshot(tmp_path / "ck") == published
    assert server.restore(tmp_path / "ck")["next_step"] == 4
    worker.train(server, model, optimizer, 4, 6, tmp_path / "ck", checkpoint_every=2)
    assert not torn.exists() and latest_snapshot(tmp_path / "ck").name == "snapshot-000000006"
    server.close()


def test_a_worker_killed_mid_training_resumes_from_its_last_snapshot(tmp_path: Path) -> None:
    steps = 24
    expected_table, _ = uninterrupted(tmp_path, steps)
    marker = tmp_path / "marker"
    command = [sys.executable, str(Path(worker.__file__)), "--work", str(tmp_path), "--steps", str(steps),
               "--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "1", "--marker", str(marker)]
    victim = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if marker.exists() and len(marker.read_text().split()) >= 8:
            break
        time.sleep(0.01)
    assert victim.poll() is None, f"worker ended before it could be killed: {victim.stderr.read().decode()}"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    finished = len(marker.read_text().split())
    assert finished < steps
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    saved = np.load(tmp_path / "table-rank0.npz")
    assert_same_tables(dict(zip(saved["keys"].tolist(), saved["rows"])), expected_table)
