"""Which dates each task uses, derived from the config so every task agrees.

Day 1 has no history, so training starts on day 2; the day before the evaluated (held-out) date
is the fresh labelled slice that calibrates stale teacher logits; students train on the days
before that. The teacher trains on its period's days but the last, which validates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.config import Settings

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Windows:
    train: list[date]
    calibration: date
    holdout: date


def windows_for(settings: Settings, holdout: date, window_days: int | None = None) -> Windows:
    """The student windows of a run that evaluates on `holdout` (default: `student.window_days` days)."""
    window = settings.student.window_days if window_days is None else window_days
    calibration = holdout - ONE_DAY
    first = max(settings.generator.start_date + ONE_DAY, calibration - timedelta(days=window))
    if first >= calibration:
        raise ValueError(f"no training days before {calibration} (the calibration date for held-out {holdout}); "
                         f"the data starts on {settings.generator.start_date}")
    return Windows(train=date_range(first, calibration - ONE_DAY), calibration=calibration, holdout=holdout)


def default_windows(settings: Settings) -> Windows:
    """The windows over every generated day: what the CLI and the demo use without dates."""
    gen = settings.generator
    if gen.n_days < 4:
        raise ValueError(f"generator.n_days = {gen.n_days}: training needs at least 4 days "
                         f"(history, train, calibration, holdout)")
    return windows_for(settings, gen.start_date + timedelta(days=gen.n_days - 1), window_days=gen.n_days)


def teacher_period(settings: Settings, first_day: date) -> tuple[list[date], date]:
    """The training days and the validation day of the teacher period that starts on `first_day`."""
    days = date_range(first_day, first_day + timedelta(days=settings.teacher.period_days - 1))
    return days[:-1], days[-1]


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"date range ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
