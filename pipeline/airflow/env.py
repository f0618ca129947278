"""The environment a standalone Airflow needs to run recdistill's DAGs; `make airflow` and tests share it.

An unknown Spark connection makes SparkSubmitOperator fall back to YARN without a word, so the
`spark_default` connection is always defined here (local mode unless the caller's environment
already names one), next to the metadata DB (SQLite in the home unless the environment names
another), the DAGs folder and this venv's `spark-submit`.

    python -m pipeline.airflow.env                 # print the environment as `export` lines
    python -m pipeline.airflow.env init            # migrate the metadata DB, create the Spark pool
    python -m pipeline.airflow.env exec CMD [ARG…] # run CMD in it, e.g. `exec airflow standalone`
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = REPO_ROOT / ".cache" / "airflow"
SPARK_CONN_ID = "spark_default"
SPARK_CONN_ENV = f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}"
LOCAL_SPARK_MASTER = "local[*]"
# Every Spark task runs in this pool: its slots bound how many Spark drivers one Airflow starts at once.
SPARK_POOL = "spark"
SPARK_POOL_SLOTS = 1
# Teacher and student training share the machine's cores: one training task at a time.
TRAINING_POOL = "training"
TRAINING_POOL_SLOTS = 1


def spark_connection(master: str) -> str:
    """An Airflow connection, in its JSON form, whose master spark-submit receives verbatim."""
    return json.dumps({"conn_type": "spark", "host": master})


def airflow_env(home: Path = DEFAULT_HOME, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus everything Airflow needs for recdistill.

    Paths are absolute because Airflow's workers and spark-submit do not run in the repo root.
    """
    base = dict(os.environ if base is None else base)
    home = home.resolve()
    venv_bin = Path(sys.executable).parent
    lakehouse = Path(base.get("RECDISTILL_LAKEHOUSE_ROOT", REPO_ROOT / "lakehouse")).resolve()
    ivy = Path(base.get("RECDISTILL_SPARK__IVY_DIR", REPO_ROOT / ".cache" / "ivy")).resolve()
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SQLite in the home unless the caller names a database (PostgreSQL beside services, docs/deploy.md).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": base.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                                                        f"sqlite:///{home / 'airflow.db'}"),
        # The api-server answers this machine only unless the caller's environment says otherwise.
        "AIRFLOW__API__HOST": base.get("AIRFLOW__API__HOST", "127.0.0.1"),
        SPARK_CONN_ENV: base.get(SPARK_CONN_ENV, spark_connection(LOCAL_SPARK_MASTER)),
        # The operator calls `spark-submit` from PATH; its driver must be this venv's Python.
        "PATH": os.pathsep.join(p for p in (str(venv_bin), base.get("PATH", "")) if p),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RECDISTILL_LAKEHOUSE_ROOT": str(lakehouse),
        "RECDISTILL_SPARK__IVY_DIR": str(ivy),
    }


def init(env: Mapping[str, str]) -> None:
    """Migrate the metadata DB of `env` and create the Spark and training pools; safe to repeat."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    commands = [
        ["airflow", "db", "migrate"],
        ["airflow", "pools", "set", SPARK_POOL, str(SPARK_POOL_SLOTS), "Spark jobs of recdistill"],
        ["airflow", "pools", "set", TRAINING_POOL, str(TRAINING_POOL_SLOTS), "Teacher and student training"],
    ]
    for command in commands:
        subprocess.run(command, env=dict(env), check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Airflow environment for recdistill's DAGs.")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="AIRFLOW_HOME (default .cache/airflow)")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("init", help="migrate the metadata DB and create the Spark and training pools")
    run = sub.add_parser("exec", help="run a command in the environment")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    env = airflow_env(args.home)
    if args.action == "init":
        init(env)
    elif args.action == "exec":
        if not args.command:
            parser.error("exec needs a command, e.g. `exec airflow standalone`")
        os.execvpe(args.command[0], args.command, env)
    else:
        changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(changed.items())))


if __name__ == "__main__":
    main()
