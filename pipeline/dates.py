"""Calendar helpers every layer shares (the data plane's jobs and training's windows)."""

from __future__ import annotations

from datetime import date, timedelta

ONE_DAY = timedelta(days=1)


def date_range(start: date, end: date) -> list[date]:
    """Every date from `start` to `end`, both included."""
    if end < start:
        raise ValueError(f"date range ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
