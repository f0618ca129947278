"""The teacher's sparse weight decay search (`pipeline.train.teacher_search`) on generated tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.artifacts import latest_teacher, search_record_path, teacher_manifest
from pipeline.metrics import auc
from pipeline.tables import TRAINING_SAMPLES, read_arrow
from pipeline.train import teacher_search
from pipeline.train.exposure import ExposureSplit
from pipeline.train.teacher_model import open_teacher
from pipeline.train.teacher_scoring import score_teacher
from pipeline.train.teacher import teacher_version
from pipeline.train.teacher_search import fit_teacher, with_decay
from pipeline.train.windows import default_windows

GRID = [0.0, 0.5]


def searched(settings, **debias):
    return settings.model_copy(update={
        "teacher": settings.teacher.model_copy(update={"epochs": 1, "sparse_weight_decay_search": GRID}),
        "debias": settings.debias.model_copy(update=debias)})


def held_out_as_share(settings, windows, monkeypatch) -> None:
    """The tiny data's own uniform share holds no click: the held-out date's rows stand in for one."""
    rows = read_arrow(settings, TRAINING_SAMPLES, days=[windows.holdout], columns=["sample_id"])
    split = ExposureSplit(np.sort(rows.column("sample_id").to_numpy()), np.zeros(0, np.int64))
    monkeypatch.setattr(teacher_search, "exposure_split", lambda *_: split)


def held_out_auc(settings, version: str, holdout) -> float:
    """The teacher's AUC on the held-out date, every row of which is the stand-in share."""
    net = open_teacher(settings, version)
    try:
        scored = score_teacher(net, settings, [holdout], neutral_position=False)
    finally:
        net.server.close()
    return auc(scored.labels, scored.logits)


def record_of(settings, days) -> dict:
    """The newest teacher search record (each test's settings differ, so each writes its own)."""
    path = max(search_record_path(settings, "x").parent.glob(f"teacher-{days[-1]}-*.json"),
               key=lambda p: p.stat().st_mtime)
    return json.loads(path.read_text())


def candidates(settings, days) -> list:
    return [teacher_manifest(settings, teacher_version(with_decay(settings, value), days, "search")) for value in GRID]


def test_a_candidate_per_value_is_scored_on_the_uniform_share_and_the_winner_becomes_the_teacher(trained_lakehouse,
                                                                                              monkeypatch):
    settings = searched(trained_lakehouse)
    windows = default_windows(settings)
    held_out_as_share(settings, windows, monkeypatch)
    run = fit_teacher(settings, windows.teacher_train, [windows.calibration])

    record = record_of(settings, windows.teacher_train)
    assert record["scored_on"] == "the uniform share"
    assert [value for value, _ in record["scores"]] == GRID
    best_value, best_score = max(record["scores"], key=lambda row: row[1])
    assert record["choice"] == best_value
    searched_teachers = candidates(settings, windows.teacher_train)
    assert all(m.role == "search" for m in searched_teachers)
    assert run.version not in {m.version for m in searched_teachers}
    # Each recorded score is its candidate's AUC on the uniform share; the teacher is the winner trained again
    # (same seed and settings), so it scores what the winner did, and only it is the window's teacher.
    assert [held_out_auc(settings, m.version, windows.holdout) for m in searched_teachers] == \
        pytest.approx([score for _, score in record["scores"]], abs=1e-9)
    assert held_out_auc(settings, run.version, windows.holdout) == pytest.approx(best_score, abs=1e-9)
    assert teacher_manifest(settings, run.version).role == "teacher"
    assert latest_teacher(settings) == run.version

    # A rerun reads the recorded choice: no candidate is trained or finished again.
    finished = [m.finished_at for m in searched_teachers]
    assert fit_teacher(settings, windows.teacher_train, [windows.calibration]).version == run.version
    assert [m.finished_at for m in candidates(settings, windows.teacher_train)] == finished


def test_without_a_uniform_share_candidates_are_compared_on_the_calibration_date(trained_lakehouse):
    settings = searched(trained_lakehouse, uniform_min_rows=10**9)  # no share is large enough
    windows = default_windows(settings)
    run = fit_teacher(settings, windows.teacher_train, [windows.calibration])
    record = record_of(settings, windows.teacher_train)
    assert record["scored_on"] == str(windows.calibration)
    assert [score for _, score in record["scores"]] == \
        pytest.approx([m.metrics["val_auc"] for m in candidates(settings, windows.teacher_train)])
    assert teacher_manifest(settings, run.version).metrics["val_auc"] == pytest.approx(max(
        score for _, score in record["scores"]))


def test_a_uniform_share_of_one_label_is_a_clear_error(trained_lakehouse):
    settings = searched(trained_lakehouse, uniform_min_rows=1)
    windows = default_windows(settings)
    with pytest.raises(ValueError, match=r"the uniform share of \S+ has \d+ rows of one label: it cannot compare"):
        fit_teacher(settings, windows.teacher_train, [windows.calibration])
