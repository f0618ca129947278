"""pipeline.airflow.env: SQLite and local Spark out of the box, the services an environment names otherwise."""

from __future__ import annotations

import json

from pipeline.airflow.env import SPARK_CONN_ENV, airflow_env, spark_connection


def test_defaults_are_sqlite_in_the_home_and_local_spark(tmp_path):
    env = airflow_env(tmp_path / "airflow", base={"PATH": "/usr/bin"})
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert json.loads(env[SPARK_CONN_ENV]) == {"conn_type": "spark", "host": "local[*]"}


def test_a_metadata_database_and_a_spark_master_in_the_environment_are_kept(tmp_path):
    url = "postgresql+psycopg2://airflow:secret@127.0.0.1:5433/airflow"
    base = {"PATH": "/usr/bin", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            SPARK_CONN_ENV: spark_connection("spark://127.0.0.1:7077")}
    env = airflow_env(tmp_path / "airflow", base=base)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert json.loads(env[SPARK_CONN_ENV])["host"] == "spark://127.0.0.1:7077"
