"""Which dates the teacher and the students train, calibrate and evaluate on."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipeline.config import load_settings
from pipeline.dates import date_range
from pipeline.train.windows import default_windows, first_holdout, windows_for, windows_over


def test_the_teacher_trains_on_all_labelled_history_and_the_window_only_when_configured():
    settings = load_settings("demo", student={"window_days": 2}, teacher={"include_student_window": False})
    windows = windows_for(settings, date(2026, 1, 8))
    assert windows.calibration == date(2026, 1, 7)
    assert windows.train == [date(2026, 1, 5), date(2026, 1, 6)]
    assert windows.teacher_train == date_range(date(2026, 1, 1), date(2026, 1, 4))  # all labelled history
    assert max(windows.teacher_train) < min(windows.train)
    later = load_settings("demo", student={"window_days": 2},
                          teacher={"first_day_labels": False, "include_student_window": False})
    assert windows_for(later, date(2026, 1, 8)).teacher_train == date_range(date(2026, 1, 2), date(2026, 1, 4))
    both = load_settings("demo", student={"window_days": 2})  # the demo profile's default: the window too
    assert windows_for(both, date(2026, 1, 8)).teacher_train == date_range(date(2026, 1, 1), date(2026, 1, 6))


def test_first_holdout_is_the_first_date_with_every_window():
    settings = load_settings("demo", student={"window_days": 3})
    first = first_holdout(settings)
    windows = windows_for(settings, first)
    assert len(windows.train) == 3  # the teacher: day 1's labels, day 2, and the students' three days
    assert windows.teacher_train == date_range(windows.train[0] - timedelta(days=2), windows.train[-1])
    with pytest.raises(ValueError, match="no teacher days before the students' 3-day window"):
        windows_for(settings, first - timedelta(days=1))


def test_windows_follow_the_dates_with_data_gaps_included():
    days = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 9), date(2026, 3, 10)]
    windows = windows_over(days, window_days=2)
    assert windows.holdout == date(2026, 3, 10) and windows.calibration == date(2026, 3, 9)
    assert windows.train == [date(2026, 3, 4), date(2026, 3, 5)]
    assert windows.teacher_train == [date(2026, 3, 2)]  # the first date with data only feeds history


def test_a_given_calibration_date_moves_the_students_window_before_it():
    days = date_range(date(2026, 3, 1), date(2026, 3, 10))
    windows = windows_over(days, window_days=2, calibration=date(2026, 3, 7))
    assert windows.holdout == date(2026, 3, 10)
    assert windows.train == [date(2026, 3, 5), date(2026, 3, 6)]
    with pytest.raises(ValueError, match="calibration date 2026-03-10 must be before the held-out date 2026-03-10"):
        windows_over(days, window_days=2, calibration=date(2026, 3, 10))


def test_too_few_dates_name_what_is_missing():
    with pytest.raises(ValueError, match=r"no teacher days before the students' 2-day window .* data starts on 2026-03-01"):
        windows_over(date_range(date(2026, 3, 1), date(2026, 3, 5)), window_days=2)


def test_default_windows_without_samples_say_how_to_build_them(tmp_path):
    with pytest.raises(ValueError, match="no training_samples under .*: no dates to train on; build the table first"):
        default_windows(load_settings("tiny", lakehouse={"root": str(tmp_path)}))


def test_a_usable_teacher_stops_before_the_window_or_before_the_calibration_date():
    from pipeline.train.windows import teacher_data_before

    days, calibration = [date(2026, 1, 5), date(2026, 1, 6)], date(2026, 1, 7)
    history_only = load_settings("demo", teacher={"include_student_window": False})
    assert teacher_data_before(history_only, days, calibration) == date(2026, 1, 5)
    with_window = load_settings("demo", teacher={"include_student_window": True})
    assert teacher_data_before(with_window, days, calibration) == calibration


def test_a_pooled_held_out_period_starts_the_defaults_that_many_dates_before_the_end(monkeypatch):
    from pipeline.train import windows as windows_module

    days = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6),
            date(2026, 3, 7), date(2026, 3, 9), date(2026, 3, 10)]
    monkeypatch.setattr(windows_module, "partition_dates", lambda *_: days)
    settings = load_settings("demo", student={"window_days": 2}, evaluation={"holdout_days": 3})
    windows = default_windows(settings)
    assert windows.holdout == date(2026, 3, 7) and windows.calibration == date(2026, 3, 6)
    # The period is the dates with samples from the held-out date on, gaps skipped.
    assert windows_module.holdout_period(settings, windows.holdout) == [date(2026, 3, 7), date(2026, 3, 9),
                                                                          date(2026, 3, 10)]
    with pytest.raises(ValueError, match=r"holdout_days = 3 needs 3 dates .* from the held-out date 2026-03-09 on; "
                                         r"found \['2026-03-09', '2026-03-10'\]"):
        windows_module.holdout_period(settings, date(2026, 3, 9))
    one_day = load_settings("demo", student={"window_days": 2})
    assert default_windows(one_day).holdout == date(2026, 3, 10)
    assert windows_module.holdout_period(one_day, date(2026, 3, 9)) == [date(2026, 3, 9)]
