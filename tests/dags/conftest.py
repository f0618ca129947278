"""DAG test fixtures: tiny lakehouses, Airflow homes and a real scheduler, all in temporary folders.

Airflow reads AIRFLOW_HOME once, at import, so tests that run Airflow itself do it in child
processes with an explicit environment. Tests that import Airflow in this process (parsing DAGs)
use `airflow_in_process` and import `airflow` or `pipeline.airflow.assets` only inside fixtures and tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import tables
from pipeline.airflow.env import airflow_env
from pipeline.config import Settings, load_settings
from pipeline.process_tree import stop_tree
from pipeline.data.synthetic import generate
from pipeline.tables import TableSpec, content_hash, read_arrow
from spark_jobs import build_features, build_samples, build_sequences, ingest_events

DAG_ID = "recdistill_features"
N_DAYS = 2
# Every table the features DAG writes, in the order its tasks write them.
DAG_TABLES: tuple[TableSpec, ...] = (tables.EVENTS, tables.EVENTS_QUARANTINE, tables.USER_FEATURES,
                                     tables.ITEM_FEATURES, tables.SEQUENCES, tables.TRAINING_SAMPLES)
RUNS_DEADLINE_S = 1500  # a guard against a hung scheduler, far above a normal run


@pytest.fixture(scope="session")
def airflow_in_process(tmp_path_factory) -> dict[str, str]:
    """Point this process's Airflow at a temporary home, once, before anything imports Airflow."""
    assert "airflow" not in sys.modules, ("Airflow was imported before the DAG tests set AIRFLOW_HOME: import "
                                          "airflow and pipeline.airflow.assets inside fixtures and tests, not at module level")
    env = airflow_env(tmp_path_factory.mktemp("airflow"))
    # Only Airflow's own settings: the recdistill ones would change every later test's load_settings().
    os.environ.update({key: value for key, value in env.items() if key.startswith("AIRFLOW")})
    return env


@pytest.fixture(scope="session")
def dagbag(airflow_in_process):
    """dags/ parsed in this process for the tiny profile."""
    from airflow.models import DagBag

    from pipeline.airflow.env import SPARK_POOL, TRAINING_POOL

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECDISTILL_PROFILE", "tiny")
        # known_pools makes a task in a pool that `init` does not create an import error.
        return DagBag(dag_folder=airflow_in_process["AIRFLOW__CORE__DAGS_FOLDER"],
                      known_pools={"default_pool", SPARK_POOL, TRAINING_POOL})


@dataclass(frozen=True)
class Lakehouse:
    """A tiny-profile lakehouse with generated landing files, and the Airflow environment that uses it."""

    settings: Settings
    env: dict[str, str]

    @property
    def days(self) -> list[date]:
        start = self.settings.generator.start_date
        return [start + timedelta(days=i) for i in range(N_DAYS)]

    def airflow(self, *args: str) -> None:
        """Run `airflow ARGS…` in this environment; fail the test with its output if it fails."""
        done = subprocess.run(["airflow", *args], env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"

    def hashes(self) -> dict[str, str]:
        """Content hash of every DAG table over the test days; source files relative to the landing folder."""
        return {spec.name: content_hash(self._rows(spec), spec.key) for spec in DAG_TABLES}

    def rows(self, spec: TableSpec, day: date) -> int:
        """Rows of `spec` on `day`."""
        return read_arrow(self.settings, spec, [day]).num_rows

    def _rows(self, spec: TableSpec) -> pa.Table:
        table = read_arrow(self.settings, spec, self.days)
        if "source_file" not in table.column_names:
            return table
        # Lakehouses compared here hold the same landing files under different roots.
        relative = pc.replace_substring_regex(table.column("source_file"), "^.*/landing/", "")
        return table.set_column(table.column_names.index("source_file"), "source_file", relative)


def make_lakehouse(root: Path) -> Lakehouse:
    """Generate tiny landing files under `root`; its Airflow home beside them is made by `init`."""
    lakehouse = lakehouse_at(root)
    generate(lakehouse.settings.generator, lakehouse.settings.lakehouse.landing, progress=False)
    return lakehouse


def lakehouse_at(root: Path) -> Lakehouse:
    """The tiny-profile lakehouse under `root` (made by `make_lakehouse`, maybe in another process)."""
    settings = load_settings("tiny", lakehouse={"root": str(root / "lakehouse")})
    env = airflow_env(root / "airflow", {**_base_env(), "RECDISTILL_PROFILE": "tiny",
                                         "RECDISTILL_LAKEHOUSE_ROOT": str(settings.lakehouse.root)})
    return Lakehouse(settings, env)


def _base_env() -> dict[str, str]:
    """This process's environment without any Airflow or recdistill settings a developer's shell has."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECDISTILL_"))}


def build_one_by_one(spark, lakehouse: Lakehouse) -> None:
    """Each day's four jobs in DAG order, one day after another: what single daily runs produce."""
    for day in lakehouse.days:
        ingest_events.run(spark, lakehouse.settings, day)
        for job in (build_features, build_sequences, build_samples):
            job.run(spark, lakehouse.settings, day)


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory) -> Lakehouse:
    """A lakehouse built by the jobs themselves, day by day, in this process."""
    lakehouse = make_lakehouse(tmp_path_factory.mktemp("reference"))
    build_one_by_one(spark, lakehouse)
    return lakehouse


def copy_tables(source: Lakehouse, target: Lakehouse) -> None:
    """Give `target` the Delta tables of `source` (their logs hold only table-relative paths)."""
    shutil.copytree(source.settings.lakehouse.tables, target.settings.lakehouse.tables)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_airflow(lakehouse: Lakehouse, schedule: bool = False) -> Iterator[tuple[Path, list[int]]]:
    """A real scheduler (LocalExecutor) and the execution API its task processes report to.

    Yields the folder of their logs and their process ids. Unless `schedule`, the scheduler creates
    no interval runs, so the only runs are the ones a test asks for. Task logs are files on this
    machine: the scheduler starts no log server (it would listen on every interface).
    """
    port = _free_port()
    env = {**lakehouse.env,
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule)}
    logs = Path(env["AIRFLOW_HOME"]) / "services"
    logs.mkdir()
    commands = {"api-server": ["airflow", "api-server", "--apps", "execution", "--port", str(port), "--workers", "1"],
                "scheduler": ["airflow", "scheduler", "--skip-serve-logs"]}
    with ExitStack() as stack:
        pids = []
        for name, command in commands.items():
            log = stack.enter_context((logs / f"{name}.log").open("w"))
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)
            pids.append(process.pid)
        yield logs, pids


def _stop(process: subprocess.Popen) -> None:
    """Stop the service and every process it started (executor workers, task processes, spark-submits)."""
    stop_tree(process.pid, grace_s=60)
    process.wait()


def dag_runs(lakehouse: Lakehouse, run_types: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """State of each run of the DAG of `run_types`, by (run type, logical date), from the metadata DB."""
    database = Path(lakehouse.env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(f"SELECT run_type, logical_date, state FROM dag_run WHERE dag_id = ? "
                          f"AND run_type IN ({', '.join('?' * len(run_types))})", (DAG_ID, *run_types)).fetchall()
    return {(run_type, logical_date[:10]): state for run_type, logical_date, state in rows}


def wait_for_runs(lakehouse: Lakehouse, logs: Path, run_types: tuple[str, ...],
                  expected_runs: int) -> dict[tuple[str, str], str]:
    """Poll the metadata DB until `expected_runs` runs of `run_types` have all finished; their states."""
    deadline = time.monotonic() + RUNS_DEADLINE_S
    while time.monotonic() < deadline:
        runs = dag_runs(lakehouse, run_types)
        if len(runs) == expected_runs and set(runs.values()) <= {"success", "failed"}:
            return runs
        time.sleep(3)
    scheduler_log = (logs / "scheduler.log").read_text()[-6000:]
    raise AssertionError(f"runs not finished after {RUNS_DEADLINE_S}s: {runs}\n{scheduler_log}")


