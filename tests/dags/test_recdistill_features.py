"""recdistill_features run by a real scheduler: a triggered past day beside the run the scheduler adds
for a day without data, real spark-submits on generated tiny data.

The integration run (`make integration`, after this suite in `.ci/run`) checks the DAG's backfill through
a scheduler and its `airflow dags test` rebuild of a day against tables built by the jobs themselves.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.airflow.env import init
from pipeline.tables import TRAINING_SAMPLES
from tests.dags.conftest import DAG_ID, make_lakehouse, running_airflow, wait_for_runs


def test_a_triggered_past_day_and_the_unpaused_schedule_both_finish(tmp_path):
    """The operator's trap: trigger a past day while the DAG is paused, then unpause it. The scheduler
    adds a run for the real yesterday, which has no data; it is skipped with the reason, and the past
    day is built (with depends_on_past and max_active_runs=1 the two runs blocked each other)."""
    lakehouse = make_lakehouse(tmp_path)
    init(lakehouse.env)
    day = lakehouse.days[0]
    with running_airflow(lakehouse, schedule=True) as logs:
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
