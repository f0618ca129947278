"""Values at and just past every limit of the landing contract, derived from the contract itself.

The writer (tests/data/test_contract.py) and ingestion (tests/spark_jobs/test_ingest_events.py) must
both accept exactly the `ok` values of each case and reject the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.data.contract import LANDING_FIELDS, LandingField


@dataclass(frozen=True)
class Case:
    field: str
    value: object
    ok: bool

    @property
    def text(self) -> str:
        return repr(self.value) if isinstance(self.value, float) else str(self.value)


def _cases(spec: LandingField) -> list[Case]:
    if spec.kind == "int":
        low, high = int(spec.low), int(spec.high)
        return [Case(spec.name, low, True), Case(spec.name, high, True),
                Case(spec.name, low - 1, False), Case(spec.name, high + 1, False)]
    if spec.kind == "float":
        return [Case(spec.name, float(spec.low), True), Case(spec.name, float(spec.high), True),
                Case(spec.name, spec.low - 0.5, False), Case(spec.name, spec.high + 0.5, False),
                Case(spec.name, float("inf"), False)]
    if spec.kind == "text" and spec.allowed:
        return [Case(spec.name, value, True) for value in spec.allowed] + [Case(spec.name, "bogus", False)]
    if spec.kind == "text":
        return [Case(spec.name, "x" * spec.max_length, True), Case(spec.name, "x" * (spec.max_length + 1), False),
                Case(spec.name, "a\x00b", False), Case(spec.name, "tab\there", True)]
    return []  # timestamps: the writer renders them; tests/spark_jobs covers their text forms


BOUNDARY_CASES: list[Case] = [case for spec in LANDING_FIELDS.values() for case in _cases(spec)]
