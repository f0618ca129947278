"""The one way recdistill opens a Spark session: Delta enabled, local mode unless configured."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pipeline.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # delta-rs readers must be able to read every table: keep deletion vectors off.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Day partitions and event times are UTC everywhere.
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
}

# A local-mode driver serves only this machine: without these it binds its RPC and block-manager ports
# to the machine's external address, unauthenticated. A cluster master needs a reachable driver: set
# spark.driver.host / bindAddress in `spark.conf` (RECDISTILL_SPARK__CONF) for it.
LOCAL_CONF: dict[str, str] = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def _session_conf(settings: Settings) -> dict[str, str]:
    """Every session setting: Delta, loopback binding in local mode, then the config's own `spark.conf`."""
    cfg = settings.spark
    return {**DELTA_CONF, **(LOCAL_CONF if cfg.master.startswith("local") else {}), **cfg.conf}


def get_spark(settings: Settings) -> SparkSession:
    """Return the active session or build one from `settings.spark`.

    Under `spark-submit` the launcher already made the session and resolved jars; there
    `getOrCreate` returns it and the builder's settings only fill what is unset.
    """
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    cfg = settings.spark
    builder = SparkSession.builder
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not under spark-submit: our config picks the master. Under spark-submit, --master rules.
        builder = builder.master(cfg.master)
    builder = (
        builder.appName(cfg.app_name)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.jars.ivy", str(cfg.ivy_dir.resolve()))
    )
    for key, value in _session_conf(settings).items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark session up: master=%s version=%s", cfg.master, spark.version)
    return spark


def delta_package() -> str:
    """Maven coordinates of the Delta jars matching the installed delta-spark and pyspark.

    Named as `configure_spark_with_delta_pip` names them; spark-submit needs them as `--packages`
    because its launcher resolves jars before the job's own builder runs.
    """
    from importlib.metadata import version

    spark_major_minor = ".".join(version("pyspark").split(".")[:2])
    return f"io.delta:delta-spark_{spark_major_minor}_2.13:{version('delta-spark')}"


def submit_conf(settings: Settings) -> dict[str, str]:
    """The `--conf` pairs a spark-submit of a recdistill job needs: Delta, session settings, Ivy cache.

    The same values `get_spark` puts on its builder, given to the launcher too, where memory and
    the Ivy cache must be known before the JVM starts.
    """
    cfg = settings.spark
    return {
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.jars.ivy": str(cfg.ivy_dir.resolve()),
        **_session_conf(settings),
    }


def job_file(job: str) -> str:
    """Path of the installed `spark_jobs.<job>` module: the application file spark-submit runs."""
    from importlib.util import find_spec

    spec = find_spec(f"spark_jobs.{job}")
    if spec is None or spec.origin is None:
        raise ValueError(f"no Spark job module spark_jobs.{job}; expected a file spark_jobs/{job}.py")
    return spec.origin


def main() -> None:
    """`python -m pipeline.spark`: open a session once so Spark's Ivy fetches the Delta jars."""
    from pipeline.config import load_settings

    settings = load_settings()
    spark = get_spark(settings)
    print(f"spark {spark.version} with delta ready (jars cached under {settings.spark.ivy_dir})")
    spark.stop()


if __name__ == "__main__":
    main()
