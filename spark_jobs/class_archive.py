"""Set-up's warm-up application: every job on two generated tiny days, in one JVM that set-up archives.

`python -m pipeline.spark` spark-submits this file with `-XX:ArchiveClassesAtExit`: the JVM writes the
classes these jobs loaded (Spark, Scala, Delta's) to a class-data archive as it exits, and later Spark
JVMs map them from it instead of loading and verifying each class again (see `pipeline.spark`).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from pipeline.config import load_settings
from pipeline.data.synthetic import generate
from pipeline.spark import get_spark
from spark_jobs import build_features, build_samples, build_sequences, ingest_events


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scratch", required=True, type=Path, help="an empty folder for the tiny lakehouse")
    args = parser.parse_args(argv)
    settings = load_settings("tiny", lakehouse={"root": str(args.scratch / "lakehouse")})
    generate(settings.generator, settings.lakehouse.landing, progress=False)
    spark = get_spark(settings)
    # Two days: the second reads the first's history, the paths a single day leaves cold.
    for day in (settings.generator.start_date, settings.generator.start_date + timedelta(days=1)):
        ingest_events.run(spark, settings, day)
        for job in (build_features, build_sequences, build_samples):
            job.run(spark, settings, day)
    spark.stop()


if __name__ == "__main__":
    main()
