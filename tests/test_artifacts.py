"""The artifact catalog: finders choose by manifest, unfinished artifacts are invisible, writes are atomic."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pipeline.artifacts import (
    EvaluationReport,
    Platt,
    StudentManifest,
    TeacherManifest,
    evaluated_students,
    find_student,
    latest_teacher,
    student_folder,
    students_for,
    teacher_folder,
    teacher_manifest,
)
from pipeline.config import Settings, load_settings
from pipeline.train.model_configs import teacher_model_hash

NOON = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings("tiny", lakehouse={"root": str(tmp_path)})


def plant_teacher(settings: Settings, version: str, days: list[str], finished_at: datetime = NOON,
                  model_hash: str | None = None) -> None:
    TeacherManifest(version=version, data_dates=days, config_hash="h", code_version="c", snapshot="s",
                    warm_start=None, metrics={"val_auc": 0.6}, best_epoch=1, validation_aucs=[0.6], run_id="r",
                    world_size=1, finished_at=finished_at, model_hash=model_hash
                    ).write(teacher_folder(settings, version).manifest_path)


def plant_student(settings: Settings, name: str, *, kind: str = "debiased", seed: int = 0, teacher: str | None = "t",
                  days: tuple[str, ...] = ("2026-01-03",), config_hash: str | None = None,
                  finished_at: datetime = NOON) -> None:
    StudentManifest(name=name, kind=kind, seed=seed, teacher_version=teacher, data_dates=list(days),
                    calibration_date=None, adapter=Platt(), debias={}, config_hash=config_hash or settings.config_hash(),
                    code_version="c", student_config={}, finished_at=finished_at
                    ).write(student_folder(settings, name).manifest_path)


def test_students_get_the_newest_teacher_that_never_saw_their_first_day(settings):
    for version, days in (("old", ["2026-01-02"]), ("mid", ["2026-01-02", "2026-01-03"]), ("new", ["2026-01-04"])):
        plant_teacher(settings, version, days)
    assert latest_teacher(settings) == "new"
    assert latest_teacher(settings, data_before=date(2026, 1, 4)) == "mid"
    assert latest_teacher(settings, data_before=date(2026, 1, 3)) == "old"
    assert latest_teacher(settings, data_before=date(2026, 1, 2)) is None
    assert latest_teacher(settings, before="new", data_before=date(2026, 1, 5)) == "mid"


def test_a_warm_start_only_finds_a_teacher_of_the_same_shape(settings):
    """A changed teacher preset must start afresh: the newest teacher's weights would not load."""
    shape = teacher_model_hash(settings)
    wider = teacher_model_hash(settings.model_copy(update={"teacher": settings.teacher.model_copy(
        update={"preset": "small"})}))
    assert shape != wider
    plant_teacher(settings, "same-shape", ["2026-01-02"], model_hash=shape)
    plant_teacher(settings, "other-shape", ["2026-01-03"], model_hash=wider)
    plant_teacher(settings, "before-shapes-were-recorded", ["2026-01-04"])
    assert latest_teacher(settings) == "before-shapes-were-recorded"
    assert latest_teacher(settings, model_hash=shape) == "same-shape"
    assert latest_teacher(settings, model_hash=wider) == "other-shape"


def test_an_unfinished_teacher_is_never_found(settings):
    plant_teacher(settings, "finished", ["2026-01-02"])
    (teacher_folder(settings, "killed").best).mkdir(parents=True)  # snapshots but no manifest yet
    assert latest_teacher(settings) == "finished"
    with pytest.raises(ValueError, match=r"unknown teacher version 'killed'; finished teachers: \['finished'\]"):
        teacher_manifest(settings, "killed")


def test_release_picks_the_student_by_its_manifest_not_its_folder_name(settings):
    """Issue 18 finding 7: a student trained with other settings (a sabotaged config) is newer and sorts
    last by folder name; release must still pick the newest one trained with the current settings."""
    holdout = date(2026, 1, 5)
    plant_student(settings, "student-a-older", finished_at=NOON - timedelta(hours=2))
    plant_student(settings, "student-b-current", finished_at=NOON)
    plant_student(settings, "student-z-sabotaged", config_hash="0123456789ab", finished_at=NOON + timedelta(hours=1))
    plant_student(settings, "student-zz-other-seed", seed=1, finished_at=NOON + timedelta(hours=1))
    plant_student(settings, "student-zzz-other-teacher", teacher="t2", finished_at=NOON + timedelta(hours=1))
    plant_student(settings, "student-zzzz-saw-holdout", days=("2026-01-05",), finished_at=NOON + timedelta(hours=1))
    assert find_student(settings, "t", holdout, "debiased", 0).name == "student-b-current"


def test_release_prefers_the_newest_window_over_the_newest_run(settings):
    plant_student(settings, "student-b-later-window", days=("2026-01-03",), finished_at=NOON)
    plant_student(settings, "student-a-earlier-window", days=("2026-01-02",), finished_at=NOON + timedelta(hours=1))
    assert find_student(settings, "t", date(2026, 1, 5), "debiased", 0).name == "student-b-later-window"


def test_release_without_a_student_of_the_current_settings_names_the_mismatch(settings):
    plant_student(settings, "student-sabotaged", config_hash="0123456789ab")
    with pytest.raises(ValueError, match=r"1 trained with other settings: config hashes \['0123456789ab'\]"):
        find_student(settings, "t", date(2026, 1, 5), "debiased", 0)


def test_students_for_a_teacher_include_base_students_of_any_teacher(settings):
    plant_student(settings, "base", kind="base", teacher=None)
    plant_student(settings, "kd-mine", kind="kd", teacher="t")
    plant_student(settings, "kd-other", kind="kd", teacher="t2")
    found = students_for(settings, "t", before=date(2026, 1, 5))
    assert {kind: [f.name for f in folders] for kind, folders in found.items()} == \
        {"base": ["base"], "kd": ["kd-mine"], "debiased": []}


def test_evaluation_scores_one_student_per_kind_and_seed_preferring_the_current_settings(settings):
    """Students of one seed trained with other settings or on an older window are not scored beside it."""
    plant_student(settings, "kd0-current-older", kind="kd", days=("2026-01-02",))
    plant_student(settings, "kd0-other-settings-newer", kind="kd", config_hash="0123456789ab",
                  finished_at=NOON + timedelta(hours=1))
    plant_student(settings, "kd1-other-older", kind="kd", seed=1, config_hash="0123456789ab", days=("2026-01-02",))
    plant_student(settings, "kd1-other-newer", kind="kd", seed=1, config_hash="0123456789ab")
    plant_student(settings, "base0", kind="base", teacher=None)
    found = evaluated_students(settings, "t", before=date(2026, 1, 5))
    assert {kind: [f.name for f in folders] for kind, folders in found.items()} == \
        {"base": ["base0"], "kd": ["kd0-current-older", "kd1-other-newer"], "debiased": []}


def test_a_failed_manifest_write_leaves_the_previous_one(settings, monkeypatch):
    plant_teacher(settings, "v", ["2026-01-02"])
    path = teacher_folder(settings, "v").manifest_path
    before = path.read_text()
    manifest = teacher_manifest(settings, "v").model_copy(update={"registry_version": "7"})
    monkeypatch.setattr("pipeline.artifacts.os.replace", lambda *_: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        manifest.write(path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.json"]  # no temporary file left


def test_an_evaluation_report_is_strict_json_when_a_metric_is_undefined():
    import json

    report = EvaluationReport(day=date(2026, 1, 5), teacher_version="teacher-x", metrics={"kd": {"auc": 0.7, "random_auc": float("nan")}},
                              transferability={"kd_value": float("inf")})
    plain = report.to_json()
    assert plain["metrics"] == {"kd": {"auc": 0.7, "random_auc": None}} and plain["transferability"] == {"kd_value": None}
    json.dumps(plain, allow_nan=False)  # what Airflow's XCom client does
