"""The streaming sidecar: streamed samples equal the daily job's, and a killed run loses and doubles nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.compute as pc

from pipeline.tables import STREAM_SAMPLES, TRAINING_SAMPLES, content_hash, read_arrow
from spark_jobs import build_features, build_samples, build_sequences, ingest_events, stream_samples
from tests.spark_jobs.events_factory import at, event, write_records

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)
REPO = Path(__file__).resolve().parents[2]


def _records(day: date) -> list[dict[str, object]]:
    d = (day - D1).days
    rows = [event(f"e{d}-{u}-{i}", at(day, 8 + i, minute=u), user_id=u, item_id=10 * u + i + d, click=(u + i) % 2)
            for u in range(4) for i in range(6)]
    rows.append(event(f"tie{d}", at(day, 9, minute=1), user_id=1, item_id=99))  # same time as e…-1-1
    return rows


def _ingest(spark, settings, day: date) -> None:
    folder = settings.lakehouse.landing / "test" / f"date={day}"
    write_records(folder, _records(day))
    ingest_events.run(spark, settings, day, path=folder)


def _samples(settings):
    return read_arrow(settings, TRAINING_SAMPLES, days=[D1, D2])


def _commits(settings) -> set[str]:
    return {p.name for p in (stream_samples.checkpoint_dir(settings) / "commits").iterdir()
            if not p.name.startswith(".")}


def test_streamed_samples_equal_the_daily_jobs_samples_for_the_same_events(spark, settings):
    _ingest(spark, settings, D1)
    stream_samples.run(spark, settings)
    _ingest(spark, settings, D2)
    stream_samples.run(spark, settings)  # a second run: only D2's events are fresh
    streamed = _samples(settings)
    log = read_arrow(settings, STREAM_SAMPLES)
    assert streamed.num_rows == 2 * 25 == log.num_rows
    assert sorted(pc.unique(log.column("batch_id")).to_pylist()) == [0, 1]

    for day in (D1, D2):
        for job in (build_features, build_sequences, build_samples):
            job.run(spark, settings, day)
    daily = _samples(settings)

    assert content_hash(streamed, ("sample_id",)) == content_hash(daily, ("sample_id",))
    assert max(len(items) for items in daily.column("seq_teacher_items").to_pylist()) > 6  # history crosses days


def test_a_rewritten_date_is_not_streamed_again(spark, settings):
    _ingest(spark, settings, D1)
    stream_samples.run(spark, settings)
    _ingest(spark, settings, D1)  # a rerun of ingestion: replaceWhere removes and re-adds the date
    stream_samples.run(spark, settings)
    log = read_arrow(settings, STREAM_SAMPLES)
    assert log.num_rows == _samples(settings).num_rows == 25
    assert set(log.column("batch_id").to_pylist()) == {0}  # the rewrite's commit was skipped, not re-streamed


def test_a_run_killed_after_its_writes_restarts_without_loss_or_duplicates(spark, settings):
    _ingest(spark, settings, D1)
    stream_samples.run(spark, settings)
    _ingest(spark, settings, D2)
    env = {**os.environ, "RECDISTILL_PROFILE": "tiny", "RECDISTILL_LAKEHOUSE_ROOT": str(settings.lakehouse.root),
           stream_samples.KILL_AFTER_WRITE_ENV: "1"}
    killed = subprocess.run([sys.executable, "-m", "spark_jobs.stream_samples"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    # The batch's rows are written but Spark never committed it: the restart must replay it.
    assert _samples(settings).num_rows == 50 and _commits(settings) == {"0"}

    stream_samples.run(spark, settings)

    assert _commits(settings) == {"0", "1"}
    samples, log = _samples(settings), read_arrow(settings, STREAM_SAMPLES)
    expected = {f"e{d}-{u}-{i}" for d in (0, 1) for u in range(4) for i in range(6)} | {"tie0", "tie1"}
    assert sorted(samples.column("event_id").to_pylist()) == sorted(expected)
    assert sorted(log.column("sample_id").to_pylist()) == sorted(samples.column("sample_id").to_pylist())
    assert pc.count_distinct(log.column("sample_id")).as_py() == log.num_rows == 50
    by_batch = {b: pc.sum(pc.equal(log.column("batch_id"), b)).as_py() for b in (0, 1)}
    assert by_batch == {0: 25, 1: 25}
    assert set(log.column("date").to_pylist()) == {D1, D2}
