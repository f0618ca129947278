"""Hand-made landing events for Spark job tests, so each test states exactly what it plants."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from pipeline.data.landing import LANDING_FIELDS


def event(event_id: str, when: datetime, user_id: int = 1, item_id: int = 10, click: int = 0,
          **fields: object) -> dict[str, object]:
    """One valid landing record; override any field with keyword arguments."""
    record: dict[str, object] = {name: None for name in LANDING_FIELDS}
    values = dict(event_id=event_id, event_time=when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                  user_id=user_id, item_id=item_id, position=0, scenario="feed", device="ios", click=click,
                  user_age=30, user_gender="F", user_segment="s1", item_category="c1")
    values.update(fields)
    record.update({k: (None if v is None else str(v)) for k, v in values.items()})
    return record


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=timezone.utc)


def write_records(folder: Path, records: list[dict[str, object]], fmt: str = "jsonl",
                  columns: list[str] | None = None, name: str = "part-00000") -> Path:
    """Write records (`columns` of them, default every landing field) as one landing file of `fmt`."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(records, columns=columns or list(LANDING_FIELDS), dtype="string")
    path = folder / f"{name}.{fmt}"
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def ingest(spark, settings, records: list[dict[str, object]]) -> list[date]:
    """Land `records` by their event date and ingest every date; returns the dates in order."""
    from spark_jobs import ingest_events

    by_day: dict[date, list[dict[str, object]]] = {}
    for record in records:
        by_day.setdefault(date.fromisoformat(str(record["event_time"])[:10]), []).append(record)
    for day, rows in sorted(by_day.items()):
        folder = settings.lakehouse.landing / "test" / f"date={day}"
        write_records(folder, rows)
        ingest_events.run(spark, settings, day, path=folder)
    return sorted(by_day)
