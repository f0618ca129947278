"""recdistill_features run by Airflow itself builds the same tables as the jobs run day by day.

The tests run real spark-submits on generated tiny data: `airflow dags test` (which is `dag.test()`)
for one date, a backfill executed by a real scheduler, and a triggered past day beside the run the
scheduler adds for a day without data.
"""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

from pipeline.airflow.env import init
from pipeline.tables import EVENTS_QUARANTINE, TRAINING_SAMPLES, table_path
from tests.dags.conftest import (DAG_ID, DAG_TABLES, N_DAYS, copy_tables, make_lakehouse, running_airflow,
                                 wait_for_runs)
from tests.network import LOOPBACK, listening_addresses


def test_dag_test_rebuilds_a_day_in_place_with_identical_content(reference, tmp_path):
    lakehouse = make_lakehouse(tmp_path)
    copy_tables(reference, lakehouse)
    init(lakehouse.env)
    day = lakehouse.days[-1]
    # Clean synthetic data leaves nothing to quarantine, and replacing nothing commits no version.
    written = [spec for spec in DAG_TABLES if spec is not EVENTS_QUARANTINE]
    version = {spec.name: DeltaTable(table_path(lakehouse.settings, spec)).version() for spec in written}

    lakehouse.airflow("dags", "test", DAG_ID, day.isoformat())

    for spec in written:
        assert DeltaTable(table_path(lakehouse.settings, spec)).version() == version[spec.name] + 1, spec.name
        assert lakehouse.rows(spec, day) > 0, spec.name
    assert lakehouse.hashes() == reference.hashes()


def test_backfill_of_several_days_equals_running_them_one_by_one(reference, tmp_path):
    lakehouse = make_lakehouse(tmp_path)
    init(lakehouse.env)
    first, last = lakehouse.days[0], lakehouse.days[-1]
    with running_airflow(lakehouse) as (logs, pids):
        lakehouse.airflow("dags", "reserialize")
        lakehouse.airflow("dags", "unpause", DAG_ID)
        lakehouse.airflow("backfill", "create", "--dag-id", DAG_ID,
                          "--from-date", first.isoformat(), "--to-date", last.isoformat(),
                          "--reprocess-behavior", "failed")
        states = wait_for_runs(lakehouse, logs, ("backfill",), N_DAYS)
        # Finding 6: the api-server and the scheduler (no serve-logs) answer this machine only.
        addresses = listening_addresses(pids)
        assert addresses and addresses <= LOOPBACK, addresses

    assert list(states.values()) == ["success"] * N_DAYS
    assert lakehouse.hashes() == reference.hashes()


def test_a_triggered_past_day_and_the_unpaused_schedule_both_finish(tmp_path):
    """The operator's trap: trigger a past day while the DAG is paused, then unpause it. The scheduler
    adds a run for the real yesterday, which has no data; it is skipped with the reason, and the past
    day is built (with depends_on_past and max_active_runs=1 the two runs blocked each other)."""
    lakehouse = make_lakehouse(tmp_path)
    init(lakehouse.env)
    day = lakehouse.days[0]
    with running_airflow(lakehouse, schedule=True) as (logs, _):
        lakehouse.airflow("dags", "reserialize")
        lakehouse.airflow("dags", "trigger", DAG_ID, "--logical-date", f"{day}T00:00:00+00:00")
        lakehouse.airflow("dags", "unpause", DAG_ID)
        runs = wait_for_runs(lakehouse, logs, ("manual", "scheduled"), 2)

    assert runs[("manual", str(day))] == "success"
    assert lakehouse.rows(TRAINING_SAMPLES, day) > 0
    [(kind, scheduled_day)] = [key for key in runs if key[0] == "scheduled"]
    assert runs[(kind, scheduled_day)] == "success" and scheduled_day > str(lakehouse.days[-1])
    [log] = Path(lakehouse.env["AIRFLOW_HOME"], "logs").glob(
        f"dag_id={DAG_ID}/run_id=scheduled__*/task_id=landing_files/attempt=1.log")
    task_log = log.read_text()
    assert "Skipping task" in task_log and f"no landing files for {scheduled_day}" in task_log
