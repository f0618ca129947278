"""The landing contract, declared once: every field a landing record may carry and what it may hold.

Three things are derived from `LANDING_FIELDS` and nothing else: the landing writer's checks
(`pipeline/data/landing.py`, on typed values before they become text), ingestion's quarantine rules
(`spark_jobs/ingest_events.py`, on the text it reads) and the typed columns of the `events` table
(`pipeline/tables.py`). A new landing field is one entry here.

Landing values are text in every format. The text a value must match is fixed here too, so the
writer and ingestion agree on what "an integer" or "a timestamp" is (no NaN, no 1e309, no date-only
times), and the bounds of each field apply on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal["text", "timestamp", "int", "float"]

# Text forms, as regular expressions both Java (Spark) and RE2 (Arrow) read the same way.
INTEGER_TEXT = r"^[+-]?[0-9]+$"
# Decimal notation only: NaN, Infinity and hex floats are refused as text, overflow by the bound check.
NUMBER_TEXT = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
# A full ISO-8601 time with its zone: date-only or zone-less values are not event times.
TIMESTAMP_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
# Control characters other than tab and line breaks (a quoted CSV field may span lines).
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"

_INT_RANGE = {"INT": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class LandingField:
    """One landing field: its kind, whether it is required, its limits and its `events` column type."""

    name: str
    kind: FieldKind
    events_type: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    max_length: int = 0
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "text" and not (self.max_length or self.allowed):
            raise ValueError(f"landing field {self.name!r}: text needs a max_length or an allowed set")
        if self.kind == "int":
            # Integer bounds never exceed what the events column holds.
            type_low, type_high = _INT_RANGE[self.events_type]
            object.__setattr__(self, "low", type_low if self.low is None else max(self.low, type_low))
            object.__setattr__(self, "high", type_high if self.high is None else min(self.high, type_high))

    @property
    def expected(self) -> str:
        """What a value must be, in words (quarantine reasons and writer errors use it)."""
        if self.kind == "timestamp":
            return "a full ISO-8601 timestamp with a zone (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)"
        if self.kind == "int":
            return "0 or 1" if (self.low, self.high) == (0, 1) else f"an integer in [{int(self.low)}, {int(self.high)}]"
        if self.kind == "float":
            return f"a finite number in [{self.low:g}, {self.high:g}]"
        if self.allowed:
            return f"one of {', '.join(self.allowed)}"
        return f"text of at most {self.max_length} characters without control characters"


LANDING_FIELDS: dict[str, LandingField] = {f.name: f for f in (
    LandingField("event_id", "text", "STRING", required=True, max_length=128),
    # ISO-8601 with a zone; writers emit UTC with milliseconds, e.g. 2026-01-01T08:15:30.250Z
    LandingField("event_time", "timestamp", "TIMESTAMP", required=True),
    LandingField("user_id", "int", "BIGINT", required=True, low=0),
    LandingField("item_id", "int", "BIGINT", required=True, low=0),
    LandingField("position", "int", "INT", low=0, high=10_000),
    # random: uniformly exposed items, the unbiased evaluation slice
    LandingField("scenario", "text", "STRING", required=True, allowed=("feed", "search", "random")),
    LandingField("device", "text", "STRING", max_length=32),
    LandingField("click", "int", "INT", required=True, low=0, high=1),
    LandingField("conversion", "int", "INT", low=0, high=1),
    LandingField("dwell_seconds", "float", "DOUBLE", low=0, high=86_400),
    LandingField("user_age", "int", "INT", low=0, high=130),
    LandingField("user_gender", "text", "STRING", max_length=16),
    LandingField("user_segment", "text", "STRING", max_length=64),
    LandingField("item_category", "text", "STRING", max_length=128),
)}

REQUIRED_FIELDS: tuple[str, ...] = tuple(name for name, f in LANDING_FIELDS.items() if f.required)


def events_columns_ddl() -> str:
    """The `events` table's columns that come from landing fields, as Spark DDL."""
    return ", ".join(f"{f.name} {f.events_type}" for f in LANDING_FIELDS.values())
