"""Ingest one landing date into `events`, sending rejected rows to `events_quarantine`.

A day's events are the union of every source's landing files for that day (`landing/<source>/date=D/`).
Every format is read with all fields as text and validated by rules derived from the landing
contract (`pipeline/data/contract.py`), so a wrong value becomes a quarantined row with a reason,
never a silently nulled one, and one malformed row never fails the day. What fails the day, before
anything is written: no landing files, an empty or header-only file, a file whose columns or column
types break the contract, and (unless allowed) a file whose rows are all rejected.

Counts come from the rows themselves, reconcile before any commit (read = accepted + quarantined +
duplicates), and if a commit fails both tables' rows of the day are put back as they were.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from pipeline.config import Settings
from pipeline.data.contract import (CONTROL_CHARACTERS, INTEGER_TEXT, LANDING_FIELDS, NUMBER_TEXT, REQUIRED_FIELDS,
                                    TIMESTAMP_TEXT, LandingField)
from pipeline.data.landing import landing_dir
from pipeline.spark import get_spark
from pipeline.tables import EVENTS, EVENTS_QUARANTINE, restore_partition, table_version, write_partition

log = logging.getLogger(__name__)

FORMATS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}
PROBLEM = "_problem"  # a reason found while reading (malformed record, duplicate or unexpected key)
RAW = "_raw"  # the record as read, where the reader has it (JSON line, malformed CSV record)
OUTCOME = "_outcome"
ACCEPTED, DUPLICATE, QUARANTINED = "accepted", "duplicate", "quarantined"


class IngestError(ValueError):
    """Landing data that cannot be ingested at all; nothing was written."""


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


def landing_folders(settings: Settings, day: date, sources: list[str] | None = None) -> list[Path]:
    """The day's landing folders: every source's, or exactly `sources` (which must then be all of them)."""
    root = settings.lakehouse.landing
    found = sorted(p.parent.name for p in root.glob(f"*/date={day.isoformat()}") if p.is_dir())
    if not found:
        raise FileNotFoundError(f"no landing files for {day} (no folder {root}/<source>/date={day}); "
                                f"write them first, e.g. `recdistill data generate`")
    if sources:
        missing = sorted(set(sources) - set(found))
        if missing:
            raise FileNotFoundError(f"no landing folder for {day} from source(s) {missing}; "
                                    f"{day} has sources {found}")
        # A day's events are the union of its sources: ingesting a subset would drop the others.
        others = sorted(set(found) - set(sources))
        if others:
            raise IngestError(f"{day} also has landing data from source(s) {others}, which an ingest of "
                              f"{sorted(sources)} alone would drop; ingest without --source to take every source")
    return [landing_dir(root, source, day) for source in found]


def detect_format(path: Path) -> str:
    """The landing format of the files in `path`, or a clear error if there is none or several."""
    if not path.is_dir():
        raise FileNotFoundError(f"landing path {path} does not exist")
    suffixes = {p.suffix.lstrip(".") for p in _data_files(path)}
    if not suffixes:
        raise FileNotFoundError(f"landing path {path} holds no data files")
    unknown = suffixes - set(FORMATS)
    if unknown or len(suffixes) > 1:
        raise IngestError(f"landing path {path}: unsupported or mixed file formats {sorted(suffixes)}; "
                          f"expected one of {sorted(FORMATS)}")
    return suffixes.pop()


def _data_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def _check_columns(columns: list[str], where: Path) -> None:
    present = set(columns)
    missing = [name for name in REQUIRED_FIELDS if name not in present]
    unexpected = sorted(present - set(LANDING_FIELDS))
    if missing or unexpected:
        raise IngestError(f"landing file {where} does not match the landing contract: "
                          f"missing required columns {missing}, unexpected columns {unexpected}")


def check_files(path: Path, fmt: str) -> list[str]:
    """Check every file of a landing folder against the contract before anything is read by Spark.

    Returns the landing fields the files carry (CSV and parquet: their columns). Empty and
    header-only files are errors; parquet columns must be text (the contract stores every value as text).
    """
    columns: list[str] | None = None
    for file in _data_files(path):
        if fmt == "parquet":
            schema = pq.read_schema(file)
            _check_columns(schema.names, file)
            wrong = [f"{f.name} is {f.type}" for f in schema if f.type not in (pa.string(), pa.large_string(), pa.null())]
            if wrong:
                raise IngestError(f"landing file {file}: {', '.join(wrong)}; the landing contract stores every "
                                  f"field as text (string)")
            if pq.read_metadata(file).num_rows == 0:
                raise IngestError(f"landing file {file} holds no rows")
            names = schema.names
        elif fmt == "csv":
            with file.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                names = next(reader, [])
                if not names:
                    raise IngestError(f"landing file {file} is empty")
                _check_columns(names, file)
                if next(reader, None) is None:
                    raise IngestError(f"landing file {file} holds a header and no rows")
        else:
            with file.open("rb") as handle:
                if not any(line.strip() for line in handle):
                    raise IngestError(f"landing file {file} is empty")
            continue
        if columns is not None and names != columns:
            raise IngestError(f"landing files in {path} have different columns: {columns} and {names} ({file.name})")
        columns = names
    return columns or list(LANDING_FIELDS)


def read_landing_folder(spark: SparkSession, path: Path, fmt: str) -> DataFrame:
    """One folder's rows: every landing field as text, a read-time problem, the raw record, the source file."""
    columns = check_files(path, fmt)
    text = StructType([StructField(name, StringType()) for name in columns])
    if fmt == "parquet":
        raw = spark.read.schema(text).parquet(str(path))
        read = raw.select(*columns, F.lit(None).cast("string").alias(PROBLEM), F.lit(None).cast("string").alias(RAW),
                          F.col("_metadata.file_path").alias("source_file"))
    elif fmt == "csv":
        # RFC 4180: quotes doubled, quoted fields may span lines; columns by the header's names.
        raw = (spark.read.schema(StructType(text.fields + [StructField(RAW, StringType())]))
               .options(header=True, multiLine=True, escape='"', mode="PERMISSIVE", enforceSchema=False,
                        columnNameOfCorruptRecord=RAW).csv(str(path)))
        read = raw.select(*columns, F.when(F.col(RAW).isNotNull(), "malformed record").alias(PROBLEM), RAW,
                          F.col("_metadata.file_path").alias("source_file"))
    else:
        read = _read_json_lines(spark, path)
    return read.select(*[F.col(n) if n in read.columns else F.lit(None).cast("string").alias(n) for n in LANDING_FIELDS],
                       PROBLEM, RAW, "source_file")


def _read_json_lines(spark: SparkSession, path: Path) -> DataFrame:
    """JSON lines parsed one by one, so a line that is not one flat object with known keys is a row's problem."""
    lines = (spark.read.text(str(path)).select(F.col("value").alias(RAW), F.col("_metadata.file_path").alias("source_file"))
             .where(F.trim(F.col(RAW)) != ""))
    keys = F.json_object_keys(F.col(RAW))
    unexpected = F.array_except(keys, F.array(*[F.lit(n) for n in LANDING_FIELDS]))
    problem = (F.when(keys.isNull(), "malformed record")
               .when(F.size(keys) != F.size(F.array_distinct(keys)), "malformed record: a key appears twice")
               .when(F.size(unexpected) > 0, F.concat(F.lit("unexpected fields: "), F.array_join(unexpected, ", "))))
    schema = StructType([StructField(name, StringType()) for name in LANDING_FIELDS])
    parsed = F.from_json(F.col(RAW), schema, {"mode": "PERMISSIVE"})
    return lines.select(*[parsed[n].alias(n) for n in LANDING_FIELDS], problem.alias(PROBLEM), RAW, "source_file")


def _present(name: str) -> Column:
    return F.col(name).isNotNull() & (F.trim(F.col(name)) != "")


def _breaks(spec: LandingField) -> Column:
    """True when a present value of `spec` breaks the contract (text form, bounds, allowed set)."""
    value = F.col(spec.name)
    if spec.kind == "timestamp":
        return ~value.rlike(TIMESTAMP_TEXT) | value.try_cast("timestamp").isNull()
    if spec.kind == "int":
        number = value.try_cast("decimal(38,0)")
        return ~value.rlike(INTEGER_TEXT) | number.isNull() | (number < spec.low) | (number > spec.high)
    if spec.kind == "float":
        number = value.try_cast("double")
        return (~value.rlike(NUMBER_TEXT) | number.isNull() | F.isnan(number)
                | (number < spec.low) | (number > spec.high))  # 1e309 reads as infinity: above every bound
    if spec.allowed:
        return ~value.isin(*spec.allowed)
    return (F.length(value) > spec.max_length) | value.rlike(CONTROL_CHARACTERS)


def _shown(name: str) -> Column:
    """The offending value for a reason, cut to 100 characters (a 1 MB id must not make a 1 MB reason)."""
    value = F.col(name)
    return F.when(F.length(value) > 100, F.concat(F.substring(value, 1, 100), F.lit("…"))).otherwise(value)


def _reason(day: date) -> Column:
    """The first contract rule a row breaks, with the offending value; null for a valid row."""
    rules: list[tuple[Column, Column]] = [(F.col(PROBLEM).isNotNull(), F.col(PROBLEM))]
    rules += [(~_present(name), F.lit(f"missing {name}")) for name in REQUIRED_FIELDS]
    for spec in LANDING_FIELDS.values():
        rules.append((_present(spec.name) & _breaks(spec),
                      F.concat(F.lit(f"{spec.name} is not {spec.expected}: '"), _shown(spec.name), F.lit("'"))))
        if spec.kind == "timestamp":
            outside = F.to_date(F.col(spec.name).try_cast("timestamp")) != F.lit(day)
            rules.append((outside, F.concat(F.lit(f"{spec.name} is outside the landing date {day}: '"),
                                            _shown(spec.name), F.lit("'"))))
    reason = F.lit(None).cast("string")
    for condition, text in reversed(rules):
        reason = F.when(F.coalesce(condition, F.lit(False)), text).otherwise(reason)
    return reason


def validate_events(raw: DataFrame, day: date) -> DataFrame:
    """`raw` with a `reason` column: null for rows that become events, the first broken rule otherwise."""
    return raw.withColumn("reason", _reason(day))


def _typed(spec: LandingField) -> Column:
    value = F.col(spec.name)
    typed = value if spec.kind == "text" else value.try_cast(spec.events_type.lower())
    return F.when(_present(spec.name), typed).alias(spec.name)


def classify(validated: DataFrame, day: date) -> DataFrame:
    """Every read row, typed, with its outcome: accepted, an exact duplicate, or quarantined (with a reason).

    Copies of an `event_id` with identical content are duplicates (one is kept, by source file, for
    determinism); copies that differ are a conflict no rule can settle, so every version is quarantined.
    """
    typed = validated.select(*[_typed(spec) for spec in LANDING_FIELDS.values()], "reason", RAW, "source_file")
    # Compared typed, so "1" and "+1" or two spellings of one instant are the same content.
    typed = typed.withColumn("_content", F.sha2(F.to_json(F.struct(*LANDING_FIELDS)), 256))
    same_id = Window.partitionBy("event_id")
    versions = F.size(F.collect_set("_content").over(same_id))
    valid = F.col("reason").isNull()
    conflict = F.concat(F.lit("conflicting duplicate: event_id '"), _shown("event_id"), F.lit("' has "),
                        versions.cast("string"), F.lit(" different versions"))
    first = F.row_number().over(Window.partitionBy("event_id", "_content").orderBy("source_file", RAW)) == 1
    ranked = typed.where(valid).withColumn("_versions", versions).withColumn("_first", first)
    return (ranked.select(*LANDING_FIELDS, RAW, "source_file",
                          F.when(F.col("_versions") > 1, conflict).alias("reason"),
                          F.when(F.col("_versions") > 1, QUARANTINED).when(F.col("_first"), ACCEPTED)
                          .otherwise(DUPLICATE).alias(OUTCOME))
            .unionByName(typed.where(~valid).select(*LANDING_FIELDS, RAW, "source_file", "reason",
                                                    F.lit(QUARANTINED).alias(OUTCOME))))


def build_events(classified: DataFrame, day: date) -> DataFrame:
    """The accepted rows, one per event_id, typed as the `events` table."""
    return classified.where(F.col(OUTCOME) == ACCEPTED).select(*LANDING_FIELDS, "source_file",
                                                               F.lit(day).alias("date"))


def build_events_quarantine(classified: DataFrame, raw: DataFrame, day: date) -> DataFrame:
    """Rejected rows with their reason, the record as read and the source file.

    Rows that break a rule come from `raw` (as read: the typed copy has lost the bad value); conflicting
    duplicates from `classified`.
    """
    text = F.coalesce(F.col(RAW), F.to_json(F.struct(*[F.col(n) for n in LANDING_FIELDS])))
    broken = raw.where(F.col("reason").isNotNull())
    conflicts = classified.where((F.col(OUTCOME) == QUARANTINED) & F.col("reason").startswith("conflicting"))
    return (broken.select(F.col("event_id"), "reason", text.alias("raw"), "source_file")
            .unionByName(conflicts.select("event_id", "reason", text.alias("raw"), "source_file"))
            .select(F.when(_present("event_id"), F.col("event_id")).alias("event_id"), "reason", "raw",
                    "source_file", F.lit(day).alias("date")))


def _counts(classified: DataFrame) -> dict[str, dict[str, int]]:
    """Rows per source file and outcome, from one aggregation over the classified rows."""
    counts: dict[str, dict[str, int]] = {}
    for row in classified.groupBy("source_file", OUTCOME).count().collect():
        counts.setdefault(row["source_file"], {})[row[OUTCOME]] = row["count"]
    return counts


def run(spark: SparkSession, settings: Settings, day: date, sources: list[str] | None = None,
        path: Path | None = None, allow_all_rejected: bool = False) -> IngestReport:
    """Ingest `day` from every landing source (or exactly `sources`, or one explicit `path`), idempotently.

    A file whose rows are all rejected fails the day with nothing written unless `allow_all_rejected`.
    """
    folders = [path] if path else landing_folders(settings, day, sources)
    frames = [read_landing_folder(spark, folder, detect_format(folder)) for folder in folders]
    raw = frames[0]
    for frame in frames[1:]:
        raw = raw.unionByName(frame)
    validated = validate_events(raw, day).cache()
    classified = classify(validated, day).cache()
    try:
        read = validated.count()
        per_file = _counts(classified)
        total = {outcome: sum(c.get(outcome, 0) for c in per_file.values())
                 for outcome in (ACCEPTED, QUARANTINED, DUPLICATE)}
        report = IngestReport(day.isoformat(), read, total[ACCEPTED], total[QUARANTINED], total[DUPLICATE])
        log.info("ingest %s", asdict(report))
        if not report.reconciles():
            raise RuntimeError(f"ingest counts do not reconcile (nothing written): {asdict(report)}")
        rejected = sorted(f for f, c in per_file.items() if c.get(QUARANTINED, 0) == sum(c.values()))
        if rejected and not allow_all_rejected:
            reasons = [r.reason for r in validated.where(F.col("reason").isNotNull()).select("reason").limit(3).collect()]
            raise IngestError(f"every row of landing file(s) {rejected} for {day} was rejected (e.g. {reasons}); "
                              f"nothing was written: fix the files, or pass --allow-all-rejected to quarantine them")
        _commit(spark, settings, day, build_events(classified, day), build_events_quarantine(classified, validated, day),
                report)
    finally:
        classified.unpersist()
        validated.unpersist()
    return report


def _commit(spark: SparkSession, settings: Settings, day: date, events: DataFrame, quarantine: DataFrame,
            report: IngestReport) -> None:
    """Write the day's quarantine, then its events; if either fails, put both days back as they were."""
    before = {spec: table_version(settings, spec) for spec in (EVENTS_QUARANTINE, EVENTS)}
    try:
        quarantined = write_partition(quarantine, settings, EVENTS_QUARANTINE, day)
        if quarantined != report.quarantined:
            raise RuntimeError(f"events_quarantine commit wrote {quarantined} rows, expected {report.quarantined}")
        accepted = write_partition(events, settings, EVENTS, day)
        if accepted != report.accepted:
            raise RuntimeError(f"events commit wrote {accepted} rows, expected {report.accepted}")
    except BaseException:
        for spec, version in before.items():
            if table_version(settings, spec) != version:
                restore_partition(spark, settings, spec, day, version)
        raise


def main(argv: list[str] | None = None) -> None:
    from spark_jobs._cli import parse_job_args

    settings, day, args = parse_job_args(
        "Ingest one landing date (every source) into the events table.", argv,
        {"--source": {"action": "append", "default": None,
                      "help": "only this source (repeatable); the day must have no others"},
         "--path": {"default": None, "type": Path, "help": "explicit landing folder"},
         "--allow-all-rejected": {"action": "store_true",
                                  "help": "quarantine a file whose rows are all rejected instead of failing"}},
    )
    run(get_spark(settings), settings, day, args.source, args.path, args.allow_all_rejected)


if __name__ == "__main__":
    main()
