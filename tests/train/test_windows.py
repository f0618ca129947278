"""Which dates the teacher and the students train, calibrate and evaluate on."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipeline.config import load_settings
from pipeline.dates import date_range
from pipeline.train.windows import default_windows, first_holdout, windows_for


def test_the_teacher_never_trains_on_the_students_window():
    settings = load_settings("demo", student={"window_days": 2})
    windows = windows_for(settings, date(2026, 1, 8))
    assert windows.calibration == date(2026, 1, 7)
    assert windows.train == [date(2026, 1, 5), date(2026, 1, 6)]
    assert windows.teacher_train == date_range(date(2026, 1, 2), date(2026, 1, 4))  # day 1 has no history
    assert max(windows.teacher_train) < min(windows.train)


def test_first_holdout_is_the_first_date_with_every_window():
    settings = load_settings("demo", student={"window_days": 3})
    first = first_holdout(settings)
    windows = windows_for(settings, first)
    assert len(windows.teacher_train) == 1 and len(windows.train) == 3
    with pytest.raises(ValueError, match="no teacher days before the students' 3-day window"):
        windows_for(settings, first - timedelta(days=1))


def test_too_few_generated_days_name_what_is_missing():
    settings = load_settings("demo", generator={"n_days": 5}, student={"window_days": 2})
    with pytest.raises(ValueError, match=r"n_days = 5: training needs at least 6 days"):
        default_windows(settings)
