"""Distillation quality: teacher vs base, KD and debiased students on generated data, Coat and ML-100K.

    .venv/bin/python -m benchmarks.distill_quality [--generated] [--coat] [--ml-100k] [--profile demo] [--seeds N]

Each selected dataset goes through the real pipeline: landing files (generator or converter) →
Spark jobs → teacher on the parameter server → neutral-position logit dump → students per seed →
`pipeline.train.evaluate.evaluate` on the held-out date (`pipeline.train.windows.default_windows`),
which also logs every metric to the dataset's MLflow store. Coat's held-out date is its
random-exposure set (the unbiased test); ML-100K spans 213 days, so it uses the contiguous window
`--ml-100k-days` ending on its last busy day, and as its last weeks hold few ratings a day its
students train on `--ml-100k-window-days` days (2 days gave 0.36–0.82 validation AUC across seeds).
The table and a plot land in `--workdir`.
Goals (issue #5): KD transferability ≥ 60 % with a teacher gain ≥ +0.01 AUC on generated data;
on Coat's random-exposure test the debiased student beats plain KD.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, load_settings
from pipeline.train.evaluate import EvaluationReport, evaluate
from pipeline.train.windows import default_windows

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KINDS = ("base", "kd", "debiased")
COAT_DAYS = 8  # the converter's 7 biased days, then the random-exposure day
ML100K_LAST_BUSY_DAY = date(1998, 4, 22)


@dataclass
class Dataset:
    name: str
    settings: Settings
    source: str
    landing: Callable[[], object]  # writes the landing files


def generated(profile: str, root: Path, student: dict[str, object]) -> Dataset:
    from pipeline.data.synthetic import generate

    settings = load_settings(profile, lakehouse={"root": str(root)}, student=student)
    return Dataset(f"generated ({profile})", settings, "synthetic",
                   lambda: generate(settings.generator, settings.lakehouse.landing, progress=False))


def converted(kind: str, src: Path, root: Path, start: date, n_days: int, profile: str,
              student: dict[str, object]) -> Dataset:
    from pipeline.data.converters import convert

    settings = load_settings(profile, lakehouse={"root": str(root)},
                             generator={"start_date": start, "n_days": n_days}, student=student)
    return Dataset(kind, settings, kind, lambda: convert(kind, src, settings.lakehouse.landing))


def build_tables(dataset: Dataset, console: Console) -> None:
    """Landing files → `training_samples`, with the jobs' multi-date mode where they have one."""
    from pipeline.spark import get_spark
    from spark_jobs import build_features, build_samples, build_sequences, ingest_events

    settings = dataset.settings
    days = [settings.generator.start_date + timedelta(days=i) for i in range(settings.generator.n_days)]
    started = time.perf_counter()
    dataset.landing()
    spark = get_spark(settings)
    for day in days:
        ingest_events.run(spark, settings, day, sources=[dataset.source])
    for job in (build_features, build_sequences, build_samples):
        if hasattr(job, "run_range"):
            job.run_range(spark, settings, days[0], days[-1])
        else:
            for day in days:
                job.run(spark, settings, day)
    console.print(f"{dataset.name}: tables for {len(days)} days in {time.perf_counter() - started:.0f}s")


def train_and_evaluate(settings: Settings, console: Console) -> tuple[EvaluationReport, float]:
    """Teacher, logits, every student kind per seed, then the held-out evaluation; returns it and teacher seconds."""
    from pipeline.train.distill import train_student
    from pipeline.train.logit_dump import dump_logits
    from pipeline.train.teacher import train_teacher

    # A fresh artifacts folder: no warm start from, or reuse of, an earlier run's teacher and students.
    shutil.rmtree(settings.lakehouse.artifacts, ignore_errors=True)
    windows = default_windows(settings)
    started = time.perf_counter()
    teacher = train_teacher(settings, windows.teacher_train, [windows.calibration])
    teacher_seconds = time.perf_counter() - started
    for day in [*windows.train, windows.calibration, windows.holdout]:
        dump_logits(settings, day, teacher.version)
    for seed in settings.student.seeds:
        for kind in KINDS:
            train_student(settings, kind, windows.train, seed, None if kind == "base" else teacher.version,
                          windows.calibration)
    console.print(f"teacher {teacher.version}: {teacher_seconds:.0f}s; students: "
                  f"{time.perf_counter() - started - teacher_seconds:.0f}s")
    return evaluate(settings, windows.holdout, teacher.version), teacher_seconds


def row_of(name: str, report: EvaluationReport, teacher_seconds: float) -> dict[str, object]:
    metrics, transfer = report.metrics, report.transferability
    row: dict[str, object] = {"dataset": name, "holdout": report.day, "teacher_seconds": round(teacher_seconds, 1)}
    for model in ("teacher", *KINDS):
        row[f"{model}_auc"] = metrics[model]["auc"]
        row[f"{model}_auc_std"] = metrics[model].get("auc_std", 0.0)
        row[f"{model}_random_auc"] = metrics[model].get("random_auc", float("nan"))
    for kind in ("kd", "debiased"):
        row[f"{kind}_transfer_mean"] = transfer.get(f"{kind}_mean", float("nan"))
        row[f"{kind}_transfer_std"] = transfer.get(f"{kind}_std", float("nan"))
    row["seeds"] = transfer.get("kd_seeds", 0)
    paired = report.debiased_vs_kd
    key = "random_auc" if "random_auc_mean" in paired else "auc"
    row["debiased_vs_kd"] = {"slice": "random exposure" if key == "random_auc" else "all",
                             "mean": paired.get(f"{key}_mean", float("nan")),
                             "std": paired.get(f"{key}_std", float("nan")),
                             "wins": int(paired.get(f"{key}_wins", 0)), "seeds": int(paired.get("seeds", 0))}
    return row


def print_table(rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="distillation quality on the held-out date (teacher at the neutral position)")
    for column in ("dataset", "teacher AUC", "base AUC", "KD AUC", "debiased AUC", "random-exposure AUC t/b/kd/deb",
                   "teacher gain", "transfer KD", "transfer debiased", "debiased − KD, paired", "teacher s"):
        table.add_column(column, justify="right")
    for row in rows:
        auc = {m: f"{row[f'{m}_auc']:.4f}" + (f" ± {row[f'{m}_auc_std']:.4f}" if m != "teacher" else "")
               for m in ("teacher", *KINDS)}
        random = "/".join("—" if np.isnan(row[f"{m}_random_auc"]) else f"{row[f'{m}_random_auc']:.3f}"
                          for m in ("teacher", *KINDS))
        # With no teacher gain the ratio's sign flips and it means nothing: mark it.
        caveat = "" if row["teacher_auc"] > row["base_auc"] else " (teacher ≤ base)"
        transfer = {k: f"{100 * row[f'{k}_transfer_mean']:.0f} ± {100 * row[f'{k}_transfer_std']:.0f} %{caveat}"
                    for k in ("kd", "debiased")}
        paired = row["debiased_vs_kd"]
        versus = (f"{paired['mean']:+.4f} ± {paired['std']:.4f} ({paired['slice']}), "  # type: ignore[index]
                  f"won {paired['wins']}/{paired['seeds']}")  # type: ignore[index]
        table.add_row(str(row["dataset"]), auc["teacher"], auc["base"], auc["kd"], auc["debiased"], random,
                      f"{row['teacher_auc'] - row['base_auc']:+.4f}", transfer["kd"], transfer["debiased"], versus,
                      f"{row['teacher_seconds']:.0f}")
    console.print(table)
    console.print(f"transferability = (AUC_kd − AUC_base) / (AUC_teacher − AUC_base), mean ± std over "
                  f"{rows[0]['seeds']} student seeds; ± on AUCs is the std over those seeds; debiased − KD is the "
                  f"AUC difference of the two students of the same seed (on the random-exposure slice where there "
                  f"is one), mean ± std and the seeds the debiased one won")


def plot(rows: list[dict[str, object]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = ("teacher", *KINDS)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        ax.bar(np.arange(len(rows)) + (i - 1.5) * width, [r[f"{model}_auc"] for r in rows], width,
               yerr=[r[f"{model}_auc_std"] for r in rows], label=model)
    ax.set_xticks(range(len(rows)), [str(r["dataset"]) for r in rows])
    low = min(float(r[f"{m}_auc"]) for r in rows for m in models)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_ylabel("held-out AUC")
    ax.legend(ncols=4, fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", action="store_true", help="generated data with a planted click model")
    parser.add_argument("--coat", action="store_true", help="Coat: biased ratings, random-exposure test")
    parser.add_argument("--ml-100k", action="store_true", help="MovieLens 100K, last --ml-100k-days days")
    parser.add_argument("--profile", default="demo", help="settings profile (generated data uses its generator)")
    parser.add_argument("--ml-100k-days", type=int, default=30)
    parser.add_argument("--ml-100k-window-days", type=int, default=7, help="the ML-100K students' window")
    parser.add_argument("--seeds", type=int, help="student seeds 0…N−1 (default: the profile's student.seeds)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/distill_quality"))
    parser.add_argument("--reuse-tables", action="store_true", help="skip the data plane where tables exist")
    args = parser.parse_args()
    if not (args.generated or args.coat or args.ml_100k):
        parser.error("select at least one dataset: --generated, --coat, --ml-100k")
    console = Console(width=260)
    student = {"seeds": list(range(args.seeds))} if args.seeds else {}
    datasets = []
    if args.generated:
        datasets.append(generated(args.profile, args.workdir / "generated" / "lakehouse", student))
    if args.coat:
        datasets.append(converted("coat", args.data / "coat", args.workdir / "coat" / "lakehouse",
                                  date(2026, 1, 1), COAT_DAYS, args.profile, student))
    if args.ml_100k:
        start = ML100K_LAST_BUSY_DAY - timedelta(days=args.ml_100k_days - 1)
        datasets.append(converted("ml-100k", args.data / "ml-100k", args.workdir / "ml-100k" / "lakehouse",
                                  start, args.ml_100k_days, args.profile,
                                  {**student, "window_days": args.ml_100k_window_days}))
    rows = []
    for dataset in datasets:
        tables = dataset.settings.lakehouse.tables
        if not (args.reuse_tables and tables.exists()):
            shutil.rmtree(dataset.settings.lakehouse.root, ignore_errors=True)
            build_tables(dataset, console)
        report, teacher_seconds = train_and_evaluate(dataset.settings, console)
        rows.append(row_of(dataset.name, report, teacher_seconds))
        (args.workdir / "results.json").parent.mkdir(parents=True, exist_ok=True)
        (args.workdir / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    print_table(rows, console)
    console.print(f"plot: {plot(rows, args.workdir / 'distill_quality.png')}")


if __name__ == "__main__":
    main()
