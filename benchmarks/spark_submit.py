"""One day's four feature jobs as spark-submits (what each Airflow task runs), per JVM flag set, side by side.

    .venv/bin/python -m benchmarks.spark_submit [--profile tiny] [--rounds 2]

On tiny data a spark-submit is almost all JVM start-up and warm-up, so its flags decide how long a
features DAG run takes (and the DAG tests with it). Each round runs the day's jobs once under every
flag set, in turn, on a fresh copy of the same landing files; reported: wall and CPU seconds (the
spark-submit and everything it started) per set, and each set's ratio to the first.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, load_settings
from pipeline.data.synthetic import generate
from pipeline.spark import job_file, submit_args

JOBS = ("ingest_events", "build_features", "build_sequences", "build_samples")
# Flag sets: (submit_java_options, class_archive): Spark's defaults (C1 and C2 JIT), C1 only (the tiny
# profile's `spark.submit_java_options`), and C1 with the class-data archive set-up builds (both, as tiny runs).
FLAG_SETS = {"JIT C1 + C2 (JVM default)": ("", False), "JIT C1 only": ("-XX:TieredStopAtLevel=1", False),
             "JIT C1 + class-data archive (tiny profile)": ("-XX:TieredStopAtLevel=1", True)}


def run_day(settings: Settings, java_options: str, archive: bool, day: date) -> tuple[float, float]:
    """Wall and CPU seconds of the day's four spark-submits under `java_options`, with or without the archive."""
    spark = settings.spark.model_copy(update={"submit_java_options": java_options, "class_archive": archive})
    conf = submit_args(settings.model_copy(update={"spark": spark}))
    env = {**os.environ, "RECDISTILL_PROFILE": settings.profile,
           "RECDISTILL_LAKEHOUSE_ROOT": str(settings.lakehouse.root),
           "RECDISTILL_SPARK__SUBMIT_JAVA_OPTIONS": java_options,
           "RECDISTILL_SPARK__CLASS_ARCHIVE": str(archive).lower(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    for job in JOBS:
        command = ["spark-submit", "--master", settings.spark.master,
                   *conf,
                   job_file(job), "--date", day.isoformat(), "--profile", settings.profile]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{job} failed under {java_options!r} (archive: {archive}):\n{done.stderr[-3000:]}")
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in FLAG_SETS}
    with tempfile.TemporaryDirectory() as scratch:
        template = load_settings(args.profile, lakehouse={"root": str(Path(scratch) / "template")})
        generate(template.generator, template.lakehouse.landing, progress=False)
        for round_ in range(args.rounds):
            for index, (name, flags) in enumerate(FLAG_SETS.items()):
                settings = load_settings(args.profile, lakehouse={"root": str(Path(scratch) / f"run-{round_}-{index}")})
                shutil.copytree(template.lakehouse.landing, settings.lakehouse.landing)
                wall, cpu = run_day(settings, *flags, settings.generator.start_date)
                results[name].append((wall, cpu))
                console.print(f"round {round_ + 1}: {name}: {wall:.1f} s wall, {cpu:.1f} s CPU")
                shutil.rmtree(settings.lakehouse.root)
    table = Table(title=f"a day's {len(JOBS)} spark-submits, profile {args.profile}, mean of {args.rounds} rounds")
    for column in ("JVM flags", "wall s", "CPU s", "wall ratio", "CPU ratio"):
        table.add_column(column)
    first_wall, first_cpu = (sum(x[i] for x in next(iter(results.values()))) / args.rounds for i in (0, 1))
    for name, runs in results.items():
        wall, cpu = (sum(x[i] for x in runs) / args.rounds for i in (0, 1))
        table.add_row(name, f"{wall:.1f}", f"{cpu:.1f}", f"{wall / first_wall:.2f}×", f"{cpu / first_cpu:.2f}×")
    console.print(table)


if __name__ == "__main__":
    main()
