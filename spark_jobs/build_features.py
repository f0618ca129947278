"""Point-in-time user and item features for one date.

Features for date D use only events of dates strictly before D, so no sample of D (or later)
can see its own day or its future.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import FeatureConfig, Settings
from pipeline.slots import FEATURE_WINDOWS_DAYS
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, ITEM_FEATURES, USER_FEATURES, TableSpec, read_table, write_partition


def smoothed_ctr(clicks: str, impressions: str, cfg: FeatureConfig) -> F.Column:
    """Bayesian-smoothed CTR: a prior of `ctr_prior_strength` pseudo-impressions at `ctr_prior`."""
    strength = cfg.ctr_prior_strength
    return ((F.col(clicks) + F.lit(strength * cfg.ctr_prior)) / (F.col(impressions) + F.lit(strength)))


def build_entity_features(events: DataFrame, key: str, day: date, cfg: FeatureConfig) -> DataFrame:
    """Counts and CTRs per `key` over each window ending the day before `day`."""
    history = events.where((F.col("date") < F.lit(day))
                           & (F.col("date") >= F.lit(day - timedelta(days=max(FEATURE_WINDOWS_DAYS)))))
    aggregates = []
    for window in FEATURE_WINDOWS_DAYS:
        in_window = F.col("date") >= F.lit(day - timedelta(days=window))
        aggregates += [
            F.sum(F.when(in_window, 1).otherwise(0)).cast("bigint").alias(f"impressions_{window}d"),
            F.sum(F.when(in_window, F.col("click")).otherwise(0)).cast("bigint").alias(f"clicks_{window}d"),
        ]
    counts = history.groupBy(key).agg(*aggregates)
    for window in FEATURE_WINDOWS_DAYS:
        counts = counts.withColumn(f"ctr_{window}d", smoothed_ctr(f"clicks_{window}d", f"impressions_{window}d", cfg))
    return counts.withColumn("date", F.lit(day))


def build_user_features(events: DataFrame, day: date, cfg: FeatureConfig) -> DataFrame:
    return build_entity_features(events, "user_id", day, cfg)


def build_item_features(events: DataFrame, day: date, cfg: FeatureConfig) -> DataFrame:
    return build_entity_features(events, "item_id", day, cfg)


def run(spark: SparkSession, settings: Settings, day: date) -> dict[str, int]:
    """Write both feature tables for `day`; returns their row counts."""
    events = read_table(spark, settings, EVENTS, start=day - timedelta(days=max(FEATURE_WINDOWS_DAYS)),
                        end=day - timedelta(days=1))
    written: dict[str, int] = {}
    builders: list[tuple[TableSpec, DataFrame]] = [
        (USER_FEATURES, build_user_features(events, day, settings.features)),
        (ITEM_FEATURES, build_item_features(events, day, settings.features)),
    ]
    for spec, frame in builders:
        written[spec.name] = write_partition(frame, settings, spec, day)
    return written


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build point-in-time user and item features for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
