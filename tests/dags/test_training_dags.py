"""recdistill_teacher and recdistill_distill: their wiring, and both run end to end by `airflow dags test`."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest

from pipeline.airflow.env import TRAINING_POOL, init
from pipeline.artifacts import daily_students, heldout_path, latest_teacher, teacher_manifest
from pipeline.config import load_settings
from pipeline.mlflow_store import connect
from pipeline.tables import TEACHER_LOGITS, dates_present
from pipeline.train.windows import teacher_period, windows_for
from tests.dags.conftest import make_lakehouse

TINY = load_settings("tiny")
FIRST_PERIOD = TINY.generator.start_date + timedelta(days=1)
HOLDOUT = TINY.generator.start_date + timedelta(days=TINY.generator.n_days - 1)


@pytest.fixture(scope="module")
def teacher_dag(dagbag):
    return dagbag.dags["recdistill_teacher"]


@pytest.fixture(scope="module")
def distill_dag(dagbag):
    return dagbag.dags["recdistill_distill"]


def test_teacher_waits_for_its_period_then_trains_registers_and_dumps(teacher_dag):
    assert {task.task_id: task.downstream_task_ids for task in teacher_dag.tasks} == {
        "wait_for_samples": {"train"}, "train": {"register", "dump_logits"}, "register": set(),
        "dump_logits": set()}
    assert teacher_dag.get_task("train").pool == TRAINING_POOL
    assert teacher_dag.get_task("wait_for_samples").mode == "reschedule"  # frees its worker slot while waiting
    assert teacher_dag.max_active_runs == 1 and teacher_dag.catchup is False
    assert teacher_dag.start_date.date() == FIRST_PERIOD
    assert teacher_dag.timetable.delta == timedelta(days=TINY.teacher.period_days)


def test_distill_chains_logits_students_evaluation_and_a_gated_release(distill_dag):
    order = [task.task_id for task in distill_dag.topological_sort()]
    chain = ["wait_for_samples", "teacher", "dump_logits", "distill", "debias", "evaluate", "export", "register",
             "promote"]
    assert [task_id for task_id in order if task_id in chain] == chain
    assert {task.task_id for task in distill_dag.tasks} == set(chain)
    for task_id in ("distill", "debias", "evaluate"):
        assert distill_dag.get_task(task_id).pool == TRAINING_POOL, task_id
    for task in distill_dag.tasks:
        assert task.retries >= 1 and task.execution_timeout is not None, task.task_id
    assert distill_dag.start_date.date() == windows_for(TINY, distill_dag.start_date.date()).holdout


def test_distill_skips_with_the_reason_until_a_teacher_has_not_seen_its_window(distill_dag, tmp_path, monkeypatch):
    import sys

    from airflow.sdk.exceptions import AirflowSkipException

    callable_ = distill_dag.get_task("teacher").python_callable
    monkeypatch.setattr(sys.modules[callable_.__module__], "settings",
                        load_settings("tiny", lakehouse={"root": str(tmp_path / "lakehouse")}))
    first_student_day = windows_for(TINY, HOLDOUT).train[0]
    reason = f"no finished teacher trained only on dates before {first_student_day}"
    with pytest.raises(AirflowSkipException, match=reason):
        callable_(ds=HOLDOUT.isoformat())


@pytest.mark.parametrize("dag_id", ["recdistill_teacher", "recdistill_distill"])
def test_a_day_without_data_is_skipped_with_the_reason_not_awaited(dagbag, dag_id, tmp_path, monkeypatch):
    import sys

    from airflow.sdk.exceptions import AirflowSkipException

    sensor = dagbag.dags[dag_id].get_task("wait_for_samples").python_callable
    monkeypatch.setattr(sys.modules[sensor.__module__], "settings",
                        load_settings("tiny", lakehouse={"root": str(tmp_path / "lakehouse")}))
    with pytest.raises(AirflowSkipException, match=r"no training samples and no landing files for \['2026-11-2"):
        sensor(ds="2026-11-26")


@pytest.fixture(scope="module")
def airflow_trained(tiny_samples, tmp_path_factory):
    """A tiny lakehouse with samples, after `airflow dags test` of the teacher DAG and then the distill DAG."""
    lakehouse = make_lakehouse(tmp_path_factory.mktemp("training_dags"))
    shutil.copytree(tiny_samples / "tables", lakehouse.settings.lakehouse.tables)
    init(lakehouse.env)
    lakehouse.airflow("dags", "test", "recdistill_teacher", FIRST_PERIOD.isoformat())
    lakehouse.airflow("dags", "test", "recdistill_distill", HOLDOUT.isoformat())
    return lakehouse


def test_teacher_dag_trains_on_its_period_and_scores_only_the_day_after_it(airflow_trained):
    settings = airflow_trained.settings
    version = latest_teacher(settings)
    train, validation = teacher_period(settings, FIRST_PERIOD)
    manifest = teacher_manifest(settings, version)
    assert manifest.data_dates == train
    assert manifest.registry_version  # the register task ran
    assert dates_present(settings, TEACHER_LOGITS, [*train, validation], teacher_version=version) == {validation}


def test_distill_dag_registers_a_challenger_that_the_gate_judged(airflow_trained):
    settings = airflow_trained.settings
    version = latest_teacher(settings)
    windows = windows_for(settings, HOLDOUT)
    # The teacher had not trained on the students' days; the DAG scored them and the held-out date.
    assert max(teacher_manifest(settings, version).data_dates) < windows.train[0]
    needed = {*windows.train, windows.calibration, HOLDOUT}
    assert dates_present(settings, TEACHER_LOGITS, needed, teacher_version=version) == needed
    kinds = sorted(folder.manifest().kind for folder in daily_students(settings))
    assert kinds == sorted(["base", "kd", "debiased"] * len(settings.student.seeds))
    assert heldout_path(settings, HOLDOUT).exists()

    client = connect(settings)  # this lakehouse's store, whatever other tests made the default
    registered = client.search_model_versions(f"name = '{settings.registry.student_model}'")
    assert len(registered) == 1
    tags = registered[0].tags
    assert tags["lineage.teacher_version"] == teacher_manifest(settings, version).registry_version
    # The first release in a fresh registry: no champion to beat, so a student whose W8A16 parity holds is promoted.
    assert tags["gate.decision"] == "promoted", tags["gate.checks"]
    assert [check["name"] for check in json.loads(tags["gate.checks"])] == ["parity", "signature", "auc"]
    champion = client.get_registered_model(settings.registry.student_model).aliases.get("champion")
    assert champion == registered[0].version


def test_streaming_dag_scores_the_stream_and_turns_the_champion_into_a_gated_challenger(airflow_trained, monkeypatch):
    """`airflow dags test recdistill_streaming` after the training DAGs: spark-submit of the stream,
    the teacher's logits for it, then an update of the champion if the distill DAG's gate made one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline.streaming import STREAM_TAG, stream_start
    from pipeline.tables import STREAM_SAMPLES, TRAINING_SAMPLES, read_arrow

    settings = airflow_trained.settings
    client = connect(settings)
    model = settings.registry.student_model
    champion = client.get_registered_model(model).aliases.get("champion")
    versions_before = {v.version for v in client.search_model_versions(f"name = '{model}'")}
    after = stream_start(settings)  # the champion's data ends here; the stream reads later dates only
    # Its logical date D gates on D − 1, the distill DAG's held-out date, which the update never trains on.
    # Any held-out AUC is within this tolerance: the case where the gate must promote the increment.
    monkeypatch.setitem(airflow_trained.env, "RECDISTILL_REGISTRY__AUC_TOLERANCE", "1.0")
    airflow_trained.airflow("dags", "test", "recdistill_streaming", (HOLDOUT + timedelta(days=1)).isoformat())

    streamed = read_arrow(settings, STREAM_SAMPLES)
    samples = read_arrow(settings, TRAINING_SAMPLES, columns=["sample_id", "date"])
    fresh = samples.filter(pc.greater(samples.column("date"), pa.scalar(after)))
    assert 0 < fresh.num_rows < samples.num_rows  # the champion's own days are not streamed again
    # Every event after the champion's data streamed exactly once.
    assert sorted(streamed.column("sample_id").to_pylist()) == sorted(fresh.column("sample_id").to_pylist())
    logits = read_arrow(settings, TEACHER_LOGITS)
    logits = logits.filter(pc.equal(logits.column("pair_kind"), "labelled"))  # the window's unexposed pairs aside
    # One logit per sample (a streamed sample the distill DAG had scored is not scored again), every streamed one.
    assert pc.count_distinct(logits.column("sample_id")).as_py() == logits.num_rows
    assert set(streamed.column("sample_id").to_pylist()) <= set(logits.column("sample_id").to_pylist())
    new = [v for v in client.search_model_versions(f"name = '{model}'") if v.version not in versions_before]
    assert champion is not None  # the distill DAG's release (see the test above)
    assert len(new) == 1 and new[0].tags[f"{STREAM_TAG}parent_version"] == str(champion)
    assert new[0].tags["gate.decision"] == "promoted"
    assert client.get_registered_model(model).aliases["champion"] == new[0].version
