"""Behaviour sequences: for each event, the user's last L events strictly before it.

Each event carries its item's category as side information (as in DIN and SIM, whose hard search
picks the history of the candidate's category), so models need not learn item→category from clicks.

Cost is near-linear in events: per user we keep only the last L_teacher events before the first
target date (a top-L window), append the events from that date on, sort once per user, and give
each sample a slice of that sorted array ending just before its own timestamp. No per-sample
explosion of history. The same code serves one date, a range of dates and a stream's micro-batch.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline.config import SequenceConfig, Settings
from pipeline.slots import ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, SEQUENCES, read_table, write_date_range


def _interactions(events: DataFrame) -> DataFrame:
    action = (F.when(F.coalesce(F.col("conversion"), F.lit(0)) == 1, ACTION_CONVERSION)
              .when(F.col("click") == 1, ACTION_CLICK).otherwise(ACTION_IMPRESSION))
    return events.select("user_id", "event_id", "item_id", "item_category", "date",
                         F.unix_micros("event_time").alias("t"), action.alias("action"))


def build_sequences(targets: DataFrame, history: DataFrame, cfg: SequenceConfig) -> DataFrame:
    """Sequences for every event of `targets` (one date, a range, or a stream's micro-batch).

    `history` must hold the targets themselves and every event of their users from `lookback_days`
    before their first date up to their last date. A sample's history is the user's L most recent
    events strictly before its own timestamp and within the lookback of its own date.
    """
    length = cfg.teacher_length
    bounds = targets.groupBy("user_id").agg(F.min("date").alias("_first"), F.max("date").alias("_last"))
    interactions = _interactions(history).join(bounds, "user_id").where(
        (F.col("date") >= F.date_sub("_first", cfg.lookback_days)) & (F.col("date") <= F.col("_last")))
    # Before the user's first target date only the last L events can ever be needed.
    earlier = F.col("date") < F.col("_first")
    latest_first = Window.partitionBy("user_id").orderBy(F.col("t").desc(), F.col("event_id").desc())
    before = (interactions.where(earlier)
              .withColumn("_rank", F.row_number().over(latest_first))
              .where(F.col("_rank") <= length).drop("_rank"))
    timeline = before.unionByName(interactions.where(~earlier)).drop("_first", "_last")
    # rank() - 1 = number of the user's events with a strictly earlier timestamp (ties excluded).
    by_time = Window.partitionBy("user_id").orderBy("t")
    samples = (timeline.withColumn("n_before", F.rank().over(by_time) - 1)
               .join(targets.select("event_id"), "event_id", "left_semi"))
    per_user = timeline.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("t", "event_id", "item_id", "item_category", "action", "date"))).alias("timeline"))
    # The timeline is sorted by time, so events older than this sample's lookback are a prefix.
    too_old = F.size(F.filter("timeline", lambda x: x["date"] < F.date_sub(F.col("date"), cfg.lookback_days)))
    first_taken = F.greatest(F.col("n_before") - F.lit(length), too_old)
    n_taken = F.col("n_before") - first_taken
    history_column = F.when(n_taken == 0, F.array()).otherwise(
        F.reverse(F.slice("timeline", first_taken + 1, n_taken)))
    joined = samples.join(per_user, "user_id").select(
        "event_id", "user_id", "date", F.col("t").alias("sample_t"), history_column.alias("history"))
    return joined.select(
        "event_id", "user_id",
        F.transform("history", lambda x: x["item_id"]).alias("history_items"),
        F.transform("history", lambda x: x["item_category"]).alias("history_categories"),
        F.transform("history", lambda x: x["action"]).alias("history_actions"),
        F.transform("history", lambda x: ((F.col("sample_t") - x["t"]) / 1_000_000).cast("bigint"))
        .alias("history_gaps"),
        "date",
    )


def run_range(spark: SparkSession, settings: Settings, first: date, last: date) -> int:
    """Write the `sequences` partitions of every date of [first, last] in one job; returns the rows."""
    history = read_table(spark, settings, EVENTS, start=first - timedelta(days=settings.sequences.lookback_days),
                         end=last)
    targets = history.where(F.col("date") >= F.lit(first))
    return write_date_range(build_sequences(targets, history, settings.sequences), settings, SEQUENCES, first, last)


def run(spark: SparkSession, settings: Settings, day: date) -> int:
    """Write the `sequences` partition of `day`; returns its row count."""
    return run_range(spark, settings, day, day)


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build behaviour sequences for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
