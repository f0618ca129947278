"""DAG test fixtures: tiny lakehouses and Airflow homes, all in temporary folders.

The features DAG under a real scheduler (a backfill, the operator's trap, an `airflow dags test` rebuild)
runs in the integration run (integration/), on PostgreSQL and a Spark cluster, which `.ci/run` runs too.

Airflow reads AIRFLOW_HOME once, at import, so tests that run Airflow itself do it in child
processes with an explicit environment. Tests that import Airflow in this process (parsing DAGs)
use `airflow_in_process` and import `airflow` or `pipeline.airflow.assets` only inside fixtures and tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import tables
from pipeline.airflow.env import airflow_env
from pipeline.config import Settings, load_settings
from pipeline.data.synthetic import generate
from pipeline.tables import TableSpec, content_hash, read_arrow

DAG_ID = "recdistill_features"
N_DAYS = 2
# Every table the features DAG writes, in the order its tasks write them.
DAG_TABLES: tuple[TableSpec, ...] = (tables.EVENTS, tables.EVENTS_QUARANTINE, tables.USER_FEATURES,
                                     tables.ITEM_FEATURES, tables.SEQUENCES, tables.TRAINING_SAMPLES)


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
    # The released path pinned (`registry.served_path`): measured, it follows the machine's timing, and the
    # integration run compares two lakehouses' releases to the last digit.
    settings = load_settings("tiny", lakehouse={"root": str(root / "lakehouse")}, registry={"served_path": "w8a16"})
    env = airflow_env(root / "airflow", {**_base_env(), "RECDISTILL_PROFILE": "tiny",
                                         "RECDISTILL_LAKEHOUSE_ROOT": str(settings.lakehouse.root),
                                         "RECDISTILL_REGISTRY__SERVED_PATH": settings.registry.served_path})
    return Lakehouse(settings, env)


def _base_env() -> dict[str, str]:
    """This process's environment without any Airflow or recdistill settings a developer's shell has."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECDISTILL_"))}
