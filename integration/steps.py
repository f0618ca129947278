"""Commands both runs use, and the embedded run as a program of its own: `python -m integration.steps ROOT`.

conftest.py starts the embedded run first, in a process of its own, and the cluster run goes on beside
it: run in turn, the cluster run left 28 % of the 2 cores idle (vmstat, every 5 s) while it waited on
its scheduler and services, and the embedded run took 144 s after it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

from integration import services
from pipeline.airflow.env import init
from pipeline.config import Settings
from pipeline.train.windows import default_windows
from tests.dags.conftest import Lakehouse, lakehouse_at

DISTILL_DAG = "recdistill_distill"


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


def embedded_run(lakehouse: Lakehouse) -> None:
    """The tiny profile on embedded defaults: every table by local Spark, the teacher under torchrun, the
    distill DAG by `airflow dags test` on SQLite, registry in the lakehouse's SQLite store."""
    run([sys.executable, "-m", "pipeline.cli", "data", "run"], lakehouse.env)
    torchrun_teacher(lakehouse.env)
    init(lakehouse.env)
    lakehouse.airflow("dags", "test", DISTILL_DAG, holdout(lakehouse.settings).isoformat())


if __name__ == "__main__":
    embedded_run(lakehouse_at(Path(sys.argv[1])))
