"""dags/ parses cleanly and recdistill_features is wired as its docstring says."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.airflow.env import SPARK_CONN_ENV, SPARK_CONN_ID, SPARK_POOL
from pipeline.config import load_settings
from pipeline.spark import DELTA_CONF, delta_package, job_file, submit_conf
from tests.dags.conftest import DAG_ID

TASK_JOBS = {"ingest": "ingest_events", "features": "build_features", "sequences": "build_sequences",
             "samples": "build_samples"}


@pytest.fixture(scope="module")
def features_dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_dags_folder_parses_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids
    assert Path(dagbag.dag_folder) == Path(__file__).resolve().parents[2] / "dags"


def test_a_day_is_checked_for_landing_files_then_built_once_earlier_events_are_in(features_dag):
    assert {task.task_id: task.downstream_task_ids for task in features_dag.tasks} == {
        "landing_files": {"ingest", "earlier_events"}, "earlier_events": {"features"}, "ingest": {"features"},
        "features": {"sequences"}, "sequences": {"samples"}, "samples": set()}


def test_each_spark_task_outlets_the_assets_of_the_tables_it_writes(features_dag):
    from pipeline.airflow import assets

    outlets = {task_id: {asset.uri for asset in features_dag.get_task(task_id).outlets} for task_id in TASK_JOBS}
    assert outlets == {
        "ingest": {assets.EVENTS.uri, assets.EVENTS_QUARANTINE.uri},
        "features": {assets.USER_FEATURES.uri, assets.ITEM_FEATURES.uri},
        "sequences": {assets.SEQUENCES.uri},
        "samples": {assets.TRAINING_SAMPLES.uri},
    }


def test_the_run_for_a_day_starts_after_that_day_and_builds_that_day(features_dag):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    first_day = datetime.combine(load_settings("tiny").generator.start_date, time(), timezone.utc)
    assert features_dag.start_date == first_day
    first_run = coerce_to_core_timetable(features_dag.timetable).next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=first_day, latest=None, catchup=True))
    assert first_run.logical_date == first_day  # so {{ ds }} is the day whose data the run builds
    assert first_run.run_after == first_day + timedelta(days=1)


def test_no_run_waits_on_another_runs_state(features_dag):
    assert features_dag.catchup is False
    assert features_dag.max_active_runs == load_settings("tiny").airflow.max_active_runs > 1
    assert not any(task.depends_on_past or task.wait_for_downstream for task in features_dag.tasks)


def test_every_spark_task_retries_times_out_and_takes_a_spark_pool_slot(features_dag):
    for task_id in TASK_JOBS:
        task = features_dag.get_task(task_id)
        assert task.retries >= 1 and task.retry_delay > timedelta(0), task_id
        assert task.execution_timeout is not None, task_id
        assert task.pool == SPARK_POOL, task_id


def test_spark_tasks_submit_the_installed_job_for_the_logical_date_with_delta(features_dag):
    for task_id, job in TASK_JOBS.items():
        task = features_dag.get_task(task_id)
        assert task.application == job_file(job) and Path(task.application).is_file()
        assert task.application_args[:4] == ["--date", "{{ ds }}", "--profile", "tiny"]
        assert task.conf == submit_conf(load_settings("tiny"))
        assert DELTA_CONF.items() <= task.conf.items()
        assert "spark.jars" in task.conf or task.conf["spark.jars.packages"] == delta_package()
    assert features_dag.get_task("ingest").application_args[4:] == []  # every landing source of the day


def test_spark_default_connection_is_local_mode_not_the_yarn_fallback(features_dag):
    """SparkSubmitOperator silently falls back to YARN for an undefined connection; ours is always defined.
    (That the tasks really submit through it is what `airflow dags test recdistill_features` shows.)"""
    from airflow.sdk import BaseHook

    assert SPARK_CONN_ENV in os.environ
    assert BaseHook.get_connection(SPARK_CONN_ID).host == "local[*]"
