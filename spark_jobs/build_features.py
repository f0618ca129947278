"""Point-in-time user and item features for one date or a range of dates.

Features for date D use only events of dates strictly before D, so no sample of D (or later)
can see its own day or its future.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import FeatureConfig, Settings
from pipeline.dates import date_range
from pipeline.slots import FEATURE_WINDOWS_DAYS
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, ITEM_FEATURES, USER_FEATURES, TableSpec, read_table, write_date_range


def smoothed_ctr(clicks: str, impressions: str, cfg: FeatureConfig) -> F.Column:
    """Bayesian-smoothed CTR: a prior of `ctr_prior_strength` pseudo-impressions at `ctr_prior`."""
    strength = cfg.ctr_prior_strength
    return ((F.col(clicks) + F.lit(strength * cfg.ctr_prior)) / (F.col(impressions) + F.lit(strength)))


def build_entity_features(events: DataFrame, key: str, days: list[date], cfg: FeatureConfig) -> DataFrame:
    """Counts and CTRs per `key` for each of `days`, over windows ending the day before that day.

    Per-(key, date) counts first, then every target date sums the counts of its windows: one pass
    serves one date, a range of dates or the dates of a stream's micro-batch alike.
    """
    longest = max(FEATURE_WINDOWS_DAYS)
    daily = events.groupBy(key, "date").agg(F.count(F.lit(1)).alias("_impressions"), F.sum("click").alias("_clicks"))
    targets = F.broadcast(events.sparkSession.createDataFrame([(d,) for d in days], "_target DATE"))
    history = daily.join(targets, (F.col("date") < F.col("_target"))
                         & (F.col("date") >= F.date_sub(F.col("_target"), longest)))
    aggregates = []
    for window in FEATURE_WINDOWS_DAYS:
        in_window = F.col("date") >= F.date_sub(F.col("_target"), window)
        aggregates += [
            F.sum(F.when(in_window, F.col("_impressions")).otherwise(0)).cast("bigint").alias(f"impressions_{window}d"),
            F.sum(F.when(in_window, F.col("_clicks")).otherwise(0)).cast("bigint").alias(f"clicks_{window}d"),
        ]
    counts = history.groupBy(key, F.col("_target").alias("date")).agg(*aggregates)
    for window in FEATURE_WINDOWS_DAYS:
        counts = counts.withColumn(f"ctr_{window}d", smoothed_ctr(f"clicks_{window}d", f"impressions_{window}d", cfg))
    return counts


def build_user_features(events: DataFrame, days: list[date], cfg: FeatureConfig) -> DataFrame:
    return build_entity_features(events, "user_id", days, cfg)


def build_item_features(events: DataFrame, days: list[date], cfg: FeatureConfig) -> DataFrame:
    return build_entity_features(events, "item_id", days, cfg)


def run_range(spark: SparkSession, settings: Settings, first: date, last: date) -> dict[str, int]:
    """Write both feature tables for every date of [first, last] in one job; returns their row counts."""
    days = date_range(first, last)
    events = read_table(spark, settings, EVENTS, start=first - timedelta(days=max(FEATURE_WINDOWS_DAYS)),
                        end=last - timedelta(days=1))
    written: dict[str, int] = {}
    builders: list[tuple[TableSpec, DataFrame]] = [
        (USER_FEATURES, build_user_features(events, days, settings.features)),
        (ITEM_FEATURES, build_item_features(events, days, settings.features)),
    ]
    for spec, frame in builders:
        written[spec.name] = write_date_range(frame, settings, spec, first, last)
    return written


def run(spark: SparkSession, settings: Settings, day: date) -> dict[str, int]:
    """Write both feature tables for `day`; returns their row counts."""
    return run_range(spark, settings, day, day)


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, _ = parse_job_args("Build point-in-time user and item features for one date.", argv)
    run(get_spark(settings), settings, day)


if __name__ == "__main__":
    main()
