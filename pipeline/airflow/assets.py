"""Airflow Assets for recdistill's tables, shared by every DAG so producers and consumers match.

An asset is the logical table (`recdistill://<table>`), not its path: the lakehouse root is a
deployment setting, and a DAG scheduled on `TRAINING_SAMPLES` must not depend on it.
"""

from __future__ import annotations

from airflow.sdk import Asset

from pipeline import tables
from pipeline.tables import TableSpec

GROUP = "recdistill-tables"


def table_asset(spec: TableSpec) -> Asset:
    """The asset a task outlets when it writes `spec` (and a downstream DAG schedules on)."""
    return Asset(name=spec.name, uri=f"recdistill://{spec.name}", group=GROUP)


EVENTS = table_asset(tables.EVENTS)
EVENTS_QUARANTINE = table_asset(tables.EVENTS_QUARANTINE)
USER_FEATURES = table_asset(tables.USER_FEATURES)
ITEM_FEATURES = table_asset(tables.ITEM_FEATURES)
SEQUENCES = table_asset(tables.SEQUENCES)
TRAINING_SAMPLES = table_asset(tables.TRAINING_SAMPLES)
TEACHER_LOGITS = table_asset(tables.TEACHER_LOGITS)
STREAM_SAMPLES = table_asset(tables.STREAM_SAMPLES)

# Registered models (MLflow registry names), so the UI shows which runs produced which versions.
TEACHER_MODEL = Asset(name="recdistill-teacher", uri="recdistill://models/teacher", group="recdistill-models")
STUDENT_MODEL = Asset(name="recdistill-student", uri="recdistill://models/student", group="recdistill-models")
