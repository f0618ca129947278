"""Every lakehouse table: its name, schema, partitioning, and the one way to read and write it.

Nothing else in recdistill knows a table path. Spark jobs write through `write_partition`
(idempotent by date: it replaces exactly one date partition); Python readers use delta-rs
through `read_arrow` so training never needs a JVM.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_ds
import pyarrow.fs as pa_fs

from pipeline.config import Settings
from pipeline.data.contract import events_columns_ddl
from pipeline.slots import FEATURE_WINDOWS_DAYS, SPARSE_SLOTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A Delta table partitioned by `date`, with a DDL schema Spark enforces on every write."""

    name: str
    ddl: str
    key: tuple[str, ...]
    doc: str

    @property
    def columns(self) -> list[str]:
        return [part.strip().split(" ", 1)[0] for part in _split_ddl(self.ddl)]


def _split_ddl(ddl: str) -> list[str]:
    """Split a DDL column list on top-level commas (types like ARRAY<STRUCT<a, b>> nest commas)."""
    parts, depth, current = [], 0, []
    for char in ddl:
        depth += char == "<"
        depth -= char == ">"
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


EVENTS = TableSpec(
    name="events",
    # The landing contract's fields, typed, plus where each row came from.
    ddl=f"{events_columns_ddl()}, source_file STRING, date DATE",
    key=("event_id",),
    doc="Validated impression events, one row per event_id, partitioned by the event's UTC date.",
)

EVENTS_QUARANTINE = TableSpec(
    name="events_quarantine",
    ddl="event_id STRING, reason STRING, raw STRING, source_file STRING, date DATE",
    key=("source_file", "raw"),
    doc="Landing rows rejected by ingestion, with the reason and the source file; date = landing date.",
)

USER_FEATURES = TableSpec(
    name="user_features",
    ddl="user_id BIGINT, " + "".join(
        f"impressions_{w}d BIGINT, clicks_{w}d BIGINT, ctr_{w}d DOUBLE, " for w in FEATURE_WINDOWS_DAYS
    ) + "date DATE",
    key=("user_id",),
    doc="Per-user counts and smoothed CTRs from events strictly before `date` (point-in-time).",
)

ITEM_FEATURES = TableSpec(
    name="item_features",
    ddl=USER_FEATURES.ddl.replace("user_id", "item_id"),
    key=("item_id",),
    doc="Per-item counts and smoothed CTRs from events strictly before `date` (point-in-time).",
)

SEQUENCES = TableSpec(
    name="sequences",
    ddl=(
        "event_id STRING, user_id BIGINT, history_items ARRAY<BIGINT>, history_categories ARRAY<STRING>, "
        "history_actions ARRAY<INT>, "
        "history_gaps ARRAY<BIGINT>, date DATE"
    ),
    key=("event_id",),
    doc=(
        "For each event of `date`, the user's last L_teacher interactions strictly before its "
        "event_time, most recent first: raw item ids, their categories, action codes, gaps in seconds."
    ),
)

TRAINING_SAMPLES = TableSpec(
    name="training_samples",
    ddl=(
        "sample_id BIGINT, event_id STRING, event_time TIMESTAMP, user_id BIGINT, item_id BIGINT, "
        "scenario STRING, position INT, click INT, conversion INT, "
        + "".join(f"{slot.column} BIGINT, " for slot in SPARSE_SLOTS)
        + "user_dense ARRAY<FLOAT>, item_dense ARRAY<FLOAT>, "
        "seq_teacher_items ARRAY<BIGINT>, seq_teacher_categories ARRAY<BIGINT>, seq_teacher_actions ARRAY<INT>, "
        "seq_teacher_gaps ARRAY<BIGINT>, "
        "seq_student_items ARRAY<BIGINT>, seq_student_categories ARRAY<BIGINT>, seq_student_actions ARRAY<INT>, "
        "seq_student_gaps ARRAY<BIGINT>, "
        "date DATE"
    ),
    key=("sample_id",),
    doc="Model-ready samples: labels, hashed sparse slots, dense features, both sequences.",
)

TEACHER_LOGITS = TableSpec(
    name="teacher_logits",
    ddl=("sample_id BIGINT, teacher_version STRING, pair_kind STRING, logit_click FLOAT, logit_conversion FLOAT, "
         "written_at TIMESTAMP, date DATE"),
    key=("sample_id", "teacher_version"),
    doc=("Teacher logits per sample (at the neutral position), one set per teacher version; written by torch. "
         "pair_kind: `labelled` (a sample of training_samples) or `unexposed` (an item the user was not shown, "
         "`pipeline.train.unexposed`; sample_id is the pair's id)."),
)

STREAM_SAMPLES = TableSpec(
    name="stream_samples",
    ddl="sample_id BIGINT, batch_id BIGINT, date DATE",
    key=("sample_id",),
    doc=("Which streaming micro-batch first produced each streamed sample (the rows live in "
         "training_samples): what the incremental teacher logits and student update consume."),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (EVENTS, EVENTS_QUARANTINE, USER_FEATURES, ITEM_FEATURES, SEQUENCES, TRAINING_SAMPLES,
                 TEACHER_LOGITS, STREAM_SAMPLES)
}


def table_path(settings: Settings, spec: TableSpec) -> str:
    """The table's location under the lakehouse root."""
    return str((settings.lakehouse.tables / spec.name).resolve())


def table_exists(settings: Settings, spec: TableSpec) -> bool:
    return (Path(table_path(settings, spec)) / "_delta_log").is_dir()


def _check_schema(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select the spec's columns in order, or fail naming the missing/extra columns."""
    from pyspark.sql.types import StructType

    expected = StructType.fromDDL(spec.ddl)
    missing = [f.name for f in expected.fields if f.name not in df.columns]
    extra = [c for c in df.columns if c not in spec.columns]
    if missing or extra:
        raise ValueError(f"table {spec.name}: frame does not match its schema "
                         f"(missing columns {missing}, unexpected columns {extra})")
    ordered = df.select(*spec.columns)
    actual = {f.name: f.dataType for f in ordered.schema.fields}
    wrong = [f"{f.name}: got {actual[f.name].simpleString()}, expected {f.dataType.simpleString()}"
             for f in expected.fields if actual[f.name].simpleString() != f.dataType.simpleString()]
    if wrong:
        raise ValueError(f"table {spec.name}: wrong column types: {'; '.join(wrong)}")
    return ordered


def write_partition(df: DataFrame, settings: Settings, spec: TableSpec, day: date) -> int:
    """Replace exactly the `day` partition of `spec` with `df` — the idempotent write every job uses."""
    return write_date_range(df, settings, spec, day, day)


def write_date_range(df: DataFrame, settings: Settings, spec: TableSpec, first: date, last: date) -> int:
    """Replace exactly the partitions of the dates in [first, last] with `df`, in one commit.

    Delta's replaceWhere makes it one atomic commit and rejects rows of any other date, so a rerun
    for the same dates yields the same rows and a failed job leaves the previous version in place.
    Returns the rows written, read from the commit's metrics (no second pass over the data).
    """
    frame = _check_schema(df, spec)
    path = table_path(settings, spec)
    before = table_version(settings, spec)
    # The commit is found by this token, never as "the latest entry": another writer may have committed since.
    token = f"recdistill-{uuid.uuid4().hex}"
    (
        frame.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"date >= DATE'{first.isoformat()}' AND date <= DATE'{last.isoformat()}'")
        .option("userMetadata", token)
        .partitionBy("date")
        .save(path)
    )
    rows = _committed_rows(path, before, token)
    log.info("wrote %s dates=%s..%s rows=%d", spec.name, first, last, rows)
    return rows


def _committed_rows(path: str, before: int | None, token: str) -> int:
    """Rows written by the commit tagged `token` after version `before`; 0 if the write made no commit."""
    from deltalake import DeltaTable

    table = DeltaTable(path)
    since = table.version() - (-1 if before is None else before)
    for commit in table.history(since):
        if commit.get("userMetadata") == token:
            return int(commit.get("operationMetrics", {}).get("numOutputRows", 0))
    return 0  # Delta skips the commit of a write that neither adds nor removes a file


def table_version(settings: Settings, spec: TableSpec) -> int | None:
    """The table's current version, or None if it does not exist yet."""
    from deltalake import DeltaTable

    return DeltaTable(table_path(settings, spec)).version() if table_exists(settings, spec) else None


def restore_partition(spark: SparkSession, settings: Settings, spec: TableSpec, day: date,
                      version: int | None) -> None:
    """Put the rows of `day` back as they were at `version` (none if the table did not exist then).

    Only that date is rewritten (a table-wide RESTORE would also undo other dates' concurrent writes).
    """
    from pyspark.sql.types import StructType

    if version is None:
        rows = spark.createDataFrame([], StructType.fromDDL(spec.ddl))
    else:
        rows = (spark.read.format("delta").option("versionAsOf", version).load(table_path(settings, spec))
                .where(f"date = DATE'{day.isoformat()}'"))
    write_partition(rows, settings, spec, day)
    log.warning("restored %s rows of %s as of version %s", spec.name, day, version)


def insert_missing(df: DataFrame, settings: Settings, spec: TableSpec, days: Iterable[date]) -> None:
    """Insert the rows of `df` (all dated within `days`) whose key `spec` does not hold yet.

    A MERGE that only inserts unmatched keys: writing the same rows twice changes nothing, and rows
    a replaceWhere job already wrote for a date are kept, so a streaming writer never duplicates them.
    """
    from delta.tables import DeltaTable
    from pyspark.sql.types import StructType

    frame = _check_schema(df, spec)
    spark = frame.sparkSession
    path = table_path(settings, spec)
    (DeltaTable.createIfNotExists(spark).location(path).addColumns(StructType.fromDDL(spec.ddl))
     .partitionedBy("date").execute())
    dates = ", ".join(f"DATE'{d.isoformat()}'" for d in days)
    keys = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    # The literal dates let Delta prune the target to the partitions the batch can touch.
    condition = f"t.date IN ({dates}) AND t.date = s.date AND {keys}"
    DeltaTable.forPath(spark, path).alias("t").merge(frame.alias("s"), condition).whenNotMatchedInsertAll().execute()
    log.info("merged new %s rows of dates %s", spec.name, dates)


def write_partition_arrow(table: pa.Table, settings: Settings, spec: TableSpec, day: date,
                          where: dict[str, str] | None = None) -> None:
    """The delta-rs twin of `write_partition` for tables written from Python (no JVM).

    Replaces the rows of `day` (and, with `where`, only those whose columns equal the given
    values, e.g. one teacher version) in one atomic commit; rows of other dates are refused.
    """
    from deltalake import write_deltalake

    expected = spec.columns
    if table.column_names != expected:
        raise ValueError(f"table {spec.name}: arrow table columns {table.column_names} != schema {expected}")
    dates = pc.unique(table.column("date")).to_pylist()
    if any(d != day for d in dates):
        raise ValueError(f"table {spec.name}: rows of dates {sorted(set(dates) - {day})} in a write for {day}")
    predicate = " AND ".join([f"date = '{day.isoformat()}'"] + [f"{k} = '{v}'" for k, v in (where or {}).items()])
    write_deltalake(table_path(settings, spec), table, mode="overwrite", predicate=predicate,
                    partition_by=["date"])
    log.info("wrote %s where %s", spec.name, predicate)


def insert_missing_arrow(table: pa.Table, settings: Settings, spec: TableSpec) -> None:
    """The delta-rs twin of `insert_missing`: insert only the rows whose (key, date) `spec` lacks."""
    from deltalake import DeltaTable, write_deltalake

    if table.column_names != spec.columns:
        raise ValueError(f"table {spec.name}: arrow table columns {table.column_names} != schema {spec.columns}")
    if not table_exists(settings, spec):
        write_deltalake(table_path(settings, spec), table, mode="append", partition_by=["date"])
        return
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in (*spec.key, "date"))
    (DeltaTable(table_path(settings, spec)).merge(table, predicate, source_alias="s", target_alias="t")
     .when_not_matched_insert_all().execute())
    log.info("merged %d candidate rows into %s", table.num_rows, spec.name)


def read_table(spark: SparkSession, settings: Settings, spec: TableSpec,
               start: date | None = None, end: date | None = None) -> DataFrame:
    """A Spark view of `spec`, optionally limited to dates in [start, end] (partition-pruned)."""
    if not table_exists(settings, spec):
        raise FileNotFoundError(f"table {spec.name} does not exist at {table_path(settings, spec)}; "
                                f"run the job that writes it first")
    df = spark.read.format("delta").load(table_path(settings, spec))
    if start is not None:
        df = df.where(df.date >= start)
    if end is not None:
        df = df.where(df.date <= end)
    return df


def arrow_dataset(settings: Settings, spec: TableSpec, days: Iterable[date] | None = None) -> pa_ds.Dataset:
    """The current version of `spec` as a pyarrow dataset (delta-rs, no JVM), pruned to `days` if given.

    Local tables are read through Arrow's own file system: delta-rs' default, a Python file-system
    handler that Arrow's I/O threads call, made about one process in fifteen abort at interpreter exit
    ("terminate called without an active exception", exit 134) on this machine.
    """
    from deltalake import DeltaTable

    path = table_path(settings, spec)
    local = "://" not in path
    filesystem = pa_fs.SubTreeFileSystem(path, pa_fs.LocalFileSystem()) if local else None
    pruning = None if days is None else [("date", "in", [d.isoformat() for d in days])]
    return DeltaTable(path).to_pyarrow_dataset(file_pruning_predicate=pruning, filesystem=filesystem)


def read_arrow(settings: Settings, spec: TableSpec, days: Iterable[date] | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """Read `spec` with delta-rs (no JVM), optionally only some dates and columns."""
    return arrow_dataset(settings, spec, days).to_table(columns=columns)


def dates_present(settings: Settings, spec: TableSpec, days: Iterable[date], **equal: str) -> set[date]:
    """Which of `days` have rows in `spec` (rows whose columns equal `equal`, if given): a readiness check."""
    days = list(days)
    if not table_exists(settings, spec):
        return set()
    table = read_arrow(settings, spec, days, columns=["date", *equal])
    for column, value in equal.items():
        table = table.filter(pc.equal(table.column(column), value))
    return set(pc.unique(table.column("date")).to_pylist())


def partition_dates(settings: Settings, spec: TableSpec) -> list[date]:
    """Every date `spec` holds, ascending, from the Delta log alone (no data file is read)."""
    from deltalake import DeltaTable

    if not table_exists(settings, spec):
        return []
    return sorted({date.fromisoformat(p["date"]) for p in DeltaTable(table_path(settings, spec)).partitions()})


def content_hash(table: pa.Table, key: Iterable[str]) -> str:
    """Order-independent digest of a table's rows: equal digests mean equal content.

    Rows are ordered by `key`, then by every other column of a plain type, so rows that share a key
    (a daily table's id on several dates) cannot come out in the order the files happened to hold them.
    """
    key = list(key)
    plain = [c for c, t in zip(table.column_names, table.schema.types)
             if c not in key and not pa.types.is_nested(t)]
    ordered = table.sort_by([(c, "ascending") for c in key + plain])
    digest = hashlib.sha256()
    for column in ordered.columns:
        digest.update(str(column.to_pylist()).encode())
    return digest.hexdigest()


def table_counts(settings: Settings) -> dict[str, int]:
    """Row count of every existing table (for summaries), read with delta-rs."""
    counts = {}
    for spec in TABLES.values():
        if table_exists(settings, spec):
            counts[spec.name] = arrow_dataset(settings, spec).count_rows()
    return counts


# Delta's own default (`delta.deletedFileRetentionDuration`): readers of week-old versions keep working.
DEFAULT_RETENTION_HOURS = 168


def vacuum(settings: Settings, retention_hours: int = DEFAULT_RETENTION_HOURS,
           dry_run: bool = False) -> dict[str, list[str]]:
    """Delete, with Delta's VACUUM (delta-rs, full mode), every table's files that no version still
    references and that are older than `retention_hours`: files replaced by later commits and files
    that killed writes left behind. Returns the files removed (or, with `dry_run`, that would be) per table.
    """
    from deltalake import DeltaTable

    if retention_hours < 0:
        raise ValueError(f"retention must be ≥ 0 hours, got {retention_hours}")
    removed = {}
    for spec in TABLES.values():
        if table_exists(settings, spec):
            # The retention is the caller's decision: Delta's own check would refuse anything under a week.
            removed[spec.name] = DeltaTable(table_path(settings, spec)).vacuum(
                retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True)
            log.info("vacuum %s: %d files%s", spec.name, len(removed[spec.name]), " (dry run)" if dry_run else "")
    return removed
