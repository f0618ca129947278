"""The streaming increment: logits only for unscored streamed samples, a champion fine-tuned into a challenger."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.artifacts import increment_folder
from pipeline.mlflow_store import connect
from pipeline.streaming import STREAM_TAG, champion_student, run_increment
from pipeline.tables import STREAM_SAMPLES, TEACHER_LOGITS, TRAINING_SAMPLES, read_arrow
from pipeline.train.distill import train_student
from pipeline.train.logit_dump import dump_logits, dump_stream_logits
from pipeline.train.release import release_student
from pipeline.train.teacher import train_teacher
from pipeline.train.windows import default_windows


@pytest.fixture(scope="module")
def teacher(trained_lakehouse):
    """A teacher whose logits cover every day but the held-out one."""
    settings = trained_lakehouse
    windows = default_windows(settings)
    run = train_teacher(settings, windows.teacher_train, [windows.calibration])
    for day in [*windows.train, windows.calibration]:
        dump_logits(settings, day, run.version)
    return settings, windows, run.version


def test_without_a_champion_the_update_is_skipped_with_its_reason(teacher):
    settings, _, version = teacher
    report = run_increment(settings, stream=False)
    assert report.teacher_version == version and report.challenger_version is None
    assert report.skipped.startswith("no champion of recdistill-student")


def test_an_increment_fine_tunes_the_champion_into_a_gated_challenger(spark, teacher):
    settings, windows, version = teacher
    kd = train_student(settings, "kd", windows.train, seed=0, teacher_version=version)
    champion = release_student(settings, kd.folder, windows.holdout)
    assert champion.decision.promoted and champion_student(settings) == (champion.version, kd.folder)

    # The case the gate must pass: any held-out AUC is within tolerance, parity and signature hold.
    tolerant = settings.model_copy(update={"registry": settings.registry.model_copy(update={"auc_tolerance": 1.0})})
    report = run_increment(tolerant)

    streamed = read_arrow(settings, STREAM_SAMPLES)
    assert streamed.num_rows == read_arrow(settings, TRAINING_SAMPLES).num_rows  # every event streamed once
    holdout_rows = pc.sum(pc.equal(streamed.column("date"), windows.holdout)).as_py()
    dumped = pa.array([*windows.train, windows.calibration], pa.date32())
    unscored = pc.sum(pc.invert(pc.is_in(streamed.column("date"), dumped))).as_py()
    assert report.logits_written == unscored >= holdout_rows > 0  # only the days the daily dumps did not score
    logits = read_arrow(settings, TEACHER_LOGITS)
    assert pc.count_distinct(logits.column("sample_id")).as_py() == logits.num_rows == streamed.num_rows
    assert dump_stream_logits(settings, version) == 0  # a rerun finds nothing left to score

    update = report.update
    assert update.parent_version == champion.version and update.samples == streamed.num_rows - holdout_rows
    tags = connect(settings).get_model_version("recdistill-student", report.challenger_version).tags
    assert tags[f"{STREAM_TAG}parent_version"] == champion.version
    assert (tags[f"{STREAM_TAG}first_batch"], tags[f"{STREAM_TAG}last_batch"]) == ("0", "0")
    assert tags["lineage.teacher_version"] and tags["gate.decision"] == "promoted" and report.promoted
    assert champion_student(settings) == (report.challenger_version, increment_folder(settings, update.student_dir.name))

    again = run_increment(tolerant)
    assert again.challenger_version is None and again.skipped == "no fresh streamed samples since the last increment"
