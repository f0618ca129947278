"""Tables read and maintained with delta-rs: reads that exit cleanly, Delta's VACUUM of what no version references,
content digests that do not depend on row order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.tables import STREAM_SAMPLES, content_hash, read_arrow, table_path, write_partition, write_partition_arrow

REPO = Path(__file__).resolve().parents[1]

DAY = date(2026, 1, 3)


def _rows(*ids: int, day: date = DAY) -> pa.Table:
    return pa.table({"sample_id": pa.array(ids, pa.int64()), "batch_id": pa.array([0] * len(ids), pa.int64()),
                     "date": pa.array([day] * len(ids), pa.date32())})


def test_tables_vacuum_removes_old_unreferenced_files_and_keeps_the_table(tmp_path, monkeypatch, capsys):
    """Finding 10: files of killed writes and replaced files go, after the retention period, with Delta's VACUUM."""
    monkeypatch.setenv("RECDISTILL_LAKEHOUSE_ROOT", str(tmp_path / "lh"))
    settings = load_settings("tiny")
    write_partition_arrow(_rows(1, 2), settings, STREAM_SAMPLES, DAY)
    write_partition_arrow(_rows(3), settings, STREAM_SAMPLES, DAY)  # replaces the first file
    partition = tmp_path / "lh" / "tables" / STREAM_SAMPLES.name / f"date={DAY}"
    killed_long_ago, killed_now = partition / "part-killed-old.parquet", partition / "part-killed-new.parquet"
    for orphan in (killed_long_ago, killed_now):
        orphan.write_bytes(b"half a parquet file")
    ten_days_ago = time.time() - 10 * 86_400
    os.utime(killed_long_ago, (ten_days_ago, ten_days_ago))
    files_before = set(os.listdir(partition))

    with pytest.raises(SystemExit) as done:
        app(["tables", "vacuum", "--profile", "tiny"])
    assert done.value.code == 0
    assert set(os.listdir(partition)) == files_before - {killed_long_ago.name}
    assert "stream_samples: 1 unreferenced files removed" in capsys.readouterr().out

    with pytest.raises(SystemExit) as done:
        app(["tables", "vacuum", "--profile", "tiny", "--retention-hours", "0"])
    assert done.value.code == 0
    assert len(os.listdir(partition)) == 1  # only the file the current version references
    assert read_arrow(settings, STREAM_SAMPLES).column("sample_id").to_pylist() == [3]
    assert os.path.isdir(os.path.join(table_path(settings, STREAM_SAMPLES), "_delta_log"))


def test_reading_tables_never_aborts_the_interpreter_at_exit(spark, tmp_path):
    """Finding 12: reading a Spark-written table through delta-rs' Python file-system handler aborted about
    one exit in fifteen (exit 134, "terminate called without an active exception"); here every exit is clean."""
    settings = load_settings("tiny", lakehouse={"root": str(tmp_path / "lh")})
    for i in range(4):
        day = DAY + timedelta(days=i)
        write_partition(spark.createDataFrame(_rows(i, i + 100, day=day).to_pandas()), settings, STREAM_SAMPLES, day)
    script = ("import sys; from pipeline.config import load_settings; "
              "from pipeline.tables import STREAM_SAMPLES, read_arrow, table_counts; "
              "s = load_settings('tiny', lakehouse={'root': sys.argv[1]}); "
              "[read_arrow(s, STREAM_SAMPLES) for _ in range(3)]; "
              "assert read_arrow(s, STREAM_SAMPLES).num_rows == table_counts(s)['stream_samples'] == 8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for _ in range(15):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lh")], capture_output=True, text=True,
                              env=env, cwd=REPO)
        assert (done.returncode, "terminate called" in done.stderr) == (0, False), done.stderr[-2000:]


def test_a_table_digest_does_not_depend_on_the_order_of_rows_that_share_a_key():
    """A daily table keyed by id holds each id on several dates: the order the files held them in must not
    change the digest (the integration run's cluster and embedded feature tables differed only in that)."""
    ids = np.arange(50)
    table = pa.table({"item_id": ids // 2, "clicks": ids % 7,
                      "date": pa.array([DAY + timedelta(days=int(i % 2)) for i in ids], pa.date32())})
    reordered = table.take(np.random.default_rng(0).permutation(table.num_rows))
    assert content_hash(reordered, ["item_id"]) == content_hash(table, ["item_id"])
    assert content_hash(table.slice(1), ["item_id"]) != content_hash(table, ["item_id"])
