"""Data-plane throughput: synthetic events → training samples at two sizes, side by side.

    .venv/bin/python -m benchmarks.spark_jobs [--sizes 1000000 10000000] [--teacher-length 1000]

Both sizes keep days and per-user activity equal and scale users, so time(large)/time(small)
measures how each job scales with events (goal: ≤ the size ratio, i.e. linear or better).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._memory import PeakRSS
from pipeline.config import Settings, load_settings
from pipeline.data.synthetic import generate
from pipeline.spark import get_spark
from spark_jobs import build_features, build_samples, build_sequences, ingest_events

JOBS = {"ingest": ingest_events, "features": build_features, "sequences": build_sequences,
        "samples": build_samples}
N_DAYS = 10
EVENTS_PER_USER_PER_DAY = 10  # 1 request × slate of 10


def settings_for(events: int, teacher_length: int, root: Path) -> Settings:
    users = max(1, events // (N_DAYS * EVENTS_PER_USER_PER_DAY))
    return load_settings(
        "demo",
        lakehouse={"root": str(root)},
        spark={"driver_memory": "8g", "shuffle_partitions": 8},
        generator={"n_users": users, "n_items": max(1000, users), "n_days": N_DAYS,
                   "requests_per_user_per_day": 1.0, "slate_size": EVENTS_PER_USER_PER_DAY},
        sequences={"teacher_length": teacher_length, "student_length": 50},
    )


def run_size(events: int, teacher_length: int, root: Path, console: Console) -> dict[str, dict[str, float]]:
    settings = settings_for(events, teacher_length, root)
    shutil.rmtree(root, ignore_errors=True)
    summary = generate(settings.generator, settings.lakehouse.landing, progress=False)
    console.print(f"generated {summary.events:,} events in {summary.seconds:.0f}s")
    days = [settings.generator.start_date + timedelta(days=i) for i in range(N_DAYS)]
    spark = get_spark(settings)
    results: dict[str, dict[str, float]] = {"events": {"rows": summary.events}}
    for name, job in JOBS.items():
        with PeakRSS() as peak:
            started = time.perf_counter()
            for day in days:
                job.run(spark, settings, day)
            seconds = time.perf_counter() - started
        results[name] = {"seconds": seconds, "rows_per_s": summary.events / seconds,
                         "peak_rss_gib": peak.peak_bytes / 2**30}
        console.print(f"{events:,}: {name} {seconds:.1f}s")
    spark.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1_000_000, 10_000_000])
    parser.add_argument("--teacher-length", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/spark_jobs"))
    args = parser.parse_args()
    console = Console()
    small, large = args.sizes
    results = {size: run_size(size, args.teacher_length, args.workdir / str(size), console) for size in (small, large)}
    table = Table(title=f"spark jobs, L_teacher={args.teacher_length}, {date.today()} "
                        f"({results[small]['events']['rows']:,} vs {results[large]['events']['rows']:,} events)")
    for column in ("job", f"rows/s @{small:,}", f"rows/s @{large:,}", "time ratio", "size ratio",
                   f"peak RSS GiB @{small:,}", f"peak RSS GiB @{large:,}"):
        table.add_column(column, justify="right")
    size_ratio = results[large]["events"]["rows"] / results[small]["events"]["rows"]
    for job in JOBS:
        a, b = results[small][job], results[large][job]
        table.add_row(job, f"{a['rows_per_s']:,.0f}", f"{b['rows_per_s']:,.0f}", f"{b['seconds'] / a['seconds']:.2f}",
                      f"{size_ratio:.2f}", f"{a['peak_rss_gib']:.1f}", f"{b['peak_rss_gib']:.1f}")
    console.print(table)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    for size in (small, large):
        shutil.rmtree(args.workdir / str(size), ignore_errors=True)


if __name__ == "__main__":
    main()
