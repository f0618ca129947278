"""`training_samples` for one date: labels, hashed slots, dense features and both sequences."""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import Settings
from pipeline.slots import FEATURE_WINDOWS_DAYS, SPARSE_SLOTS
from pipeline.spark import get_spark
from pipeline.tables import (EVENTS, ITEM_FEATURES, SEQUENCES, TRAINING_SAMPLES, USER_FEATURES, read_table,
                             write_partition)


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
    return features.select(key, *[F.col(c).alias(prefix + c) for c in features.columns if c not in (key, "date")])


def build_training_samples(events: DataFrame, user_features: DataFrame, item_features: DataFrame,
                           sequences: DataFrame, settings: Settings) -> DataFrame:
    """Join one date's events with that date's features and sequences into model-ready rows."""
    buckets = settings.features.hash_buckets
    student = settings.sequences.student_length
    values = slot_values(events)
    slots = [hash_slot(s.name, values[s.name], buckets).alias(s.column) for s in SPARSE_SLOTS]
    joined = (events
              .join(_prefixed(user_features, "user_id", "u_"), "user_id", "left")
              .join(_prefixed(item_features, "item_id", "i_"), "item_id", "left")
              .join(sequences.select("event_id", "history_items", "history_actions", "history_gaps"),
                    "event_id", "left"))
    items = F.transform(F.coalesce("history_items", F.array().cast("array<bigint>")),
                        lambda item: hash_slot("item_id", item, buckets))
    actions = F.coalesce("history_actions", F.array().cast("array<int>"))
    gaps = F.coalesce("history_gaps", F.array().cast("array<bigint>"))
    return joined.select(
        F.xxhash64("event_id").alias("sample_id"),
        "event_id", "event_time", "user_id", "item_id", "scenario", "position", "click", "conversion",
        *slots,
        _dense("u_", settings.features.ctr_prior).alias("user_dense"),
        _dense("i_", settings.features.ctr_prior).alias("item_dense"),
        items.alias("seq_teacher_items"), actions.alias("seq_teacher_actions"), gaps.alias("seq_teacher_gaps"),
        F.slice(items, 1, student).alias("seq_student_items"),
        F.slice(actions, 1, student).alias("seq_student_actions"),
        F.slice(gaps, 1, student).alias("seq_student_gaps"),
        "date",
    )


def run(spark: SparkSession, settings: Settings, day: date) -> int:
    """Write the `training_samples` partition of `day`; returns its row count."""
    frames = [read_table(spark, settings, spec, start=day, end=day)
              for spec in (EVENTS, USER_FEATURES, ITEM_FEATURES, SEQUENCES)]
    return write_partition(build_training_samples(*frames, settings), settings, TRAINING_SAMPLES, day)


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build training samples for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
