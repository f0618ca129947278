"""Ingest one landing date into `events`, sending invalid rows to `events_quarantine`.

Every landing format is read with all fields as strings so that a wrong type becomes a
quarantined row with a reason, never a silently nulled value.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from pipeline.config import Settings
from pipeline.data.landing import LANDING_FIELDS, landing_dir
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, EVENTS_QUARANTINE, write_partition

log = logging.getLogger(__name__)

FORMATS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
CORRUPT = "_corrupt_record"
REQUIRED = [name for name, (_, required) in LANDING_FIELDS.items() if required]


@dataclass(frozen=True)
class IngestReport:
    """Counts that must reconcile: read = accepted + quarantined + duplicates."""

    day: str
    read: int
    accepted: int
    quarantined: int
    duplicates: int

    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined + self.duplicates


def detect_format(path: Path) -> str:
    """The landing format of the files in `path`, or a clear error if there is none or several."""
    if not path.is_dir():
        raise FileNotFoundError(f"landing path {path} does not exist")
    suffixes = {p.suffix.lstrip(".") for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))}
    if not suffixes:
        raise FileNotFoundError(f"landing path {path} holds no data files")
    unknown = suffixes - set(FORMATS)
    if unknown or len(suffixes) > 1:
        raise ValueError(f"landing path {path}: unsupported or mixed file formats {sorted(suffixes)}; "
                         f"expected one of {sorted(FORMATS)}")
    return suffixes.pop()


def read_landing(spark: SparkSession, path: Path, fmt: str) -> DataFrame:
    """Landing rows as strings plus `source_file`; fails naming columns if the schema does not match."""
    strings = StructType([StructField(name, StringType()) for name in LANDING_FIELDS])
    if fmt == "parquet":
        raw = spark.read.parquet(str(path))
        _check_columns(raw.columns, path)
        for name in LANDING_FIELDS:
            if name not in raw.columns:
                raw = raw.withColumn(name, F.lit(None))
        typed = raw.select(*[_as_string(raw[n], raw.schema[n].dataType.simpleString(), n) for n in LANDING_FIELDS],
                           F.lit(None).cast("string").alias(CORRUPT), F.col("_metadata.file_path").alias("source_file"))
        return typed
    if fmt == "csv":
        _check_columns(spark.read.option("header", True).csv(str(path)).columns, path)
        # Landing CSV escapes quotes by doubling them (RFC 4180), not with Spark's default backslash.
        reader = spark.read.option("header", True).option("enforceSchema", False).option("escape", "\"")
    else:
        # One cheap pass over every line's keys: inference by sampling can miss a file's columns.
        keys = spark.read.text(str(path)).select(F.explode(F.json_object_keys("value")).alias("k")).distinct()
        _check_columns([row.k for row in keys.collect()], path)
        reader = spark.read
    with_corrupt = StructType(strings.fields + [StructField(CORRUPT, StringType())])
    raw = (reader.schema(with_corrupt).option("mode", "PERMISSIVE")
           .option("columnNameOfCorruptRecord", CORRUPT).format(FORMATS[fmt]).load(str(path)))
    return raw.select(*LANDING_FIELDS, CORRUPT, F.col("_metadata.file_path").alias("source_file"))


def _as_string(column: Column, type_name: str, name: str) -> Column:
    if type_name == "timestamp":
        return F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSXXX").alias(name)
    return column.cast("string").alias(name)


def _check_columns(columns: list[str], path: Path) -> None:
    present = set(columns)
    missing = [name for name in REQUIRED if name not in present]
    unexpected = sorted(present - set(LANDING_FIELDS))
    if missing or unexpected:
        raise ValueError(f"landing files in {path} do not match the event schema: "
                         f"missing required columns {missing}, unexpected columns {unexpected}")


def _blank(name: str) -> Column:
    return F.col(name).isNull() | (F.trim(F.col(name)) == "")


def _bad_int(name: str, low: int | None = None, high: int | None = None) -> Column:
    """True when a present value is not an integer within [low, high]."""
    value = F.trim(F.col(name)).try_cast("bigint")
    bad = value.isNull()
    if low is not None:
        bad = bad | (value < low)
    if high is not None:
        bad = bad | (value > high)
    return ~_blank(name) & bad


def _reason(day: date) -> Column:
    """The first rule a row breaks, with the offending value; null for a valid row."""
    event_time = F.trim(F.col("event_time")).try_cast("timestamp")
    dwell = F.trim(F.col("dwell_seconds")).try_cast("double")

    def bad(name: str, rule: str) -> Column:
        return F.concat(F.lit(f"{name} {rule}: '"), F.coalesce(F.col(name), F.lit("")), F.lit("'"))

    rules: list[tuple[Column, Column]] = [(F.col(CORRUPT).isNotNull(), F.lit("malformed record"))]
    rules += [(_blank(name), F.lit(f"missing {name}")) for name in REQUIRED]
    rules += [
        (event_time.isNull(), bad("event_time", "is not a timestamp")),
        (F.to_date(event_time) != F.lit(day), bad("event_time", f"is outside the landing date {day}")),
        (_bad_int("user_id", low=0), bad("user_id", "is not a non-negative integer")),
        (_bad_int("item_id", low=0), bad("item_id", "is not a non-negative integer")),
        (_bad_int("position", low=0, high=10_000), bad("position", "is not an integer in [0, 10000]")),
        (_bad_int("click", low=0, high=1), bad("click", "is out of range (expected 0 or 1)")),
        (_bad_int("conversion", low=0, high=1), bad("conversion", "is out of range (expected 0 or 1)")),
        (~_blank("dwell_seconds") & (dwell.isNull() | (dwell < 0)), bad("dwell_seconds", "is not a number >= 0")),
        (_bad_int("user_age", low=0, high=130), bad("user_age", "is not an age in [0, 130]")),
    ]
    reason = F.lit(None).cast("string")
    for condition, text in reversed(rules):
        reason = F.when(F.coalesce(condition, F.lit(False)), text).otherwise(reason)
    return reason


def validate_events(raw: DataFrame, day: date) -> DataFrame:
    """`raw` with a `reason` column: null for rows that become events, the first broken rule otherwise."""
    return raw.withColumn("reason", _reason(day))


def _int(name: str) -> Column:
    return F.when(_blank(name), None).otherwise(F.trim(F.col(name)).try_cast("int")).alias(name)


def _str(name: str) -> Column:
    return F.when(_blank(name), None).otherwise(F.trim(F.col(name))).alias(name)


def build_events(validated: DataFrame, day: date) -> DataFrame:
    """Valid rows, typed, one per event_id (ties broken by source file, then content, for determinism)."""
    typed = validated.where(F.col("reason").isNull()).select(
        _str("event_id"),
        F.trim(F.col("event_time")).try_cast("timestamp").alias("event_time"),
        F.trim(F.col("user_id")).try_cast("bigint").alias("user_id"),
        F.trim(F.col("item_id")).try_cast("bigint").alias("item_id"),
        _int("position"), _str("scenario"), _str("device"), _int("click"), _int("conversion"),
        F.when(_blank("dwell_seconds"), None).otherwise(F.trim(F.col("dwell_seconds")).try_cast("double"))
        .alias("dwell_seconds"),
        _int("user_age"), _str("user_gender"), _str("user_segment"), _str("item_category"),
        F.col("source_file"), F.lit(day).alias("date"),
    )
    order = Window.partitionBy("event_id").orderBy(*[F.col(c).asc_nulls_first() for c in typed.columns])
    return typed.withColumn("_n", F.row_number().over(order)).where(F.col("_n") == 1).drop("_n")


def build_events_quarantine(validated: DataFrame, day: date) -> DataFrame:
    """Rejected rows with their reason, raw content and source file."""
    rejected = validated.where(F.col("reason").isNotNull())
    raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(n) for n in LANDING_FIELDS])))
    return rejected.select(_str("event_id"), "reason", raw.alias("raw"), "source_file", F.lit(day).alias("date"))


def run(spark: SparkSession, settings: Settings, day: date, source: str = "synthetic",
        path: Path | None = None) -> IngestReport:
    """Ingest the landing files of `day` (default: the `source` landing folder) idempotently."""
    folder = path or landing_dir(settings.lakehouse.landing, source, day)
    validated = validate_events(read_landing(spark, folder, detect_format(folder)), day).cache()
    try:
        read = validated.count()
        valid = validated.where(F.col("reason").isNull()).count()
        accepted = write_partition(build_events(validated, day), settings, EVENTS, day)
        quarantined = write_partition(build_events_quarantine(validated, day), settings, EVENTS_QUARANTINE, day)
        report = IngestReport(day.isoformat(), read, accepted, quarantined, valid - accepted)
    finally:
        validated.unpersist()
    log.info("ingest %s", asdict(report))
    if not report.reconciles():
        raise RuntimeError(f"ingest counts do not reconcile: {asdict(report)}")
    return report


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, args = parse_job_args(
        "Ingest one landing date into the events table.", argv,
        {"--source": {"default": "synthetic", "help": "landing source folder"},
         "--path": {"default": None, "type": Path, "help": "explicit landing folder"}},
    )
    run(get_spark(settings), settings, day, args.source, args.path)


if __name__ == "__main__":
    main()
