"""recdistill_streaming is wired as its docstring says: stream → logits → update → release, thin and safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.airflow.env import SPARK_POOL, TRAINING_POOL
from pipeline.config import load_settings
from pipeline.spark import job_file, submit_conf

DAG_ID = "recdistill_streaming"


@pytest.fixture(scope="module")
def streaming_dag(dagbag):
    assert dagbag.import_errors == {}
    return dagbag.dags[DAG_ID]


def test_tasks_run_start_then_stream_then_logits_then_update_then_release(streaming_dag):
    assert [task.task_id for task in streaming_dag.topological_sort()] == [
        "stream_start", "stream_samples", "score_samples", "update_student", "release"]
    assert {task.task_id: task.downstream_task_ids for task in streaming_dag.tasks} == {
        "stream_start": {"stream_samples"}, "stream_samples": {"score_samples"}, "score_samples": {"update_student"},
        "update_student": {"release"}, "release": set()}


def test_stream_is_a_spark_submit_of_the_installed_job_with_delta(streaming_dag):
    task = streaming_dag.get_task("stream_samples")
    assert task.application == job_file("stream_samples") and Path(task.application).is_file()
    # Only the events after the champion's data: the date stream_start returned.
    assert task.application_args == ["--profile", "tiny", "--after", "{{ ti.xcom_pull(task_ids='stream_start') }}"]
    assert task.conf == submit_conf(load_settings("tiny"))
    assert task.pool == SPARK_POOL


def test_each_task_outlets_what_it_writes(streaming_dag):
    from pipeline.airflow import assets

    outlets = {task.task_id: {asset.uri for asset in task.outlets} for task in streaming_dag.tasks}
    assert outlets == {
        "stream_start": set(),
        "stream_samples": {assets.TRAINING_SAMPLES.uri, assets.STREAM_SAMPLES.uri},
        "score_samples": {assets.TEACHER_LOGITS.uri},
        "update_student": set(),
        "release": {assets.STUDENT_MODEL.uri},
    }


def test_one_run_at_a_time_on_a_cron_schedule_with_retries_and_timeouts(streaming_dag):
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(streaming_dag.timetable, CronTriggerTimetable)
    assert streaming_dag.max_active_runs == 1 and streaming_dag.catchup is False
    for task in streaming_dag.tasks:
        assert task.retries >= 1 and task.execution_timeout is not None, task.task_id
    assert streaming_dag.get_task("update_student").pool == TRAINING_POOL
