"""The environment a standalone Airflow needs to run recdistill's DAGs; `make airflow` and tests share it.

An unknown Spark connection makes SparkSubmitOperator fall back to YARN without a word, so the
`spark_default` connection is always defined here (local mode unless the caller's environment
already names one), next to the metadata DB (SQLite in the home unless the environment names
another), the DAGs folder and this venv's `spark-submit`.

It also sizes Airflow from `settings.airflow` (task slots, LocalExecutor workers, API and parsing
processes; 2-core defaults) and runs what `airflow standalone` runs (api-server, scheduler,
dag-processor, triggerer; without log servers) under a supervisor that stops every process it
started on Ctrl+C or SIGTERM (`make airflow`).

    python -m pipeline.airflow.env                 # print the environment as `export` lines
    python -m pipeline.airflow.env init            # migrate the metadata DB, create the Spark pool
    python -m pipeline.airflow.env standalone      # init, then Airflow's components until Ctrl+C/SIGTERM
    python -m pipeline.airflow.env exec CMD [ARG…] # run CMD in it, e.g. `exec airflow dags list`
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import PROJECT_ROOT, Settings, load_settings

SPARK_CONN_ID = "spark_default"
SPARK_CONN_ENV = f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}"
LOCAL_SPARK_MASTER = "local[*]"
# Every Spark task runs in this pool: its slots bound how many Spark drivers one Airflow starts at once.
SPARK_POOL = "spark"
SPARK_POOL_SLOTS = 1
# Teacher and student training share the machine's cores: one training task at a time.
TRAINING_POOL = "training"
TRAINING_POOL_SLOTS = 1


# What `airflow standalone` starts, started here instead: its scheduler and triggerer also serve task
# logs on every interface (Airflow 3.3's log server hard-codes host ""). On one machine the api-server
# reads task logs from the shared log folder, so no log server is needed and no port opens beyond
# 127.0.0.1 (the api-server's host is AIRFLOW__API__HOST).
COMPONENTS = (
    ("airflow", "api-server"),
    ("airflow", "scheduler", "--skip-serve-logs"),
    ("airflow", "dag-processor"),
    ("airflow", "triggerer", "--skip-serve-logs"),
)


def spark_connection(master: str) -> str:
    """An Airflow connection, in its JSON form, whose master spark-submit receives verbatim."""
    return json.dumps({"conn_type": "spark", "host": master})


def airflow_env(home: Path | None = None, base: Mapping[str, str] | None = None,
                settings: Settings | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus everything Airflow needs for recdistill.

    `home` defaults to `settings.airflow.home`. Paths are absolute because Airflow's workers and
    spark-submit do not run in the project root.
    """
    base = dict(os.environ if base is None else base)
    settings = settings or load_settings(base.get("RECDISTILL_PROFILE"))
    size = settings.airflow
    home = (home or size.home).resolve()
    venv_bin = Path(sys.executable).parent
    lakehouse = Path(base.get("RECDISTILL_LAKEHOUSE_ROOT", settings.lakehouse.root)).resolve()
    ivy = Path(base.get("RECDISTILL_SPARK__IVY_DIR", settings.spark.ivy_dir)).resolve()
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SQLite in the home unless the caller names a database (PostgreSQL beside services, docs/deploy.md).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": base.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                                                        f"sqlite:///{home / 'airflow.db'}"),
        # The api-server answers this machine only unless the caller's environment says otherwise.
        "AIRFLOW__API__HOST": base.get("AIRFLOW__API__HOST", "127.0.0.1"),
        "AIRFLOW__CORE__EXECUTOR": base.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        # Sized for the machine: LocalExecutor starts `parallelism` workers up front (32 by default).
        "AIRFLOW__CORE__PARALLELISM": str(size.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(size.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": str(size.max_active_runs),
        "AIRFLOW__API__WORKERS": str(size.api_workers),
        "AIRFLOW__API__PORT": str(size.port),
        # Task processes report to the execution API, which Airflow otherwise assumes on localhost:8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": base.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                                                            f"http://127.0.0.1:{size.port}/execution/"),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(size.parsing_processes),
        # A busy 2-core box answered task processes' API calls after Airflow's default 5 s: the task failed.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
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
    parser.add_argument("--home", type=Path, default=None, help="AIRFLOW_HOME (default: airflow.home, .cache/airflow)")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("init", help="migrate the metadata DB and create the Spark and training pools")
    sub.add_parser("standalone", help="init, then Airflow's components; Ctrl+C or SIGTERM stops all they started")
    run = sub.add_parser("exec", help="run a command in the environment")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    env = airflow_env(args.home)
    if args.action == "init":
        init(env)
    elif args.action == "standalone":
        from pipeline.process_tree import run_supervised

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        init(env)
        print(f"Airflow UI: http://127.0.0.1:{env['AIRFLOW__API__PORT']} (user admin, password in "
              f"{Path(env['AIRFLOW_HOME']) / 'simple_auth_manager_passwords.json.generated'}); "
              f"the DAGs start paused. Ctrl+C stops every Airflow process.", flush=True)
        sys.exit(run_supervised(COMPONENTS, env))
    elif args.action == "exec":
        if not args.command:
            parser.error("exec needs a command, e.g. `exec airflow dags list`")
        os.execvpe(args.command[0], args.command, env)
    else:
        changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(changed.items())))


if __name__ == "__main__":
    main()
