"""Commands both runs use, and the embedded run as a program of its own: `python -m integration.steps ROOT`.

conftest.py starts the embedded run first, in a process of its own, and the cluster run goes on beside
it: run in turn, the cluster run left 28 % of the 2 cores idle (vmstat, every 5 s) while it waited on
its scheduler and services, and the embedded run took 144 s after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from deltalake import DeltaTable

from integration import services
from pipeline.airflow.env import init
from pipeline.config import Settings
from pipeline.tables import EVENTS_QUARANTINE, table_path
from pipeline.train.windows import default_windows
from tests.dags.conftest import DAG_ID as FEATURES_DAG, DAG_TABLES, Lakehouse, lakehouse_at

DISTILL_DAG = "recdistill_distill"
# What `rebuild_a_day` saw, beside the embedded lakehouse, for the tests to read.
REBUILD_RECORD = "rebuild.json"


def run(command: list[str], env: dict[str, str], timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail with the tail of its output if it fails."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def torchrun_teacher(env: dict[str, str]) -> None:
    """`recdistill teacher train` on the profile's teacher days, 2 gloo processes, then its registration."""
    env = {**env, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", services.HOST, "--master-port", str(services.free_port()),
         "-m", "pipeline.cli", "teacher", "train"], env)
    run([sys.executable, "-m", "pipeline.cli", "teacher", "register"], env)


def holdout(settings: Settings) -> date:
    return default_windows(settings).holdout


def rebuild_a_day(lakehouse: Lakehouse) -> dict:
    """`airflow dags test` of the features DAG for a day the data run built, each task a local spark-submit:
    each table's Delta version and rows of the day, and the tables' content, before and after."""
    day = lakehouse.days[-1]
    # Clean synthetic data leaves nothing to quarantine, and replacing nothing commits no version.
    written = [spec for spec in DAG_TABLES if spec is not EVENTS_QUARANTINE]

    def versions() -> dict[str, int]:
        return {spec.name: DeltaTable(table_path(lakehouse.settings, spec)).version() for spec in written}

    before, content_before = versions(), lakehouse.hashes()
    lakehouse.airflow("dags", "test", FEATURES_DAG, day.isoformat())
    return {"day": day.isoformat(), "versions_before": before, "versions_after": versions(),
            "rows_after": {spec.name: lakehouse.rows(spec, day) for spec in written},
            "same_content": content_before == lakehouse.hashes()}


def embedded_run(lakehouse: Lakehouse) -> None:
    """The tiny profile on embedded defaults: every table by local Spark (one day rebuilt by the features
    DAG's `airflow dags test`), the teacher under torchrun, the distill DAG by `airflow dags test` on SQLite,
    registry in the lakehouse's SQLite store."""
    run([sys.executable, "-m", "pipeline.cli", "data", "run"], lakehouse.env)
    init(lakehouse.env)
    rebuilt = rebuild_a_day(lakehouse)
    (lakehouse.settings.lakehouse.root.parent / REBUILD_RECORD).write_text(json.dumps(rebuilt, indent=1))
    torchrun_teacher(lakehouse.env)
    lakehouse.airflow("dags", "test", DISTILL_DAG, holdout(lakehouse.settings).isoformat())


if __name__ == "__main__":
    embedded_run(lakehouse_at(Path(sys.argv[1])))
