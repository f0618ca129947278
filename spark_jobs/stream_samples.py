"""Streaming sidecar: fresh `events` → `training_samples`, exactly once, built by the daily jobs' code.

Structured Streaming over the `events` Delta table with trigger availableNow: each run processes
every commit since its checkpoint, then stops. Each micro-batch becomes samples through
`samples_from_events` (the builders the daily jobs use), inserted by sample_id, and is recorded in
`stream_samples` with its batch id. A batch killed after its writes but before Spark committed it to
the checkpoint is replayed with the same id and rows on restart; the key-insert makes that replay a
no-op, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import date
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Settings
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, STREAM_SAMPLES, TRAINING_SAMPLES, insert_missing, read_table, table_path
from spark_jobs.build_samples import history_start, samples_from_events

log = logging.getLogger(__name__)
# Test hook: SIGKILL this process after a batch's writes, before Spark commits it to the checkpoint.
KILL_AFTER_WRITE_ENV = "RECDISTILL_STREAM_KILL_AFTER_WRITE"


def checkpoint_dir(settings: Settings) -> Path:
    return settings.lakehouse.checkpoints / "stream_samples"


def write_batch(settings: Settings, fresh: DataFrame, batch_id: int) -> int:
    """Samples for exactly the events of `fresh`, written idempotently; returns their number."""
    fresh = fresh.cache()
    try:
        days: list[date] = sorted(row.date for row in fresh.select("date").distinct().collect())
        if not days:
            return 0
        # Point in time: the builders keep only history strictly before each event.
        history = read_table(fresh.sparkSession, settings, EVENTS, start=history_start(settings, days[0]),
                             end=days[-1])
        samples = samples_from_events(fresh, history, days, settings).cache()
        # MERGE, not txnAppId/txnVersion: the daily job may already have written these dates
        # with replaceWhere, and only a key match avoids doubling those rows too.
        insert_missing(samples, settings, TRAINING_SAMPLES, days)
        insert_missing(samples.select("sample_id", F.lit(batch_id).cast("bigint").alias("batch_id"), "date"),
                       settings, STREAM_SAMPLES, days)
        written = samples.count()
        samples.unpersist()
    finally:
        fresh.unpersist()
    log.info("stream batch %d: %d samples for %s", batch_id, written, [str(d) for d in days])
    if os.environ.get(KILL_AFTER_WRITE_ENV) == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return written


def run(spark: SparkSession, settings: Settings, after: date | None = None) -> None:
    """Process every `events` commit since the last run's checkpoint, then return.

    With `after`, only events of later dates: the sidecar starts where the champion's data ends, so
    its first run does not rebuild the whole history the daily jobs already turned into samples.
    """
    fresh = (spark.readStream.format("delta")
             # Ingestion rewrites a date with replaceWhere on rerun; such a commit removes files and
             # re-adds the same events, which were streamed when the date was first added. Skipping
             # change commits streams every first write (pure adds) and never re-reads a rewrite.
             .option("skipChangeCommits", "true")
             .load(table_path(settings, EVENTS)))
    if after is not None:
        fresh = fresh.where(F.col("date") > F.lit(after))
    query = (fresh.writeStream
             .foreachBatch(lambda batch, batch_id: write_batch(settings, batch, batch_id))
             .option("checkpointLocation", str(checkpoint_dir(settings).resolve()))
             .trigger(availableNow=True)
             .queryName("stream_samples")
             .start())
    query.awaitTermination()


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, _, args = parse_job_args(
        "Stream fresh events into training samples (availableNow).", argv,
        {"--after": {"type": date.fromisoformat, "default": None,
                     "help": "only events of later dates (the champion's last data date), YYYY-MM-DD"}},
        dated=False)
    run(get_spark(settings), settings, args.after)


if __name__ == "__main__":
    main()
