"""The cluster-shaped run and the embedded run it is compared with, as session fixtures.

Both runs start from the same generated tiny-profile landing files. The embedded run is the default
shape: local Spark, SQLite for Airflow and MLflow (`integration.steps`, a process of its own that starts
first and runs beside the cluster run). The cluster run uses the services of
`integration.services`; its steps are fixtures in the order they happen, each test asserts on one:

1. the features DAG through a real scheduler on PostgreSQL, every task a spark-submit to the standalone
   master: the first day triggered while the DAG is paused, then the DAG unpaused (the operator's trap:
   the scheduler adds a run for the real yesterday, which has no data), then a backfill of the first two
   days, which builds only the second (the first already succeeded);
2. drill: day 3's ingest job loses the Spark worker mid-job, is stopped at its deadline with nothing
   committed, and succeeds when retried after the worker is back;
3. the remaining days by `recdistill data run` with its driver on the cluster;
4. the teacher under torchrun (2 gloo processes), registered on the tracking server;
5. drill: PostgreSQL restarted under the running scheduler and tracking server;
6. the distill DAG for the held-out day through the scheduler: students, export, registration, gate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from integration import services
from integration.services import AirflowServices, MlflowServer, Postgres, SparkCluster
from integration.steps import DISTILL_DAG, FEATURES_DAG, holdout, run, torchrun_teacher
from pipeline.airflow.env import SPARK_CONN_ENV, init, spark_connection
from pipeline.spark import delta_package, job_file, submit_args
from tests.dags.conftest import Lakehouse, lakehouse_at, make_lakehouse

BACKFILL_DAYS = 2
RUN_DEADLINE_S = 2400  # a guard against a hung scheduler, far above a normal run
# Stands in for the task's execution_timeout: how long a job that lost its worker is left waiting.
STUCK_JOB_WAIT_S = 20


@dataclass
class Cluster:
    """The running services and the environment that points recdistill and Airflow at them."""

    postgres: Postgres
    spark: SparkCluster
    mlflow: MlflowServer
    env: dict[str, str]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """`integration/run.sh` names the folder (so its cleanup trap finds the pid file); else a temporary one."""
    given = os.environ.get("RECDISTILL_INTEGRATION_DIR")
    path = Path(given) if given else tmp_path_factory.mktemp("integration")
    (path / "logs").mkdir(parents=True, exist_ok=True)
    path.chmod(0o711)  # PostgreSQL's user must reach its data folder inside
    return path


@contextmanager
def running_cluster(run_dir: Path) -> Iterator[Cluster]:
    """PostgreSQL (databases for Airflow and MLflow), Spark master + worker, MLflow on PostgreSQL; stopped after."""
    with ExitStack() as stack:
        postgres = Postgres(run_dir)
        stack.callback(postgres.stop)
        postgres.start()
        passwords = {"airflow": services.new_password(), "mlflow": services.new_password()}
        postgres.create_databases(passwords)
        spark = SparkCluster(run_dir)
        stack.callback(spark.stop)
        spark.start()
        mlflow = MlflowServer(run_dir, postgres.url("mlflow", passwords["mlflow"]))
        stack.callback(mlflow.stop)
        mlflow.start()
        env = {"AIRFLOW_DB_PASSWORD": passwords["airflow"], "MLFLOW_DB_PASSWORD": passwords["mlflow"],
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow", passwords["airflow"]),
               "MLFLOW_BACKEND_STORE_URI": mlflow.backend_uri,
               "RECDISTILL_SPARK_MASTER": spark.url, SPARK_CONN_ENV: spark_connection(spark.url),
               "RECDISTILL_MLFLOW_URI": mlflow.url,
               # Drivers (spark-submit, `recdistill data`) bind their ports to loopback too.
               "SPARK_LOCAL_IP": services.HOST}
        services.write_env_file(run_dir / "cluster.env", env)
        yield Cluster(postgres, spark, mlflow, env)


@pytest.fixture(scope="session")
def cluster(run_dir: Path) -> Iterator[Cluster]:
    with running_cluster(run_dir) as running:
        yield running


@pytest.fixture(scope="session", autouse=True)
def embedded_process(run_dir: Path) -> Iterator[services.Process]:
    """The embedded run (`integration.steps`), started before anything else, beside the cluster run."""
    root = run_dir / "embedded"
    make_lakehouse(root)
    process = services.Process("embedded run", [sys.executable, "-m", "integration.steps", str(root)],
                               dict(os.environ), run_dir / "logs" / "embedded.log").start(run_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def embedded(embedded_process: services.Process, run_dir: Path) -> Lakehouse:
    """The embedded run, once it has finished."""
    assert embedded_process.popen is not None
    code = embedded_process.popen.wait(timeout=RUN_DEADLINE_S)
    assert code == 0, f"the embedded run failed ({code}):\n{embedded_process.log.read_text(errors='replace')[-6000:]}"
    return lakehouse_at(run_dir / "embedded")


@pytest.fixture(scope="session")
def cluster_lakehouse(cluster: Cluster, run_dir: Path) -> Lakehouse:
    """The same landing files, with Airflow's metadata DB on PostgreSQL (migrated) and every service named."""
    generated = make_lakehouse(run_dir / "cluster")
    lakehouse = Lakehouse(generated.settings, {**generated.env, **cluster.env,
                                               # Airflow's defaults start 32 task processes on 2 cores.
                                               "AIRFLOW__CORE__PARALLELISM": "4"})
    init(lakehouse.env)
    lakehouse.airflow("dags", "reserialize")
    # The features DAG stays paused: `features_runs` unpauses it.
    lakehouse.airflow("dags", "unpause", DISTILL_DAG)
    return lakehouse


@pytest.fixture(scope="session")
def airflow(cluster_lakehouse: Lakehouse, run_dir: Path) -> Iterator[AirflowServices]:
    airflow = AirflowServices(run_dir, cluster_lakehouse.env)
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()


def finished_runs(lakehouse: Lakehouse, airflow: AirflowServices, dag_id: str, run_types: tuple[str, ...],
                  expected: int) -> dict[tuple[str, str], str]:
    """Poll Airflow's DB until `expected` runs of `dag_id` of `run_types` have all ended; their states by
    (run type, logical date)."""
    from sqlalchemy import bindparam, create_engine, text
    from sqlalchemy.pool import NullPool

    # No pooled connection outlives a PostgreSQL restart.
    engine = create_engine(lakehouse.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], poolclass=NullPool)
    query = text("SELECT run_type, logical_date, state FROM dag_run WHERE dag_id = :dag AND run_type IN :types"
                 ).bindparams(bindparam("types", expanding=True))
    deadline = time.monotonic() + RUN_DEADLINE_S
    runs: dict[tuple[str, str], str] = {}
    while time.monotonic() < deadline:
        with engine.connect() as db:
            runs = {(kind, str(day.date())): state
                    for kind, day, state in db.execute(query, {"dag": dag_id, "types": list(run_types)})}
        if len(runs) == expected and set(runs.values()) <= {"success", "failed"}:
            return runs
        time.sleep(5)
    tail = airflow.processes[-1].log.read_text(errors="replace")[-6000:]
    raise AssertionError(f"{dag_id} runs {run_types} not finished after {RUN_DEADLINE_S}s: {runs}\n{tail}")


def backfill(lakehouse: Lakehouse, airflow: AirflowServices, dag_id: str, first: date, last: date,
             expected: int) -> dict[str, str]:
    """A backfill of [first, last] (failed runs reprocessed) executed by the running scheduler; the states of
    the `expected` runs it made, by logical date, once all ended."""
    lakehouse.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", first.isoformat(),
                      "--to-date", last.isoformat(), "--reprocess-behavior", "failed")
    return {day: state for (_, day), state in finished_runs(lakehouse, airflow, dag_id, ("backfill",), expected).items()}


@dataclass(frozen=True)
class FeaturesRuns:
    """The features DAG's runs: the triggered past day and the run the unpause added, then the backfill's."""

    trap: dict[tuple[str, str], str]
    backfill: dict[str, str]


@pytest.fixture(scope="session")
def features_runs(cluster_lakehouse: Lakehouse, airflow: AirflowServices) -> FeaturesRuns:
    """The operator's trap, then a backfill over a day already built (see the module's step 1).

    With depends_on_past and max_active_runs=1 the triggered day and the scheduled one once blocked each other.
    """
    first, last = cluster_lakehouse.days[0], cluster_lakehouse.days[BACKFILL_DAYS - 1]
    cluster_lakehouse.airflow("dags", "trigger", FEATURES_DAG, "--logical-date", f"{first}T00:00:00+00:00")
    cluster_lakehouse.airflow("dags", "unpause", FEATURES_DAG)
    trap = finished_runs(cluster_lakehouse, airflow, FEATURES_DAG, ("manual", "scheduled"), 2)
    return FeaturesRuns(trap, backfill(cluster_lakehouse, airflow, FEATURES_DAG, first, last, BACKFILL_DAYS - 1))


def spark_submit(lakehouse: Lakehouse, master: str, job: str, day: date, *args: str) -> list[str]:
    """The spark-submit the features DAG's operator runs for `job` on `day` (same packages, conf, arguments)."""
    return ["spark-submit", "--master", master, "--name", f"recdistill-{job}-{day}", "--packages", delta_package(),
            *submit_args(lakehouse.settings), job_file(job), "--date", day.isoformat(),
            "--profile", lakehouse.settings.profile, *args]


@dataclass(frozen=True)
class WorkerDrill:
    """What the ingest job did when its worker was killed, and when it was retried."""

    version_before: int
    running_after_kill: bool
    failed_exit_code: int
    version_after_failure: int
    rows_after_failure: int
    retry_exit_code: int
    version_after_retry: int
    rows_after_retry: int


def kill_worker_during_ingest(spark: SparkCluster, lakehouse: Lakehouse, day: date) -> WorkerDrill:
    """Kill the Spark worker while `day`'s ingest runs a task; stop the stuck job; restart the worker; retry."""
    from deltalake import DeltaTable

    from pipeline.tables import EVENTS, table_path

    command = spark_submit(lakehouse, spark.url, "ingest_events", day, "--source", "synthetic")
    events = table_path(lakehouse.settings, EVENTS)
    before = DeltaTable(events).version()
    log = spark.run_dir / "logs" / "drill-ingest-killed.log"
    with log.open("w") as out:
        job = subprocess.Popen(command, env=lakehouse.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            services.wait_until("an executor running a task of the ingest job", spark.executor_running_task, 600, log)
            spark.kill_worker()
            time.sleep(STUCK_JOB_WAIT_S)
            running = job.poll() is None
            # What Airflow does when the task's execution_timeout fires: SIGTERM to the spark-submit.
            job.terminate()
            failed = job.wait(timeout=300)
        finally:
            services.signal_session(job.pid, signal.SIGKILL)
    after_failure = DeltaTable(events).version()
    rows_after_failure = lakehouse.rows(EVENTS, day)
    spark.start_worker()
    retry = subprocess.run(command, env=lakehouse.env, capture_output=True, text=True, timeout=1800)
    (spark.run_dir / "logs" / "drill-ingest-retry.log").write_text(retry.stdout + retry.stderr)
    return WorkerDrill(before, running, failed, after_failure, rows_after_failure, retry.returncode,
                       DeltaTable(events).version(), lakehouse.rows(EVENTS, day))


@pytest.fixture(scope="session")
def worker_drill(cluster: Cluster, cluster_lakehouse: Lakehouse, features_runs: FeaturesRuns) -> WorkerDrill:
    day = cluster_lakehouse.settings.generator.start_date + timedelta(days=BACKFILL_DAYS)
    return kill_worker_during_ingest(cluster.spark, cluster_lakehouse, day)


@pytest.fixture(scope="session")
def cluster_tables(cluster_lakehouse: Lakehouse, worker_drill: WorkerDrill) -> Lakehouse:
    """The days after the backfill by `recdistill data run`, its Spark driver on the cluster."""
    days = cluster_lakehouse.days
    last = cluster_lakehouse.settings.generator.start_date + timedelta(days=cluster_lakehouse.settings.generator.n_days - 1)
    run([sys.executable, "-m", "pipeline.cli", "data", "run", "--from", (days[-1] + timedelta(days=1)).isoformat(),
         "--to", last.isoformat()], cluster_lakehouse.env)
    return cluster_lakehouse


@pytest.fixture(scope="session")
def cluster_teacher(cluster_tables: Lakehouse) -> Lakehouse:
    torchrun_teacher(cluster_tables.env)
    return cluster_tables


@dataclass(frozen=True)
class PostgresDrill:
    registry_before: dict[tuple[str, str], dict[str, str]]


@pytest.fixture(scope="session")
def postgres_drill(cluster: Cluster, cluster_teacher: Lakehouse, airflow: AirflowServices) -> PostgresDrill:
    """PostgreSQL restarted (every connection cut) while the scheduler and the tracking server keep running."""
    before = registry_state(cluster.mlflow.url)
    cluster.postgres.restart()
    return PostgresDrill(before)


@pytest.fixture(scope="session")
def distill_run(cluster_teacher: Lakehouse, airflow: AirflowServices, postgres_drill: PostgresDrill) -> dict[str, str]:
    day = holdout(cluster_teacher.settings)
    return backfill(cluster_teacher, airflow, DISTILL_DAG, day, day, 1)


def registry_state(tracking_uri: str) -> dict[tuple[str, str], dict[str, str]]:
    """Every registered version of recdistill's models: its aliases and tags, by (model, version)."""
    from mlflow import MlflowClient

    from pipeline.config import RegistryConfig

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    config = RegistryConfig()
    state = {}
    for name in (config.student_model, config.teacher_model):
        for found in client.search_model_versions(f"name = '{name}'"):
            version = client.get_model_version(name, found.version)  # search results carry no aliases
            state[(name, str(version.version))] = {**version.tags, "aliases": ",".join(sorted(version.aliases))}
    return state
