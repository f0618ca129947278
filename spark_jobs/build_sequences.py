"""Behaviour sequences: for each event of a date, the user's last L events strictly before it.

Cost is near-linear in events: per user we keep only the last L_teacher events before the date
(a top-L window), append the date's own events, sort once per user, and give each sample a slice
of that sorted array ending just before its own timestamp. No per-sample explosion of history.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline.config import SequenceConfig, Settings
from pipeline.slots import ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, SEQUENCES, read_table, write_partition


def _interactions(events: DataFrame) -> DataFrame:
    action = (F.when(F.coalesce(F.col("conversion"), F.lit(0)) == 1, ACTION_CONVERSION)
              .when(F.col("click") == 1, ACTION_CLICK).otherwise(ACTION_IMPRESSION))
    return events.select("user_id", "event_id", "item_id", "date",
                         F.unix_micros("event_time").alias("t"), action.alias("action"))


def build_sequences(events: DataFrame, day: date, cfg: SequenceConfig) -> DataFrame:
    """Sequences for every event of `day`; `events` must cover the lookback window and `day`."""
    length = cfg.teacher_length
    interactions = _interactions(events.where(
        (F.col("date") >= F.lit(day - timedelta(days=cfg.lookback_days))) & (F.col("date") <= F.lit(day))))
    is_today = F.col("date") == F.lit(day)
    latest_first = Window.partitionBy("user_id").orderBy(F.col("t").desc(), F.col("event_id").desc())
    before = (interactions.where(~is_today)
              .withColumn("_rank", F.row_number().over(latest_first))
              .where(F.col("_rank") <= length).drop("_rank"))
    today = interactions.where(is_today)
    timeline = before.unionByName(today)
    # rank() - 1 = number of the user's events with a strictly earlier timestamp (ties excluded).
    by_time = Window.partitionBy("user_id").orderBy("t")
    samples = timeline.withColumn("n_before", F.rank().over(by_time) - 1).where(is_today)
    per_user = timeline.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("t", "event_id", "item_id", "action"))).alias("timeline"))
    n_taken = F.least(F.col("n_before"), F.lit(length))
    history = F.when(F.col("n_before") == 0, F.array()).otherwise(
        F.reverse(F.slice("timeline", F.col("n_before") - n_taken + 1, n_taken)))
    joined = samples.join(per_user, "user_id").select(
        "event_id", "user_id", F.col("t").alias("sample_t"), history.alias("history"))
    return joined.select(
        "event_id", "user_id",
        F.transform("history", lambda x: x["item_id"]).alias("history_items"),
        F.transform("history", lambda x: x["action"]).alias("history_actions"),
        F.transform("history", lambda x: ((F.col("sample_t") - x["t"]) / 1_000_000).cast("bigint"))
        .alias("history_gaps"),
        F.lit(day).alias("date"),
    )


def run(spark: SparkSession, settings: Settings, day: date) -> int:
    """Write the `sequences` partition of `day`; returns its row count."""
    events = read_table(spark, settings, EVENTS, start=day - timedelta(days=settings.sequences.lookback_days),
                        end=day)
    return write_partition(build_sequences(events, day, settings.sequences), settings, SEQUENCES, day)


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build behaviour sequences for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
