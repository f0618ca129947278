"""Ingestion: validation into quarantine with reasons, de-duplication, reconciliation, clear errors."""

from __future__ import annotations

from datetime import date

import pytest
from deltalake import DeltaTable

from pipeline.tables import EVENTS, EVENTS_QUARANTINE, read_arrow, table_path
from spark_jobs import ingest_events
from tests.spark_jobs.events_factory import at, event, write_records

DAY = date(2026, 1, 5)


def _landing(settings, name: str = "t"):
    return settings.lakehouse.landing / name / f"date={DAY}"


BAD_ROWS = {
    "missing user_id": event("b1", at(DAY), user_id=None),
    "event_time is not a timestamp": event("b2", at(DAY), event_time="yesterday-ish"),
    "click is out of range": event("b3", at(DAY), click=2),
    "user_id is not a non-negative integer": event("b4", at(DAY), user_id="abc"),
    "event_time is outside the landing date": event("b5", at(date(2026, 1, 4))),
    "item_id is not a non-negative integer": event("b6", at(DAY), item_id=-3),
    "dwell_seconds is not a number >= 0": event("b7", at(DAY), dwell_seconds="-1.5"),
    "missing event_id": event("", at(DAY)),
}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_invalid_rows_are_quarantined_with_reasons_and_counts_reconcile(spark, settings, fmt):
    good = [event(f"g{i}", at(DAY, hour=i), user_id=i, item_id=100 + i, click=i % 2) for i in range(4)]
    good.append(event("g4", at(DAY, hour=4), user_id=4, item_id=104, user_segment='x,"y"'))
    duplicate = event("g0", at(DAY, hour=0), user_id=0, item_id=100)
    folder = _landing(settings)
    write_records(folder, good + [duplicate] + list(BAD_ROWS.values()), fmt)

    report = ingest_events.run(spark, settings, DAY, path=folder)

    assert (report.read, report.accepted, report.quarantined, report.duplicates) == (14, 5, 8, 1)
    assert report.reconciles()
    events = read_arrow(settings, EVENTS).to_pandas()
    assert sorted(events.event_id) == [f"g{i}" for i in range(5)]
    assert events.set_index("event_id").loc["g3", "click"] == 1
    assert events.set_index("event_id").loc["g4", "user_segment"] == 'x,"y"'  # quotes survive every format
    quarantine = read_arrow(settings, EVENTS_QUARANTINE).to_pandas()
    reasons = list(quarantine.reason)
    for expected in BAD_ROWS:
        assert sum(r.startswith(expected) for r in reasons) == 1, (expected, reasons)
    assert all(q.endswith(f"part-00000.{fmt}") for q in quarantine.source_file)
    assert "yesterday-ish" in quarantine.set_index("event_id").loc["b2", "raw"]


def test_malformed_json_line_is_quarantined(spark, settings):
    folder = _landing(settings)
    path = write_records(folder, [event("g1", at(DAY))])
    with path.open("a") as handle:
        handle.write("{this is not json\n")
    report = ingest_events.run(spark, settings, DAY, path=folder)
    assert (report.accepted, report.quarantined) == (1, 1)
    quarantine = read_arrow(settings, EVENTS_QUARANTINE).to_pandas()
    assert list(quarantine.reason) == ["malformed record"]
    assert quarantine.raw[0] == "{this is not json"


def _versions(settings):
    return {spec.name: DeltaTable(table_path(settings, spec)).version() for spec in (EVENTS, EVENTS_QUARANTINE)}


def test_bad_inputs_fail_clearly_and_leave_tables_untouched(spark, settings, tmp_path):
    write_records(_landing(settings), [event("g1", at(DAY))])
    ingest_events.run(spark, settings, DAY, path=_landing(settings))
    before = _versions(settings)

    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest_events.run(spark, settings, DAY, path=tmp_path / "nowhere")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "part-0.xml").write_text("<events/>")
    with pytest.raises(ValueError, match=r"unsupported or mixed file formats \['xml'\]"):
        ingest_events.run(spark, settings, DAY, path=odd)

    wrong = event("g2", at(DAY))
    wrong["clicked"] = wrong.pop("click")
    import pandas as pd

    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    pd.DataFrame([wrong]).to_json(mismatched / "part-0.jsonl", orient="records", lines=True)
    with pytest.raises(ValueError, match=r"missing required columns \['click'\], unexpected columns \['clicked'\]"):
        ingest_events.run(spark, settings, DAY, path=mismatched)

    assert _versions(settings) == before
    assert read_arrow(settings, EVENTS).num_rows == 1
