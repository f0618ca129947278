"""The streaming increment: it starts where the champion's data ends, scores only unscored streamed samples and
fine-tunes the champion on what arrived since into a challenger."""

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

    # The stream started where the champion's data ends, not at the first event.
    after = windows.train[-1]
    streamed, samples = read_arrow(settings, STREAM_SAMPLES), read_arrow(settings, TRAINING_SAMPLES)
    later = pc.sum(pc.greater(samples.column("date"), pa.scalar(after, pa.date32()))).as_py()
    assert streamed.num_rows == later > 0
    assert sorted(set(streamed.column("date").to_pylist())) == [windows.calibration, windows.holdout]
    holdout_rows = pc.sum(pc.equal(streamed.column("date"), windows.holdout)).as_py()
    assert report.logits_written == holdout_rows > 0  # the daily dumps scored the calibration day already
    logits = read_arrow(settings, TEACHER_LOGITS)
    assert pc.all(pc.is_in(streamed.column("sample_id"), logits.column("sample_id"))).as_py()
    assert pc.count_distinct(logits.column("sample_id")).as_py() == logits.num_rows
    assert dump_stream_logits(settings, version) == 0  # a rerun finds nothing left to score

    # The increment trains only on what arrived since, minus the gate's held-out day.
    update = report.update
    assert update.parent_version == champion.version and update.samples == streamed.num_rows - holdout_rows
    assert update.days == (str(windows.calibration),) and update.after == str(after)
    tags = connect(settings).get_model_version("recdistill-student", report.challenger_version).tags
    assert tags[f"{STREAM_TAG}parent_version"] == champion.version and tags[f"{STREAM_TAG}after"] == str(after)
    assert (tags[f"{STREAM_TAG}first_batch"], tags[f"{STREAM_TAG}last_batch"]) == ("0", "0")
    assert tags["lineage.teacher_version"] and tags["gate.decision"] == "promoted" and report.promoted
    assert champion_student(settings) == (report.challenger_version, increment_folder(settings, update.student_dir.name))

    again = run_increment(tolerant)
    assert again.challenger_version is None and again.skipped.startswith("no fresh streamed samples since the last increment")
