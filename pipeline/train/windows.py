"""Which dates each task uses, derived from the config so every task agrees.

Day 1 has no history, so training starts on day 2; the second-to-last day is the fresh labelled
slice that calibrates stale teacher logits; the last day is held out for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.config import Settings


@dataclass(frozen=True)
class Windows:
    train: list[date]
    calibration: date
    holdout: date


def default_windows(settings: Settings) -> Windows:
    gen = settings.generator
    if gen.n_days < 4:
        raise ValueError(f"generator.n_days = {gen.n_days}: training needs at least 4 days "
                         f"(history, train, calibration, holdout)")
    days = [gen.start_date + timedelta(days=i) for i in range(gen.n_days)]
    return Windows(train=days[1:-2], calibration=days[-2], holdout=days[-1])


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"date range ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
