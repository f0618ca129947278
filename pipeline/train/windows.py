"""Which dates each task uses, derived from the config so every task agrees.

Day 1 has no history, so training starts on day 2; the day before the evaluated (held-out) date
is the fresh labelled slice that calibrates stale teacher logits and validates the students; students
train on the `student.window_days` days before that. As in Rec-Distill the schedules are decoupled:
the teacher learns from a longer history (in the DAGs its period, warm-started from the previous
teacher; without dates, every day before the students' window) and the students from a fresh window.

The teacher never trains on the students' window: its logits there are then predictions, not a
memory of the labels. Logits of a teacher that saw those days were measured to transfer less to the
student (demo profile, 2 seeds: 26 % against 42 % transferability), because on its own training days
a teacher's logits mostly repeat the labels the student already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pipeline.config import Settings
from pipeline.dates import ONE_DAY, date_range
from pipeline.tables import TRAINING_SAMPLES, dates_present


@dataclass(frozen=True)
class Windows:
    train: list[date]  # the students'
    calibration: date
    holdout: date
    teacher_train: list[date]  # every day from the first with history up to the students' window


def windows_for(settings: Settings, holdout: date) -> Windows:
    """The windows of a run that evaluates on `holdout`."""
    calibration = holdout - ONE_DAY
    first = settings.generator.start_date + ONE_DAY
    if first >= calibration:
        raise ValueError(f"no training days before {calibration} (the calibration date for held-out {holdout}); "
                         f"the data starts on {settings.generator.start_date}")
    history = date_range(first, calibration - ONE_DAY)
    window = settings.student.window_days
    if len(history) <= window:
        raise ValueError(f"no teacher days before the students' {window}-day window for held-out {holdout}: "
                         f"the days with history before the calibration date {calibration} are "
                         f"{[str(d) for d in history]}; lower student.window_days or add days")
    return Windows(train=history[-window:], calibration=calibration, holdout=holdout, teacher_train=history[:-window])


def first_holdout(settings: Settings) -> date:
    """The first date with a teacher day, the students' window and a calibration date before it."""
    return settings.generator.start_date + timedelta(days=settings.student.window_days + 3)


def default_windows(settings: Settings) -> Windows:
    """The windows that end on the last generated day: what the CLI and the demo use without dates."""
    gen = settings.generator
    last = gen.start_date + timedelta(days=gen.n_days - 1)
    if last < first_holdout(settings):
        raise ValueError(f"generator.n_days = {gen.n_days}: training needs at least "
                         f"{(first_holdout(settings) - gen.start_date).days + 1} days (a day without history, "
                         f"teacher, {settings.student.window_days} student days, calibration, holdout)")
    return windows_for(settings, last)


def teacher_period(settings: Settings, first_day: date) -> tuple[list[date], date]:
    """The training days and the validation day of the teacher period that starts on `first_day`."""
    days = date_range(first_day, first_day + timedelta(days=settings.teacher.period_days - 1))
    return days[:-1], days[-1]


def require_samples(settings: Settings, days: list[date], task: str) -> None:
    """Refuse to train on a window with a date that has no `training_samples`, before anything is written:
    a run over missing dates would publish a model that claims days it never saw."""
    if not days:
        raise ValueError(f"{task} needs at least one training date (--from/--to)")
    present = dates_present(settings, TRAINING_SAMPLES, days)
    missing = [str(d) for d in days if d not in present]
    if missing:
        raise ValueError(f"{task}: no training_samples on {', '.join(missing)} (window {days[0]}..{days[-1]}); "
                         f"run `recdistill data run --from {days[0]} --to {days[-1]}` first, or train on other dates")
