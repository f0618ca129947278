"""`training_samples` for one date or a range: labels, hashed slots, dense features and both sequences."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Settings
from pipeline.slots import FEATURE_WINDOWS_DAYS, SPARSE_SLOTS
from pipeline.spark import get_spark
from pipeline.tables import (EVENTS, ITEM_FEATURES, SEQUENCES, TRAINING_SAMPLES, USER_FEATURES, read_table,
                             write_date_range)
from spark_jobs.build_features import build_item_features, build_user_features
from spark_jobs.build_sequences import build_sequences


def hash_slot(slot: str, value: Column, buckets: int) -> Column:
    """The documented slot hash (pipeline.slots): 1 + pmod(xxhash64(slot, value), B - 1); 0 if missing."""
    as_text = value.cast("string")
    hashed = F.pmod(F.xxhash64(F.lit(slot), as_text), F.lit(buckets - 1)) + 1
    return F.when(as_text.isNull(), F.lit(0).cast("bigint")).otherwise(hashed)


def slot_values(events: DataFrame) -> dict[str, Column]:
    """The raw value behind each sparse slot."""
    return {
        "user_id": F.col("user_id"), "user_age": F.col("user_age"), "user_gender": F.col("user_gender"),
        "user_segment": F.col("user_segment"), "device": F.col("device"),
        "hour": F.hour("event_time"), "scenario": F.col("scenario"),
        "item_id": F.col("item_id"), "item_category": F.col("item_category"), "position": F.col("position"),
    }


def _dense(prefix: str, prior: float) -> Column:
    """log1p counts and CTRs per window; entities without history get zero counts and the prior CTR."""
    values = []
    for window in FEATURE_WINDOWS_DAYS:
        values += [
            F.log1p(F.coalesce(F.col(f"{prefix}impressions_{window}d"), F.lit(0))),
            F.log1p(F.coalesce(F.col(f"{prefix}clicks_{window}d"), F.lit(0))),
            F.coalesce(F.col(f"{prefix}ctr_{window}d"), F.lit(prior)),
        ]
    return F.array(*[v.cast("float") for v in values])


def _prefixed(features: DataFrame, key: str, prefix: str) -> DataFrame:
    return features.select(key, "date",
                           *[F.col(c).alias(prefix + c) for c in features.columns if c not in (key, "date")])


def build_training_samples(events: DataFrame, user_features: DataFrame, item_features: DataFrame,
                           sequences: DataFrame, settings: Settings) -> DataFrame:
    """Join events with their own date's features and their sequences into model-ready rows."""
    buckets = settings.features.hash_buckets
    student = settings.sequences.student_length
    values = slot_values(events)
    slots = [hash_slot(s.name, values[s.name], buckets).alias(s.column) for s in SPARSE_SLOTS]
    joined = (events
              .join(_prefixed(user_features, "user_id", "u_"), ["user_id", "date"], "left")
              .join(_prefixed(item_features, "item_id", "i_"), ["item_id", "date"], "left")
              .join(sequences.select("event_id", "history_items", "history_categories", "history_actions",
                                     "history_gaps"),
                    "event_id", "left"))
    items = F.transform(F.coalesce("history_items", F.array().cast("array<bigint>")),
                        lambda item: hash_slot("item_id", item, buckets))
    categories = F.transform(F.coalesce("history_categories", F.array().cast("array<string>")),
                             lambda category: hash_slot("item_category", category, buckets))
    actions = F.coalesce("history_actions", F.array().cast("array<int>"))
    gaps = F.coalesce("history_gaps", F.array().cast("array<bigint>"))
    return joined.select(
        F.xxhash64("event_id").alias("sample_id"),
        "event_id", "event_time", "user_id", "item_id", "scenario", "position", "click", "conversion",
        *slots,
        _dense("u_", settings.features.ctr_prior).alias("user_dense"),
        _dense("i_", settings.features.ctr_prior).alias("item_dense"),
        items.alias("seq_teacher_items"), categories.alias("seq_teacher_categories"),
        actions.alias("seq_teacher_actions"), gaps.alias("seq_teacher_gaps"),
        F.slice(items, 1, student).alias("seq_student_items"),
        F.slice(categories, 1, student).alias("seq_student_categories"),
        F.slice(actions, 1, student).alias("seq_student_actions"),
        F.slice(gaps, 1, student).alias("seq_student_gaps"),
        "date",
    )


def samples_from_events(targets: DataFrame, history: DataFrame, days: list[date], settings: Settings) -> DataFrame:
    """Samples of `targets` (events of `days`) built straight from the events in `history`.

    The daily jobs' own builders, chained without their tables: what a stream's micro-batch uses, so
    a streamed sample equals the daily one. `history` must reach back max(lookback, feature window).
    """
    users = build_user_features(history, days, settings.features)
    items = build_item_features(history, days, settings.features)
    sequences = build_sequences(targets, history, settings.sequences)
    return build_training_samples(targets, users, items, sequences, settings)


def history_start(settings: Settings, first: date) -> date:
    """The first date of events that samples of `first` (and later) can depend on."""
    return first - timedelta(days=max(settings.sequences.lookback_days, max(FEATURE_WINDOWS_DAYS)))


def run_range(spark: SparkSession, settings: Settings, first: date, last: date) -> int:
    """Write the `training_samples` partitions of every date of [first, last] in one job; returns the rows."""
    frames = [read_table(spark, settings, spec, start=first, end=last)
              for spec in (EVENTS, USER_FEATURES, ITEM_FEATURES, SEQUENCES)]
    return write_date_range(build_training_samples(*frames, settings), settings, TRAINING_SAMPLES, first, last)


def run(spark: SparkSession, settings: Settings, day: date) -> int:
    """Write the `training_samples` partition of `day`; returns its row count."""
    return run_range(spark, settings, day, day)


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build training samples for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
