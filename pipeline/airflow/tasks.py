"""Operators the DAGs share, so every Spark task is submitted the same way.

Kept apart from `pipeline.airflow.env`, which must not import Airflow (it sets Airflow up).
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset

from pipeline.airflow.env import SPARK_CONN_ID, SPARK_POOL
from pipeline.config import Settings
from pipeline.spark import job_file, submit_conf


def spark_job(settings: Settings, task_id: str, job: str, outlets: list[Asset], *extra_args: str,
              dated: bool = True) -> SparkSubmitOperator:
    """One spark-submit of `spark_jobs.<job>` with Delta, in the Spark pool, writing the tables behind `outlets`.

    A dated job gets the run's logical date (`--date {{ ds }}`); an undated one (the stream) runs
    over whatever is new. The Delta jars come in `conf` (the files set-up resolved, so Ivy stays quiet).
    """
    dates = ["--date", "{{ ds }}"] if dated else []
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN_ID,
        application=job_file(job),
        application_args=[*dates, "--profile", settings.profile, *extra_args],
        conf=submit_conf(settings),
        name=f"recdistill-{task_id}" + ("-{{ ds }}" if dated else ""),
        pool=SPARK_POOL,
        outlets=outlets,
    )
