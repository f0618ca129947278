"""Which dates each task uses, derived from the config so every task agrees.

Day 1 has no history, so training starts on day 2; the day before the evaluated (held-out) date
is the fresh labelled slice that calibrates stale teacher logits and validates the students; students
train on the `student.window_days` days before that. As in Rec-Distill the schedules are decoupled:
the teacher learns from a longer history (in the DAGs its period, warm-started from the previous
teacher; without dates, every day before the students' window) and the students from a fresh window.

Whether the teacher also learns from the students' window is `teacher.include_student_window`. Off,
its logits there are predictions rather than a memory of the labels (demo data, 2 seeds: 42 % against
26 % transferability with it on). On, the teacher knows the users and items that arrive in the window,
which on real data mattered more: 10 seeds of `s` students on 2026-11-30 raised KD's AUC from 0.7441
to 0.7509 on Coat's random-exposure test share and from 0.7724 to 0.8126 on ML-100K's held-out day. It
is off by default and on in the `demo` profile (what the CLI, the demo and the benchmarks use).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from pipeline.config import Settings
from pipeline.dates import date_range
from pipeline.tables import TRAINING_SAMPLES, dates_present, partition_dates


@dataclass(frozen=True)
class Windows:
    train: list[date]  # the students'
    calibration: date
    holdout: date
    teacher_train: list[date]  # every day from the first with history up to the students' window


def windows_over(days: Sequence[date], window_days: int, holdout: date | None = None,
                 calibration: date | None = None) -> Windows:
    """The windows over `days`, the dates with data (the first has no history, so it only feeds history).

    The held-out date defaults to the last of `days`, the calibration date to the one before it.
    """
    days = sorted(set(days))
    if not days:
        raise ValueError("no dates to build training windows from")
    holdout = holdout or days[-1]
    if calibration is None:
        before = [d for d in days if d < holdout]
        if not before:
            raise ValueError(f"no date with data before the held-out date {holdout} to calibrate on "
                             f"(dates: {days[0]} … {days[-1]})")
        calibration = before[-1]
    if calibration >= holdout:
        raise ValueError(f"the calibration date {calibration} must be before the held-out date {holdout}")
    history = [d for d in days[1:] if d < calibration]
    if len(history) <= window_days:
        raise ValueError(f"no teacher days before the students' {window_days}-day window for held-out {holdout}: "
                         f"the days with history before the calibration date {calibration} are "
                         f"{[str(d) for d in history]} (the data starts on {days[0]}, a day without history); "
                         f"lower student.window_days or add days")
    return Windows(train=history[-window_days:], calibration=calibration, holdout=holdout,
                   teacher_train=history[:-window_days])


def holdout_period(settings: Settings, holdout: date) -> list[date]:
    """The `evaluation.holdout_days` dates with samples from `holdout` on, which evaluation pools; an error
    naming what is there when fewer exist (a pooled report must not change as later dates land)."""
    wanted = settings.evaluation.holdout_days
    if wanted == 1:
        return [holdout]
    period = [d for d in partition_dates(settings, TRAINING_SAMPLES) if d >= holdout][:wanted]
    if len(period) < wanted or period[0] != holdout:
        raise ValueError(f"evaluation.holdout_days = {wanted} needs {wanted} dates with training_samples from the "
                         f"held-out date {holdout} on; found {[str(d) for d in period]}")
    return period


def teacher_data_before(settings: Settings, days: Sequence[date], calibration: date) -> date:
    """The first date a teacher for students of `days` must not have trained on: their first day, or with
    `teacher.include_student_window` the calibration date (never the days that validate and evaluate)."""
    return calibration if settings.teacher.include_student_window else min(days)


def windows_for(settings: Settings, holdout: date) -> Windows:
    """The windows of a scheduled run that evaluates on `holdout`: every day since the configured start.

    The teacher learns from all labelled history before the students' window: day 1's labels too (its
    samples have no sequence yet) unless `teacher.first_day_labels` is off, and, as a measured option
    (`teacher.include_student_window`), the window itself.
    """
    days = date_range(settings.generator.start_date, holdout)
    return _teacher_history(settings, windows_over(days, settings.student.window_days, holdout), days[0])


def _teacher_history(settings: Settings, windows: Windows, first_day: date) -> Windows:
    """`windows` with the teacher's days as `teacher.first_day_labels`/`include_student_window` say."""
    teacher = ([first_day] if settings.teacher.first_day_labels else []) + windows.teacher_train
    if settings.teacher.include_student_window:
        teacher += windows.train
    return replace(windows, teacher_train=teacher)


def first_holdout(settings: Settings) -> date:
    """The first date with a teacher day, the students' window and a calibration date before it."""
    return settings.generator.start_date + timedelta(days=settings.student.window_days + 3)


def default_windows(settings: Settings, holdout: date | None = None, calibration: date | None = None) -> Windows:
    """The windows over the dates `training_samples` holds (generated or converted data alike).

    What the CLI and the demo use when no date is given: held out is the last date with samples, or the
    first of the last `evaluation.holdout_days` (the period evaluation pools).
    """
    days = partition_dates(settings, TRAINING_SAMPLES)
    if not days:
        raise ValueError(f"no training_samples under {settings.lakehouse.tables}: no dates to train on; "
                         f"build the table first (`recdistill data run`)")
    if holdout is None and settings.evaluation.holdout_days > 1:
        holdout = days[-min(settings.evaluation.holdout_days, len(days))]
    return _teacher_history(settings, windows_over(days, settings.student.window_days, holdout, calibration), days[0])


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
