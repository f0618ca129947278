"""The one writer (and test reader) of landing files, checked against the landing contract.

Landing files are what every source (the synthetic generator, public-data converters, a real
logging system) hands to ingestion. They hold exactly the columns of `LANDING_FIELDS`
(`pipeline/data/contract.py`), every value as text — ingestion reads all fields as strings and validates them itself, so one reader serves
every format. A missing optional value is null (jsonl, parquet) or an unquoted empty field (csv,
where strings are always quoted, so `""` stays an empty string).

Layout: ``<landing_root>/<source>/date=YYYY-MM-DD/part-NNNNN.<jsonl|csv|parquet>``, one UTC date
per folder, every record's `event_time` on that date.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from pipeline.data.contract import CONTROL_CHARACTERS, LANDING_FIELDS, LandingField

LandingFormat = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[LandingFormat, ...] = ("jsonl", "csv", "parquet")
ROWS_PER_PART = 1_000_000


LANDING_SCHEMA = pa.schema([(name, pa.string()) for name in LANDING_FIELDS])


class LandingError(ValueError):
    """A frame that breaks the landing contract; the message names the field and row."""


@dataclass
class LandingSummary:
    """What one generate or convert run wrote."""

    source: str
    days: list[date] = field(default_factory=list)
    events: int = 0
    clicks: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def landing_dir(landing_root: Path | str, source: str, day: date) -> Path:
    """The folder holding one source's landing files for one UTC date."""
    return Path(landing_root) / source / f"date={day.isoformat()}"


def landing_sources(landing_root: Path | str) -> list[str]:
    """The source folders under the landing root that hold at least one date folder."""
    root = Path(landing_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("date=*")))


def landing_days(landing_root: Path | str, source: str) -> list[date]:
    """The dates one source has landing files for, ascending."""
    folder = Path(landing_root) / source
    return sorted(date.fromisoformat(p.name.removeprefix("date=")) for p in folder.glob("date=*")
                  if p.is_dir() and any(p.glob("part-*")))


def event_ids(prefix: str, *parts: pd.Series | np.ndarray) -> pd.Series:
    """Stable event ids `<prefix>-<part>-<part>…` from integer columns, built without a Python loop."""
    text = [pc.cast(pa.array(np.asarray(part)), pa.string()) for part in parts]
    return pd.Series(pc.binary_join_element_wise(prefix, *text, "-").to_pandas(), dtype="str")


def write_landing(
    frame: pd.DataFrame,
    landing_root: Path | str,
    source: str,
    day: date,
    fmt: LandingFormat,
    rows_per_part: int = ROWS_PER_PART,
) -> list[Path]:
    """Validate `frame` against the contract and replace the date's landing files with it.

    Optional columns may be absent (written as null); any other column is an error so that nothing
    (e.g. ground truth) leaks into landing data. The same frame always gives byte-identical files.
    """
    if frame.empty:
        raise LandingError(f"no records for {day}: ingestion refuses an empty landing file")
    table = _landing_table(frame, day)
    return write_landing_files(table, landing_dir(landing_root, source, day), fmt, rows_per_part)


def _landing_table(frame: pd.DataFrame, day: date) -> pa.Table:
    """`frame` checked against `LANDING_FIELDS` and rendered as the all-text landing table."""
    extra = [name for name in frame.columns if name not in LANDING_FIELDS]
    if extra:
        raise LandingError(f"columns {extra} are not landing fields; expected a subset of {list(LANDING_FIELDS)}")
    columns = []
    for name, spec in LANDING_FIELDS.items():
        if name not in frame.columns:
            if spec.required:
                raise LandingError(f"required landing field {name!r} is missing")
            columns.append(pa.nulls(len(frame), pa.string()))
            continue
        text = _render(frame[name], name, spec, day)
        if spec.required:
            missing = pc.or_kleene(pc.is_null(text), pc.equal(text, "")).fill_null(True)
            _raise_at_first(missing, frame[name], f"required field {name!r} is null or empty")
        columns.append(text)
    return pa.Table.from_arrays(columns, schema=LANDING_SCHEMA)


def write_landing_files(table: pa.Table, target: Path, fmt: LandingFormat,
                        rows_per_part: int = ROWS_PER_PART) -> list[Path]:
    """Write `table` as part files of one folder, swapping the folder in whole.

    Parts are written to a hidden sibling (Spark skips names starting with '.') that then replaces
    the folder by rename, so a reader never sees a half-written date — at worst, for the instant
    between two renames, no folder.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown landing format {fmt!r}; expected one of {FORMATS}")
    if rows_per_part < 1:
        raise ValueError(f"rows_per_part must be ≥ 1, got {rows_per_part}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        n_parts = max(1, -(-table.num_rows // rows_per_part))
        names = [f"part-{i:05d}.{fmt}" for i in range(n_parts)]
        for i, name in enumerate(names):
            _write_file(table.slice(i * rows_per_part, rows_per_part), staging / name, fmt)
        retired = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name in names]


def read_landing(landing_root: Path | str, source: str, day: date) -> pd.DataFrame:
    """One date's landing records, every column text and nulls missing — the way ingestion sees them."""
    folder = landing_dir(landing_root, source, day)
    parts = sorted(folder.glob("part-*"))
    if not parts:
        raise FileNotFoundError(f"no landing files in {folder}")
    tables = [_read_file(path) for path in parts]
    return pa.concat_tables(tables).to_pandas()


def _render(series: pd.Series, name: str, spec: LandingField, day: date) -> pa.Array:
    """One column as landing text, after checking its values fit the contract's `spec`."""
    if spec.kind == "timestamp":
        return _render_time(series, name, day)
    must = f"field {name!r} must be {spec.expected}"
    if spec.kind == "text":
        text = pc.cast(pa.array(series, from_pandas=True), pa.string())
        bad = (pc.invert(pc.is_in(text, pa.array(spec.allowed))) if spec.allowed else
               pc.or_(pc.greater(pc.utf8_length(text), spec.max_length),
                      pc.match_substring_regex(text, CONTROL_CHARACTERS)))
        blank = pc.equal(pc.utf8_trim_whitespace(text), "")  # missing, as in ingestion: the required check's
        _raise_at_first(pc.and_(bad, pc.invert(blank)), series, must)
        return text
    try:
        values = pc.cast(pa.array(series, from_pandas=True), pa.float64() if spec.kind == "float" else pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError) as err:
        raise LandingError(f"{must}: {err}") from err
    bad = pc.or_(pc.less(values, spec.low), pc.greater(values, spec.high))
    if spec.kind == "float":
        bad = pc.or_(bad, pc.invert(pc.is_finite(values)))
    _raise_at_first(bad, series, must)
    return pc.cast(values, pa.string())


def _render_time(series: pd.Series, name: str, day: date) -> pa.Array:
    try:
        stamps = pd.to_datetime(series, utc=True, format="ISO8601")
    except (TypeError, ValueError) as err:
        raise LandingError(f"field {name!r} must hold UTC timestamps: {err}") from err
    _raise_at_first(pa.array(stamps.isna()), series, f"required field {name!r} is null")
    start = pd.Timestamp(datetime.combine(day, time(), tzinfo=timezone.utc))
    outside = (stamps < start) | (stamps >= start + pd.Timedelta(days=1))
    _raise_at_first(pa.array(outside), stamps, f"field {name!r} must fall on {day.isoformat()} (UTC)")
    # Millisecond precision is the contract: finer digits are truncated. Every row is on `day`, so
    # the text is the date plus the time of day, built with vectorised integer arithmetic.
    millis = ((stamps - start) // pd.Timedelta(milliseconds=1)).to_numpy(np.int64)
    clock = [pc.utf8_lpad(pc.cast(pa.array(part), pa.string()), width, "0") for part, width in (
        (millis // 3_600_000, 2), (millis // 60_000 % 60, 2), (millis // 1000 % 60, 2), (millis % 1000, 3))]
    return pc.binary_join_element_wise(f"{day.isoformat()}T", clock[0], ":", clock[1], ":", clock[2], ".",
                                       clock[3], "Z", "")


def _raise_at_first(bad: pa.Array, values: pd.Series, message: str) -> None:
    """Name the first row (by frame index) where `bad` holds, and its value."""
    positions = np.flatnonzero(bad.fill_null(False).to_numpy(zero_copy_only=False))
    if len(positions):
        row = positions[0]
        value = values.iloc[row]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise LandingError(f"{message}; row {values.index[row]!r} holds {shown} ({len(positions)} bad rows in all)")


def _write_file(table: pa.Table, path: Path, fmt: LandingFormat) -> None:
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    elif fmt == "csv":
        pa_csv.write_csv(table, path)
    else:
        table.to_pandas().to_json(path, orient="records", lines=True)


def _read_file(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path, schema=LANDING_SCHEMA)
    if path.suffix == ".csv":
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            column_types=LANDING_SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False))
    if path.stat().st_size == 0:
        return LANDING_SCHEMA.empty_table()
    return pa_json.read_json(path, parse_options=pa_json.ParseOptions(explicit_schema=LANDING_SCHEMA))
