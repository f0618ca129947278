"""The one way recdistill opens a Spark session: Delta enabled, local mode unless configured."""

from __future__ import annotations

import logging
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
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.jars.ivy", str(cfg.ivy_dir.resolve()))
    )
    for key, value in {**DELTA_CONF, **cfg.conf}.items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark session up: master=%s version=%s", cfg.master, spark.version)
    return spark


def main() -> None:
    """`python -m pipeline.spark`: open a session once so Spark's Ivy fetches the Delta jars."""
    from pipeline.config import load_settings

    settings = load_settings()
    spark = get_spark(settings)
    print(f"spark {spark.version} with delta ready (jars cached under {settings.spark.ivy_dir})")
    spark.stop()


if __name__ == "__main__":
    main()
