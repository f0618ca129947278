"""recdistill_features run by Airflow itself builds the same tables as the jobs run day by day.

Both tests run real spark-submits on generated tiny data: `airflow dags test` (which is `dag.test()`)
for one date, and a backfill of three dates executed by a real scheduler.
"""

from __future__ import annotations

from deltalake import DeltaTable

from pipeline.airflow.env import init
from pipeline.tables import EVENTS_QUARANTINE, table_path
from tests.dags.conftest import (DAG_ID, DAG_TABLES, N_DAYS, copy_tables, make_lakehouse, running_airflow,
                                 wait_for_backfill)
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
                          "--reprocess-behavior", "failed")  # required with depends_on_past
        states = wait_for_backfill(lakehouse, logs, N_DAYS)
        # Finding 6: the api-server and the scheduler (no serve-logs) answer this machine only.
        addresses = listening_addresses(pids)
        assert addresses and addresses <= LOOPBACK, addresses

    assert list(states.values()) == ["success"] * N_DAYS
    assert lakehouse.hashes() == reference.hashes()
