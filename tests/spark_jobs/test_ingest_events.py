"""Ingestion: the landing contract's rules into quarantine, duplicates, sources, honest counts, clear errors."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from deltalake import DeltaTable

from pipeline.data.contract import LANDING_FIELDS, REQUIRED_FIELDS
from pipeline.tables import EVENTS, EVENTS_QUARANTINE, read_arrow, table_path
from spark_jobs import ingest_events
from spark_jobs.ingest_events import IngestError
from tests.data.contract_cases import BOUNDARY_CASES
from tests.spark_jobs.events_factory import at, event, write_records

DAY = date(2026, 1, 5)


def _landing(settings, name: str = "t", day: date = DAY):
    return settings.lakehouse.landing / name / f"date={day}"


def _quarantine(settings) -> pd.DataFrame:
    return read_arrow(settings, EVENTS_QUARANTINE).to_pandas()


BAD_ROWS = {
    "missing user_id": event("b1", at(DAY), user_id=None),
    "event_time is not a full ISO-8601 timestamp": event("b2", at(DAY), event_time="yesterday-ish"),
    "click is not 0 or 1": event("b3", at(DAY), click=2),
    "user_id is not an integer in [0, 9223372036854775807]": event("b4", at(DAY), user_id="abc"),
    "event_time is outside the landing date": event("b5", at(date(2026, 1, 4))),
    "item_id is not an integer in [0,": event("b6", at(DAY), item_id=-3),
    "dwell_seconds is not a finite number in [0, 86400]": event("b7", at(DAY), dwell_seconds="-1.5"),
    "missing event_id": event("", at(DAY)),
}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_invalid_rows_are_quarantined_with_reasons_and_counts_reconcile(spark, settings, fmt):
    good = [event(f"g{i}", at(DAY, hour=i), user_id=i, item_id=100 + i, click=i % 2) for i in range(4)]
    good.append(event("g4", at(DAY, hour=4), user_id=4, item_id=104, user_segment='x,"y"'))
    duplicate = event("g0", at(DAY, hour=0), user_id=0, item_id=100)
    folder = _landing(settings)
    write_records(folder, good + [duplicate] + list(BAD_ROWS.values()), fmt)

    report = ingest_events.run(spark, settings, DAY)

    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (14, 5, 8, 1)
    assert report.reconciles()
    events = read_arrow(settings, EVENTS).to_pandas()
    assert sorted(events.event_id) == [f"g{i}" for i in range(5)]
    assert events.set_index("event_id").loc["g3", "click"] == 1
    assert events.set_index("event_id").loc["g4", "user_segment"] == 'x,"y"'  # quotes survive every format
    quarantine = _quarantine(settings)
    reasons = list(quarantine.reason)
    for expected in BAD_ROWS:
        assert sum(r.startswith(expected) for r in reasons) == 1, (expected, reasons)
    assert all(q.endswith(f"part-00000.{fmt}") for q in quarantine.source_file)
    assert "yesterday-ish" in quarantine.set_index("event_id").loc["b2", "raw"]


def test_a_clean_day_after_a_day_with_quarantined_rows_reconciles(spark, settings):
    """Finding 1: counts come from the rows written, not from the table's latest history entry."""
    first, second = DAY, date(2026, 1, 6)
    write_records(_landing(settings, day=first), [event("a1", at(first)), event("a2", at(first), click=7)])
    assert ingest_events.run(spark, settings, first).quarantined == 1
    write_records(_landing(settings, day=second), [event("b1", at(second)), event("b2", at(second, hour=3))])

    report = ingest_events.run(spark, settings, second)

    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (2, 2, 0, 0)
    assert sorted(read_arrow(settings, EVENTS).to_pandas().event_id) == ["a1", "b1", "b2"]


def _day_rows(settings) -> dict[str, list[str]]:
    return {"events": sorted(read_arrow(settings, EVENTS).to_pandas().event_id),
            "quarantine": sorted(_quarantine(settings).reason)}


def test_a_failed_events_commit_leaves_both_tables_as_they_were(spark, settings, monkeypatch):
    """Finding 1: events and quarantine of a day are both put back when a commit fails."""
    write_records(_landing(settings), [event("old", at(DAY)), event("oldbad", at(DAY), click=9)])
    ingest_events.run(spark, settings, DAY)
    before = _day_rows(settings)
    write_records(_landing(settings), [event("new", at(DAY)), event("newbad", at(DAY), user_id="x")])
    real_write = ingest_events.write_partition

    def events_commit_fails(df, settings_, spec, day):
        if spec is EVENTS:
            raise OSError("disk full while committing events")
        return real_write(df, settings_, spec, day)

    monkeypatch.setattr(ingest_events, "write_partition", events_commit_fails)
    with pytest.raises(OSError, match="disk full"):
        ingest_events.run(spark, settings, DAY)

    assert _day_rows(settings) == before


def test_malformed_json_lines_arrays_and_duplicate_keys_are_quarantined(spark, settings):
    folder = _landing(settings)
    path = write_records(folder, [event("g1", at(DAY))])
    row = event("g2", at(DAY, hour=2))
    with path.open("a") as handle:
        handle.write("{this is not json\n")
        handle.write(json.dumps([event("arr1", at(DAY)), event("arr2", at(DAY))]) + "\n")
        handle.write(json.dumps(row)[:-1] + ', "click": "1"}\n')  # click twice
        handle.write(json.dumps({**event("extra", at(DAY)), "ground_truth": "0.3"}) + "\n")
    report = ingest_events.run(spark, settings, DAY)
    assert (report.accepted, report.quarantined) == (1, 4)
    quarantine = _quarantine(settings).set_index("raw")
    assert quarantine.loc["{this is not json", "reason"] == "malformed record"
    assert sorted(quarantine.reason) == ["malformed record", "malformed record",
                                         "malformed record: a key appears twice", "unexpected fields: ground_truth"]


TOO_LONG = "x" * 1_000_000

STRICT_ROWS = {
    "dwell_seconds is not a finite number": [event("s1", at(DAY), dwell_seconds="NaN"),
                                             event("s2", at(DAY), dwell_seconds="Infinity"),
                                             event("s3", at(DAY), dwell_seconds="1e309")],
    "event_id is not text of at most 128 characters": [event(TOO_LONG, at(DAY)), event("s\x00nul", at(DAY))],
    "scenario is not one of feed, search, random": [event("s4", at(DAY), scenario=TOO_LONG),
                                                    event("s5", at(DAY), scenario="bogus")],
    "event_time is not a full ISO-8601 timestamp": [event("s6", at(DAY), event_time=DAY.isoformat())],
    "user_age is not an integer in [0, 130]": [event("s7", at(DAY), user_age="131")],
    "position is not an integer in [0, 10000]": [event("s8", at(DAY), position="10001")],
    "user_id is not an integer in [0, 9223372036854775807]": [event("s9", at(DAY), user_id=str(2**63))],
}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_strict_rows_quarantine_each_bad_value(spark, settings, fmt):
    """Finding 5: non-finite numbers, oversized or control-character text, unknown enums, date-only times."""
    good = [event("g1", at(DAY), user_age="130", position="10000", dwell_seconds="86400", user_id=str(2**63 - 1))]
    write_records(_landing(settings), good + [r for rows in STRICT_ROWS.values() for r in rows], fmt)
    report = ingest_events.run(spark, settings, DAY)
    assert (report.accepted, report.quarantined) == (1, sum(map(len, STRICT_ROWS.values())))
    reasons = list(_quarantine(settings).reason)
    for expected, rows in STRICT_ROWS.items():
        assert sum(r.startswith(expected) for r in reasons) == len(rows), (expected, reasons)
    assert max(map(len, reasons)) < 300  # a 1 MB value is cut in the reason
    assert read_arrow(settings, EVENTS).to_pandas().user_id.tolist() == [2**63 - 1]


def test_a_multi_line_quoted_csv_field_is_one_row(spark, settings):
    write_records(_landing(settings), [event("m1", at(DAY), item_category="first line\nsecond, \"line\""),
                                       event("m2", at(DAY, hour=1))], "csv")
    report = ingest_events.run(spark, settings, DAY)
    assert (report.read, report.accepted, report.quarantined) == (2, 2, 0)
    events = read_arrow(settings, EVENTS).to_pandas().set_index("event_id")
    assert events.loc["m1", "item_category"] == "first line\nsecond, \"line\""


def test_conflicting_duplicates_go_to_quarantine_with_every_version(spark, settings):
    """Finding 4: same event_id, other content: nothing is chosen silently."""
    original, other = event("d1", at(DAY), click=0), event("d1", at(DAY), click=1)
    same = event("d2", at(DAY))
    write_records(_landing(settings), [original, other, same, dict(same)], "jsonl")
    report = ingest_events.run(spark, settings, DAY)
    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (4, 1, 2, 1)
    assert read_arrow(settings, EVENTS).to_pandas().event_id.tolist() == ["d2"]
    quarantine = _quarantine(settings)
    assert set(quarantine.reason) == {"conflicting duplicate: event_id 'd1' has 2 different versions"}
    assert sorted(json.loads(raw)["click"] for raw in quarantine.raw) == ["0", "1"]


def test_a_days_events_are_the_union_of_its_sources(spark, settings):
    """Finding 11: a second source never wipes the first; --source alone may not drop the others."""
    write_records(_landing(settings, "web"), [event("w1", at(DAY)), event("both", at(DAY, hour=3))], "jsonl")
    write_records(_landing(settings, "app"), [event("a1", at(DAY)), event("both", at(DAY, hour=3))], "parquet")
    report = ingest_events.run(spark, settings, DAY)
    assert (report.read, report.accepted, report.duplicates) == (4, 3, 1)
    assert sorted(read_arrow(settings, EVENTS).to_pandas().event_id) == ["a1", "both", "w1"]
    with pytest.raises(IngestError, match=r"also has landing data from source\(s\) \['app'\]"):
        ingest_events.run(spark, settings, DAY, sources=["web"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_optional_columns_are_optional_in_every_format(spark, settings, fmt):
    """Finding 13: a file with only the required columns is ingested, optional fields null."""
    write_records(_landing(settings), [event("r1", at(DAY), click=1)], fmt, columns=list(REQUIRED_FIELDS))
    assert ingest_events.run(spark, settings, DAY).accepted == 1
    row = read_arrow(settings, EVENTS).to_pylist()[0]
    assert (row["click"], row["user_age"], row["dwell_seconds"]) == (1, None, None)


def _versions(settings):
    return {spec.name: DeltaTable(table_path(settings, spec)).version() for spec in (EVENTS, EVENTS_QUARANTINE)}


def test_bad_landing_files_fail_before_anything_is_written(spark, settings, tmp_path):
    """Finding 2: wrong types, header-only and empty files, all-rejected files leave the day untouched."""
    write_records(_landing(settings), [event("g1", at(DAY)), event("g2", at(DAY, hour=1))])
    ingest_events.run(spark, settings, DAY)
    before = _versions(settings)

    def fails(files: dict[str, object], fmt: str, message: str, **kwargs) -> None:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, content in files.items():
            if isinstance(content, pd.DataFrame):
                content.to_parquet(folder / name, index=False)
            else:
                (folder / name).write_text(str(content))
        with pytest.raises((IngestError, FileNotFoundError), match=message):
            ingest_events.run(spark, settings, DAY, path=folder, **kwargs)

    typed = pd.DataFrame([event("t1", at(DAY))]).astype({"user_id": "int64"}).assign(click=True)
    fails({"part-0.parquet": typed}, "parquet", r"user_id is int64, click is bool; the landing contract stores")
    header = ",".join(f'"{n}"' for n in LANDING_FIELDS)
    fails({"part-0.csv": header + "\n"}, "csv", "holds a header and no rows")
    fails({"part-0.csv": ""}, "csv", "is empty")
    fails({"part-0.jsonl": "\n"}, "jsonl", "is empty")
    fails({"part-0.xml": "<events/>"}, "xml", r"unsupported or mixed file formats \['xml'\]")
    wrong = event("g2", at(DAY))
    wrong["clicked"] = wrong.pop("click")
    fails({"part-0.jsonl": json.dumps(wrong) + "\n"}, "jsonl", r"every row of landing file\(s\) .* was rejected")
    fails({"part-0.csv": pd.DataFrame([wrong]).to_csv(index=False)}, "csv",
          r"missing required columns \['click'\], unexpected columns \['clicked'\]")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest_events.run(spark, settings, DAY, path=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no landing files for 2030-01-01"):
        ingest_events.run(spark, settings, date(2030, 1, 1))

    assert _versions(settings) == before
    assert read_arrow(settings, EVENTS).num_rows == 2


def test_an_all_rejected_file_is_quarantined_only_when_allowed(spark, settings):
    write_records(_landing(settings), [event("x1", at(DAY), click=3), event("x2", at(DAY), scenario="none")])
    with pytest.raises(IngestError, match="pass --allow-all-rejected"):
        ingest_events.run(spark, settings, DAY)
    assert not (settings.lakehouse.tables / "events").exists()
    report = ingest_events.run(spark, settings, DAY, allow_all_rejected=True)
    assert (report.accepted, report.quarantined) == (0, 2)
    assert read_arrow(settings, EVENTS).num_rows == 0 and len(_quarantine(settings)) == 2


def test_ingestion_accepts_exactly_what_the_contract_allows(spark, settings):
    """The same boundary values the writer is tested on (tests/data/contract_cases.py): one rule, two sides."""
    ids = [case.text if case.field == "event_id" else f"c{i}" for i, case in enumerate(BOUNDARY_CASES)]
    rows = [event(ids[i], at(DAY, minute=i % 60), **({} if case.field == "event_id" else {case.field: case.text}))
            for i, case in enumerate(BOUNDARY_CASES)]
    write_records(_landing(settings), rows)
    ingest_events.run(spark, settings, DAY)
    accepted = set(read_arrow(settings, EVENTS).to_pandas().event_id)
    reasons = dict(zip(_quarantine(settings).event_id, _quarantine(settings).reason))
    for event_id, case in zip(ids, BOUNDARY_CASES):
        assert (event_id in accepted) == case.ok, (case, reasons.get(event_id))
        if not case.ok:
            assert reasons[event_id].startswith(f"{case.field} is not "), (case, reasons[event_id])
