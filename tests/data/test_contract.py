"""The landing contract: one declaration, and the writer's checks and the events schema derived from it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data.contract import LANDING_FIELDS, LandingField
from pipeline.data.landing import LandingError, write_landing
from pipeline.tables import EVENTS
from tests.data.contract_cases import BOUNDARY_CASES, Case

DAY = date(2026, 1, 1)


def _frame(case: Case) -> pd.DataFrame:
    row = {"event_id": "e-1", "event_time": pd.Timestamp("2026-01-01T08:00:00", tz="UTC"), "user_id": 1,
           "item_id": 2, "scenario": "feed", "click": 0}
    return pd.DataFrame([{**row, case.field: case.value}])


@pytest.mark.parametrize("case", BOUNDARY_CASES, ids=lambda c: f"{c.field}={c.text[:12]}")
def test_the_writer_accepts_exactly_what_the_contract_allows(tmp_path: Path, case: Case) -> None:
    if case.ok:
        write_landing(_frame(case), tmp_path, "src", DAY, "jsonl")
    else:
        with pytest.raises(LandingError, match=f"field '{case.field}' must be"):
            write_landing(_frame(case), tmp_path, "src", DAY, "jsonl")


def test_the_events_schema_types_every_landing_field() -> None:
    assert EVENTS.columns == [*LANDING_FIELDS, "source_file", "date"]


def test_a_new_field_is_one_declaration() -> None:
    field = LandingField("coupon", "int", "INT", low=0, high=9)
    assert field.expected == "an integer in [0, 9]"
    with pytest.raises(ValueError, match="needs a max_length or an allowed set"):
        LandingField("note", "text", "STRING")
