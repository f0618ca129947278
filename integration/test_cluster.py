"""The tiny profile on PostgreSQL, a Spark standalone cluster and an MLflow tracking server equals the
embedded run, and survives a lost Spark worker and a PostgreSQL restart.

The features DAG under a real scheduler (a triggered past day beside the run the scheduler adds, a
backfill) and an `airflow dags test` rebuild of a day are checked here only; the unit suite checks the
DAG's wiring and each job.

Run by `make integration` (integration/run.sh); the steps are the fixtures of conftest.py, in order.
"""

from __future__ import annotations

import json
from pathlib import Path

from integration import services
from integration.conftest import BACKFILL_DAYS, Cluster, FeaturesRuns, PostgresDrill, WorkerDrill, registry_state
from integration.steps import FEATURES_DAG, REBUILD_RECORD
from pipeline import tables
from pipeline.config import RegistryConfig
from pipeline.tables import content_hash, read_arrow, table_exists
from pipeline.artifacts import latest_teacher, teacher_manifest
from tests.dags.conftest import Lakehouse

# Every table the tiny run writes; teacher_logits too: the same data and seeds give the same teacher.
COMPARED = (tables.EVENTS, tables.EVENTS_QUARANTINE, tables.USER_FEATURES, tables.ITEM_FEATURES, tables.SEQUENCES,
            tables.TRAINING_SAMPLES, tables.TEACHER_LOGITS)


def relative_sources(table):
    """Source files relative to the landing folder: the two runs hold the same files under different roots."""
    import pyarrow.compute as pc

    if "source_file" not in table.column_names:
        return table
    relative = pc.replace_substring_regex(table.column("source_file"), "^.*/landing/", "")
    return table.set_column(table.column_names.index("source_file"), "source_file", relative)


# When a row was written, not what it holds: the two runs write the same rows at different times.
WRITE_TIMES = ("written_at",)


def table_hashes(lakehouse: Lakehouse) -> dict[str, str]:
    hashes = {}
    for spec in COMPARED:
        if table_exists(lakehouse.settings, spec):
            table = relative_sources(read_arrow(lakehouse.settings, spec))
            table = table.drop_columns([c for c in WRITE_TIMES if c in table.column_names])
            hashes[spec.name] = content_hash(table, spec.key)
    return hashes


def test_a_day_triggered_while_paused_and_the_run_the_unpause_adds_both_finish(cluster_lakehouse: Lakehouse,
                                                                               features_runs: FeaturesRuns):
    first = str(cluster_lakehouse.days[0])
    assert features_runs.trap[("manual", first)] == "success"
    [scheduled] = [day for kind, day in features_runs.trap if kind == "scheduled"]
    assert features_runs.trap[("scheduled", scheduled)] == "success" and scheduled > str(cluster_lakehouse.days[-1])
    # The real yesterday has no landing files: skipped with the reason, not awaited.
    [log] = Path(cluster_lakehouse.env["AIRFLOW_HOME"], "logs").glob(
        f"dag_id={FEATURES_DAG}/run_id=scheduled__*/task_id=landing_files/attempt=1.log")
    assert "Skipping task" in log.read_text() and f"no landing files for {scheduled}" in log.read_text()


def test_features_dag_runs_every_task_as_an_application_of_the_cluster(cluster: Cluster, cluster_lakehouse: Lakehouse,
                                                                       features_runs: FeaturesRuns):
    # The backfill over both days built only the second: the first had succeeded.
    assert features_runs.backfill == {str(cluster_lakehouse.days[1]): "success"}
    # The features runs are the first work of the cluster: one finished application per task of the two
    # days (the jobs' own session names them all "recdistill", whatever spark-submit's --name says).
    applications = cluster.spark.state()["completedapps"]
    assert [app["state"] for app in applications] == ["FINISHED"] * 4 * BACKFILL_DAYS, applications


def test_dag_test_rebuilds_a_day_of_the_embedded_run_in_place_with_identical_content(embedded):
    rebuilt = json.loads((embedded.settings.lakehouse.root.parent / REBUILD_RECORD).read_text())
    assert rebuilt["versions_before"], rebuilt
    for name, version in rebuilt["versions_before"].items():
        assert rebuilt["versions_after"][name] == version + 1, name  # replaced its day: one commit
        assert rebuilt["rows_after"][name] > 0, name
    assert rebuilt["same_content"], rebuilt


def test_a_job_that_loses_its_worker_commits_nothing_and_its_retry_succeeds(worker_drill: WorkerDrill):
    # Spark does not fail a job whose only worker died: it waits for one, so the orchestrator's deadline stops it.
    assert worker_drill.running_after_kill
    assert worker_drill.failed_exit_code != 0
    assert worker_drill.version_after_failure == worker_drill.version_before
    assert worker_drill.rows_after_failure == 0
    assert worker_drill.retry_exit_code == 0
    assert worker_drill.version_after_retry == worker_drill.version_before + 1
    assert worker_drill.rows_after_retry > 0


def test_teacher_trained_by_two_gloo_ranks_and_registered_on_the_tracking_server(cluster: Cluster, cluster_teacher):
    manifest = teacher_manifest(cluster_teacher.settings, latest_teacher(cluster_teacher.settings))
    assert manifest.world_size == 2
    registered = registry_state(cluster.mlflow.url)
    assert (RegistryConfig().teacher_model, str(manifest.registry_version)) in registered


def test_distill_dag_succeeds_after_a_postgres_restart_and_the_registry_keeps_every_version(
        cluster: Cluster, postgres_drill: PostgresDrill, distill_run):
    assert list(distill_run.values()) == ["success"]
    after = registry_state(cluster.mlflow.url)
    assert postgres_drill.registry_before, "the teacher was registered before the restart"
    for key, before in postgres_drill.registry_before.items():
        assert {k: v for k, v in after[key].items() if k != "aliases"} == \
            {k: v for k, v in before.items() if k != "aliases"}, key
    assert any(name == RegistryConfig().student_model for name, _ in after)


def test_every_service_listens_on_loopback_only(cluster: Cluster, airflow, distill_run):
    processes = [cluster.spark.master, cluster.spark.worker, cluster.mlflow.process, *airflow.processes]
    pids = [cluster.postgres.pid, *(process.popen.pid for process in processes)]
    listening = services.listening_addresses(pids)
    assert {port for _, port in listening} >= {cluster.postgres.port, cluster.spark.port, cluster.mlflow.port,
                                              airflow.port}
    assert {address for address, _ in listening} == {services.HOST}, sorted(listening)


def test_cluster_run_writes_the_same_tables_as_the_embedded_run(embedded, distill_run, cluster_teacher):
    cluster_hashes = table_hashes(cluster_teacher)
    assert {spec.name for spec in COMPARED if spec is not tables.EVENTS_QUARANTINE} <= set(cluster_hashes)
    assert cluster_hashes == table_hashes(embedded)


def test_cluster_run_promotes_the_same_champion_as_the_embedded_run(cluster: Cluster, embedded, distill_run):
    model = RegistryConfig().student_model

    def champion(state: dict) -> tuple[str, dict]:
        versions = [(version, tags) for (name, version), tags in state.items()
                    if name == model and "champion" in tags["aliases"].split(",")]
        assert len(versions) == 1, state
        version, tags = versions[0]
        return version, {key: tags[key] for key in ("gate.decision", "gate.challenger_gate_day_auc", "lineage.data_dates")}

    cluster_champion = champion(registry_state(cluster.mlflow.url))
    assert cluster_champion == champion(registry_state(embedded.settings.tracking_uri))
    assert json.loads(registry_state(cluster.mlflow.url)[(model, cluster_champion[0])]["gate.checks"])


def test_the_registry_database_restored_from_its_backup_holds_every_version(cluster: Cluster, distill_run, run_dir):
    dump = run_dir / "mlflow.dump"
    cluster.postgres.backup("mlflow", dump)
    cluster.postgres.restore(dump, "mlflow_restored")
    # MLflow reads the restored database directly: the same versions, tags and aliases as the live server.
    assert registry_state(cluster.postgres.superuser_url("mlflow_restored")) == registry_state(cluster.mlflow.url)
