"""The landing contract: exact columns, text values, one folder per UTC date, atomic rewrites."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.data.landing import (FORMATS, LANDING_FIELDS, LandingError, event_ids, landing_dir, read_landing,
                                   write_landing)

DAY = date(2026, 1, 1)


def landing_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": ["e-1", "e-2", "e-3"],
        "event_time": pd.to_datetime(["2026-01-01T00:00:00", "2026-01-01T08:15:30.250",
                                      "2026-01-01T23:59:59.9996"], utc=True, format="ISO8601"),
        "user_id": [0, 7, 7],
        "item_id": [3, 4, 5],
        "position": [0, 1, np.nan],
        "scenario": ["feed", "random", "search"],
        "device": ["ios", None, "web"],
        "click": [1, 0, 0],
        "conversion": [1, 0, None],
        "dwell_seconds": [12.5, np.nan, np.nan],
        "user_age": [31, 31, None],
        "user_gender": ["F", "F", None],
        "user_segment": ["student", "student", None],
        "item_category": ["cat_001", None, 'with "quotes", commas'],
    })


EXPECTED_TEXT = {
    "event_id": ["e-1", "e-2", "e-3"],
    "event_time": ["2026-01-01T00:00:00.000Z", "2026-01-01T08:15:30.250Z", "2026-01-01T23:59:59.999Z"],
    "user_id": ["0", "7", "7"],
    "item_id": ["3", "4", "5"],
    "position": ["0", "1", None],
    "scenario": ["feed", "random", "search"],
    "device": ["ios", None, "web"],
    "click": ["1", "0", "0"],
    "conversion": ["1", "0", None],
    "dwell_seconds": ["12.5", None, None],
    "user_age": ["31", "31", None],
    "user_gender": ["F", "F", None],
    "user_segment": ["student", "student", None],
    "item_category": ["cat_001", None, 'with "quotes", commas'],
}


def as_text(frame: pd.DataFrame) -> dict[str, list[str | None]]:
    return {name: [None if pd.isna(v) else str(v) for v in frame[name]] for name in frame.columns}


def read_with_pandas(path: Path) -> pd.DataFrame:
    """What an outside reader that knows only the format gets back."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str)
    return pd.read_json(path, lines=True, dtype=False)


def test_landing_fields_are_the_contract() -> None:
    assert list(LANDING_FIELDS) == ["event_id", "event_time", "user_id", "item_id", "position", "scenario",
                                    "device", "click", "conversion", "dwell_seconds", "user_age", "user_gender",
                                    "user_segment", "item_category"]
    required = [name for name, spec in LANDING_FIELDS.items() if spec.required]
    assert required == ["event_id", "event_time", "user_id", "item_id", "scenario", "click"]


def test_landing_dir_is_source_then_date(tmp_path: Path) -> None:
    assert landing_dir(tmp_path, "synthetic", DAY) == tmp_path / "synthetic" / "date=2026-01-01"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_as_text(tmp_path: Path, fmt: str) -> None:
    files = write_landing(landing_frame(), tmp_path, "src", DAY, fmt)
    assert files == [tmp_path / "src" / "date=2026-01-01" / f"part-00000.{fmt}"]
    assert as_text(read_with_pandas(files[0])) == EXPECTED_TEXT
    assert as_text(read_landing(tmp_path, "src", DAY)) == EXPECTED_TEXT


def test_parquet_columns_are_all_strings(tmp_path: Path) -> None:
    [path] = write_landing(landing_frame(), tmp_path, "src", DAY, "parquet")
    schema = pq.read_schema(path)
    assert schema.names == list(LANDING_FIELDS)
    assert {str(t) for t in schema.types} == {"string"}


def test_csv_tells_null_from_empty_string(tmp_path: Path) -> None:
    frame = landing_frame().assign(device=["", None, "web"])
    [path] = write_landing(frame, tmp_path, "src", DAY, "csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith('"event_id","event_time"')
    assert ',"",' in lines[1] and ',"random",,' in lines[2]
    assert as_text(read_landing(tmp_path, "src", DAY))["device"] == ["", None, "web"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_rewriting_a_date_gives_identical_files_and_replaces_old_parts(tmp_path: Path, fmt: str) -> None:
    big = pd.concat([landing_frame()] * 3, ignore_index=True).assign(event_id=[f"e-{i}" for i in range(9)])
    first = write_landing(big, tmp_path, "src", DAY, fmt, rows_per_part=4)
    assert [p.name for p in first] == [f"part-0000{i}.{fmt}" for i in range(3)]
    contents = [p.read_bytes() for p in first]
    assert [p.read_bytes() for p in write_landing(big, tmp_path, "src", DAY, fmt, rows_per_part=4)] == contents

    write_landing(landing_frame(), tmp_path, "src", DAY, fmt)
    assert sorted(p.name for p in landing_dir(tmp_path, "src", DAY).iterdir()) == [f"part-00000.{fmt}"]
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["date=2026-01-01"]  # no staging left


def test_large_dates_are_split_into_parts_that_read_back_whole(tmp_path: Path) -> None:
    frame = pd.concat([landing_frame()] * 5, ignore_index=True).assign(event_id=[f"e-{i}" for i in range(15)])
    files = write_landing(frame, tmp_path, "src", DAY, "parquet", rows_per_part=4)
    assert len(files) == 4
    assert read_landing(tmp_path, "src", DAY)["event_id"].tolist() == [f"e-{i}" for i in range(15)]


def test_an_empty_date_is_refused(tmp_path: Path) -> None:
    """Ingestion refuses an empty landing file, so the writer never writes one."""
    with pytest.raises(LandingError, match="no records for 2026-01-01"):
        write_landing(landing_frame().iloc[:0], tmp_path, "src", DAY, "jsonl")
    assert not landing_dir(tmp_path, "src", DAY).exists()


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    required = [name for name, spec in LANDING_FIELDS.items() if spec.required]
    write_landing(landing_frame()[required], tmp_path, "src", DAY, "jsonl")
    back = read_landing(tmp_path, "src", DAY)
    assert list(back.columns) == list(LANDING_FIELDS)
    assert back["dwell_seconds"].isna().all()


def test_event_time_text_is_utc_iso_with_milliseconds(tmp_path: Path) -> None:
    frame = landing_frame().iloc[:1].assign(
        event_time=[pd.Timestamp("2026-01-01T09:15:30.250123", tz="Europe/Paris")])
    write_landing(frame, tmp_path, "src", DAY, "csv")
    assert read_landing(tmp_path, "src", DAY)["event_time"].tolist() == ["2026-01-01T08:15:30.250Z"]


def test_event_ids_join_integer_parts() -> None:
    assert event_ids("ml100k", np.array([196, 1]), np.array([242, 2]), np.array([881250949, 0])).tolist() == [
        "ml100k-196-242-881250949", "ml100k-1-2-0"]


@pytest.mark.parametrize(("change", "message"), [
    ({"event_time": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01"], utc=True)},
     "'event_time' must fall on 2026-01-01 (UTC); row 1"),
    ({"click": [1, 2, 0]}, "'click' must be 0 or 1; row 1 holds 2"),
    ({"item_id": [3, -4, 5]}, "'item_id' must be an integer in [0, 9223372036854775807]; row 1 holds -4"),
    ({"scenario": ["feed", "", "search"]}, "required field 'scenario' is null or empty; row 1"),
    ({"user_id": [0, None, 7]}, "required field 'user_id' is null or empty; row 1"),
    ({"dwell_seconds": [1.0, -0.5, None]}, "'dwell_seconds' must be a finite number in [0, 86400]; row 1"),
    ({"scenario": ["feed", "bogus", "search"]}, "'scenario' must be one of feed, search, random; row 1 holds 'bogus'"),
])
def test_contract_violations_name_field_and_row(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(LandingError, match=re.escape(message)):
        write_landing(landing_frame().assign(**change), tmp_path, "src", DAY, "parquet")
    assert not (tmp_path / "src" / "date=2026-01-01").exists()


def test_columns_outside_the_contract_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match=r"\['true_click_probability'\] are not landing fields"):
        write_landing(landing_frame().assign(true_click_probability=0.5), tmp_path, "src", DAY, "parquet")


def test_missing_required_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="required landing field 'click' is missing"):
        write_landing(landing_frame().drop(columns="click"), tmp_path, "src", DAY, "parquet")
