"""Distillation quality: teacher vs base, KD and debiased students of every size on generated data, Coat, ML-100K.

    .venv/bin/python -m benchmarks.distill_quality [--generated] [--coat] [--ml-100k] [--seeds N] [--sizes xs,s,m]
        [--teacher-seeds N] [--kd-listwise-weights 0,1]

Each selected dataset goes through the real pipeline once: landing files (generator or converter) →
Spark jobs → a teacher on the parameter server (one per `--teacher-seeds` seed) → neutral-position logit
dump (labelled rows and unexposed pairs of the students' window) → for every student size, base/KD/debiased students per
seed (KD λ and T from the built-in search on the calibration date) → `pipeline.train.evaluate.evaluate`
on the held-out date, which measures the size's serving latency in the same run, scores the
random-exposure test share, computes transferability with its paired seed×row bootstrap interval
and logs everything, with the quality–latency frontier, to MLflow. Coat's held-out date is its
random-exposure set, so its figures are on the test share (the uniform share, 10 % per user, is what
the debiased student may use); ML-100K uses the contiguous window `--ml-100k-days` ending on its last
busy day with a `--ml-100k-window-days` student window, evaluated on its last `--ml-100k-holdout-days`
dates pooled (a day of ML-100K holds ~11 users, too few for a global AUC). The tables, `results.json` and the frontier
plot land in `--workdir`. `--kd-listwise-weights` runs the students once per weight of the listwise KD term
(`student.kd_listwise_weight`), each from a fresh artifacts folder (the teacher retrained: it is
deterministic), and prints the variants side by side.
Goals (issue #19): teacher ≥ `s` base + 0.02 AUC everywhere; `s` KD transferability ≥ 60 % on generated
data and ≥ 50 % on Coat (test share) and ML-100K with the interval's lower bound above 0; on Coat's
test share the debiased student beats KD with the paired interval above 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.config import STUDENT_PRESETS, STUDENT_SIZES, Settings, load_settings
from pipeline.train.evaluate import EvaluationReport, evaluate
from pipeline.train.windows import default_windows, holdout_period

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
    unbiased_holdout: bool = False  # the held-out date is the random-exposure set: report its test share


def generated(profile: str, root: Path, student: dict[str, object]) -> Dataset:
    from pipeline.data.synthetic import generate

    settings = load_settings(profile, lakehouse={"root": str(root)}, student=student)
    return Dataset(f"generated ({profile})", settings, "synthetic",
                   lambda: generate(settings.generator, settings.lakehouse.landing, progress=False))


def converted(kind: str, src: Path, root: Path, start: date, n_days: int, profile: str,
              student: dict[str, object], unbiased_holdout: bool = False, holdout_days: int = 1) -> Dataset:
    from pipeline.data.converters import convert

    settings = load_settings(profile, lakehouse={"root": str(root)},
                             generator={"start_date": start, "n_days": n_days}, student=student,
                             evaluation={"holdout_days": holdout_days})
    return Dataset(kind, settings, kind, lambda: convert(kind, src, settings.lakehouse.landing), unbiased_holdout)


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


def train_and_evaluate(dataset: Dataset, sizes: list[str], teacher_seeds: int, console: Console,
                       keep_artifacts: bool = False) -> list[dict[str, object]]:
    """Per teacher seed, a teacher and its logits, then every size's students and evaluation; a result row
    per teacher seed and size. Base students do not learn from a teacher: they are trained once.

    With several teacher seeds each teacher starts from its seed (`teacher.warm_start` off), so the rows
    show how much a run's figures depend on the teacher it draws. With `keep_artifacts`, a rerun resumes
    the teachers and students an interrupted run left."""
    from pipeline.train.distill import train_student
    from pipeline.train.logit_dump import dump_logits, dump_unexposed_logits
    from pipeline.train.teacher_search import fit_teacher

    settings = dataset.settings
    if not keep_artifacts:  # a fresh folder: no warm start from, or reuse of, an earlier run's models
        shutil.rmtree(settings.lakehouse.artifacts, ignore_errors=True)
    windows = default_windows(settings)
    rows = []
    for index in range(teacher_seeds):
        seed = settings.teacher.seed + index
        teacher_cfg = settings.teacher.model_copy(update={"seed": seed, "warm_start": teacher_seeds == 1})
        seeded = settings.model_copy(update={"teacher": teacher_cfg})
        started = time.perf_counter()
        teacher = fit_teacher(seeded, windows.teacher_train, [windows.calibration])
        teacher_seconds = time.perf_counter() - started
        for day in [*windows.train, windows.calibration, *holdout_period(settings, windows.holdout)]:
            dump_logits(seeded, day, teacher.version)
        dump_unexposed_logits(seeded, windows.train, teacher.version)
        console.print(f"{dataset.name}: teacher seed {seed} ({teacher.version}) in {teacher_seconds:.0f}s, logits dumped")
        for size in sizes:
            sized = seeded.model_copy(update={"student": seeded.student.model_copy(update={"preset": size})})
            began = time.perf_counter()
            searched = ""
            for student_seed in sized.student.seeds:
                for kind in KINDS if index == 0 else KINDS[1:]:
                    run = train_student(sized, kind, windows.train, student_seed,
                                        None if kind == "base" else teacher.version, windows.calibration)
                    if kind == "kd":
                        m = run.folder.manifest()
                        searched = f"λ {m.kd_lambda:g}, T {m.kd_temperature:g}, listwise {m.kd_listwise_weight:g}"
            report = evaluate(sized, windows.holdout, teacher.version)
            rows.append({**row_of(dataset, size, report, teacher_seconds, time.perf_counter() - began),
                         "teacher_seed": seed, "kd_weights": searched})
            console.print(f"{dataset.name} / {size} / teacher seed {seed}: students and evaluation in "
                          f"{time.perf_counter() - began:.0f}s")
    return rows


def row_of(dataset: Dataset, size: str, report: EvaluationReport, teacher_seconds: float,
           student_seconds: float) -> dict[str, object]:
    """The figures of one dataset and size on its primary slice (Coat: the random-exposure test share)."""
    prefix = "random_" if dataset.unbiased_holdout else ""
    metrics, transfer = report.metrics, report.transferability
    row: dict[str, object] = {"dataset": dataset.name, "size": size, "holdout": report.holdout_dates,
                              "slice": "test share" if prefix else "held-out date", "exposure": report.exposure,
                              "teacher_seconds": round(teacher_seconds, 1), "student_seconds": round(student_seconds, 1),
                              "latency": report.latency, "teacher_members": dataset.settings.teacher.members}
    for model in ("teacher", *KINDS):
        row[f"{model}_auc"] = metrics[model][f"{prefix}auc"]
        row[f"{model}_auc_std"] = metrics[model].get(f"{prefix}auc_std", 0.0)
        row[f"{model}_gauc"] = metrics[model][f"{prefix}gauc"]  # within-user ranking: what a request sees
    for kind in ("kd", "debiased"):
        key = f"{prefix}{kind}"
        row[f"{kind}_transfer"] = {name: transfer.get(f"{key}_{name}") for name in
                                   ("value", "low", "high", "note", "teacher_gain", "teacher_gain_low",
                                    "teacher_gain_high", "seeds")}
    row["debiased_vs_kd"] = report.debiased_vs_kd
    return row


def _interval(value: object, low: object, high: object, scale: float = 1.0, digits: int = 4) -> str:
    return f"{scale * value:+.{digits}f} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"  # type: ignore[operator]


def _paired_key(paired: dict[str, float]) -> str:
    """The metric debiased − KD was paired on: the random-exposure test share where there is one."""
    return "random_auc" if "random_auc_mean" in paired else "auc"


def _spread(values: object, sign: str = "") -> str:
    """`mean [min, max]` of an array, markup-escaped for rich."""
    return escape(f"{values.mean():{sign}.4f} [{values.min():{sign}.4f}, {values.max():{sign}.4f}]")  # type: ignore[attr-defined]


def print_table(rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="distillation quality (teacher at the neutral position) and serving latency per size")
    for column in ("dataset", "size", "KD λ, T, listwise", "teacher seed", "slice", "teacher", "base", "KD", "debiased", "teacher gain [90% CI]",
                   "transfer KD [90% CI]", "transfer debiased", "debiased − KD [90% CI], won",
                   "GAUC teacher / base / KD / debiased", "served ms (path)"):
        table.add_column(column, justify="right")
    for row in rows:
        auc = {m: f"{row[f'{m}_auc']:.4f}" + (f" ± {row[f'{m}_auc_std']:.4f}" if m != "teacher" else "")
               for m in ("teacher", *KINDS)}
        kd = row["kd_transfer"]
        gain = _interval(kd["teacher_gain"], kd["teacher_gain_low"], kd["teacher_gain_high"])  # type: ignore[index]
        transfer = {k: (_interval(t["value"], t["low"], t["high"], 100, 0) + " %" if t["value"] is not None  # type: ignore[index]
                        else "not measurable") for k in ("kd", "debiased") for t in [row[f"{k}_transfer"]]}
        paired = row["debiased_vs_kd"]
        key = _paired_key(paired)  # type: ignore[arg-type]
        versus = (_interval(paired[f"{key}_mean"], paired[f"{key}_low"], paired[f"{key}_high"])  # type: ignore[index]
                  + f", {int(paired[f'{key}_wins'])}/{int(paired['seeds'])}") if paired else "—"  # type: ignore[index]
        latency = row["latency"]
        table.add_row(str(row["dataset"]), str(row["size"]), str(row["kd_weights"]), str(row["teacher_seed"]), str(row["slice"]), auc["teacher"], auc["base"], auc["kd"],
                      auc["debiased"], gain, transfer["kd"], transfer["debiased"], versus,
                      " / ".join(f"{row[f'{m}_gauc']:.4f}" for m in ("teacher", *KINDS)),
                      f"{latency['served_ms']:.2f} ({latency['served']})")  # type: ignore[index]
    console.print(table)
    console.print("± on AUCs: std over seeds; intervals: 90 % paired bootstrap over seeds and test rows; "
                  "transferability = (mean AUC_student − mean AUC_base) / (AUC_teacher − mean AUC_base), not measurable "
                  "when the teacher gain's interval includes 0; debiased − KD paired by seed (test share where there "
                  "is one); GAUC: mean per-user AUC on the same slice; latency: median per request, N = 256 candidates, "
                  "the path a release serves")


def print_over_teacher_seeds(rows: list[dict[str, object]], console: Console) -> None:
    """Per dataset and size, how the figures move with the teacher a run draws: mean and range over teacher
    seeds, and on how many teacher seeds each interval lies above 0 (the base students are the same)."""
    import numpy as np

    groups: dict[tuple[str, str, object], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["dataset"]), str(row["size"]), row["kd_listwise_weight"]), []).append(row)
    table = Table(title=escape("over teacher seeds: mean [min, max]; on how many teacher seeds the interval is above 0"))
    for column in ("dataset", "size", "teachers", "teacher", "base", "KD", "debiased", "teacher gain",
                   "gain CI > 0", "transfer KD (ratio of means)", "debiased − KD", "debiased − KD CI > 0"):
        table.add_column(column, justify="right")
    for (dataset, size, _), group in groups.items():
        if len(group) < 2:
            continue
        auc = {m: np.array([r[f"{m}_auc"] for r in group]) for m in ("teacher", *KINDS)}
        gains = np.array([r["kd_transfer"]["teacher_gain"] for r in group])  # type: ignore[index]
        key = _paired_key(group[0]["debiased_vs_kd"])  # type: ignore[arg-type]
        versus = np.array([r["debiased_vs_kd"][f"{key}_mean"] for r in group])  # type: ignore[index]
        gain = auc["teacher"].mean() - auc["base"].mean()
        gains_above_0 = sum(r["kd_transfer"]["teacher_gain_low"] > 0 for r in group)  # type: ignore[index]
        # As for one teacher: a ratio over a gain that some teacher's interval does not separate from 0 is noise.
        transfer = (f"{100 * (auc['kd'].mean() - auc['base'].mean()) / gain:.0f} %" if gains_above_0 == len(group)
                    else "not measurable")
        table.add_row(dataset, size, str(len(group)), *(_spread(auc[m]) for m in ("teacher", *KINDS)),
                      _spread(gains, "+"), f"{gains_above_0}/{len(group)}", transfer, _spread(versus, "+"),
                      f"{sum(r['debiased_vs_kd'][f'{key}_low'] > 0 for r in group)}/{len(group)}")  # type: ignore[index]
    if table.row_count:
        console.print(table)


def plot(rows: list[dict[str, object]], path: Path) -> Path:
    """The quality–latency frontier, one panel per dataset (`evaluate.frontier_plot`'s picture, side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = min(int(r["teacher_seed"]) for r in rows)  # type: ignore[call-overload]
    # One teacher per panel (its horizontal line) and one listwise variant (the first run).
    variant = rows[0]["kd_listwise_weight"]
    rows = [r for r in rows if r["teacher_seed"] == first and r["kd_listwise_weight"] == variant]
    names = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = sorted((r for r in rows if r["dataset"] == name), key=lambda r: r["latency"]["served_ms"])  # type: ignore[index]
        x = [r["latency"]["served_ms"] for r in mine]  # type: ignore[index]
        for kind, marker in (("base", "o"), ("kd", "s"), ("debiased", "^")):
            ax.errorbar(x, [r[f"{kind}_auc"] for r in mine], yerr=[r[f"{kind}_auc_std"] for r in mine],
                        marker=marker, capsize=3, label=kind)
        ax.axhline(mine[0]["teacher_auc"], color="k", linestyle="--", label="teacher")  # type: ignore[arg-type]
        for xi, r in zip(x, mine):
            ax.annotate(str(r["size"]), (xi, r["base_auc"]), textcoords="offset points", xytext=(0, -14), ha="center")
        ax.set_title(f"{name} ({mine[0]['slice']})")
        ax.set_xlabel("ms per request, N = 256")
        ax.set_ylabel("AUC")
    axes[0][0].legend(fontsize="small")
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
    parser.add_argument("--ml-100k-holdout-days", type=int, default=7,
                        help="ML-100K's pooled held-out period (evaluation.holdout_days): a day holds ~11 users")
    parser.add_argument("--seeds", type=int, help="student seeds 0…N−1 (default: the profile's student.seeds)")
    parser.add_argument("--teacher-seeds", type=int, default=1,
                        help="teachers from seeds teacher.seed…+N−1, each from scratch (default: one, warm-started)")
    parser.add_argument("--sizes", default=",".join(STUDENT_SIZES), help="student presets, comma separated")
    parser.add_argument("--kd-listwise-weights", help="student.kd_listwise_weight values to compare, comma separated "
                        "(default: the profile's)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/distill_quality"))
    parser.add_argument("--reuse-tables", action="store_true", help="skip the data plane where tables exist")
    parser.add_argument("--keep-artifacts", action="store_true",
                        help="resume the teacher and students of an interrupted run instead of starting afresh")
    args = parser.parse_args()
    if not (args.generated or args.coat or args.ml_100k):
        parser.error("select at least one dataset: --generated, --coat, --ml-100k")
    if args.teacher_seeds < 1:
        parser.error(f"--teacher-seeds must be at least 1, got {args.teacher_seeds}")
    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    unknown = [size for size in sizes if size not in STUDENT_PRESETS]
    if unknown:
        parser.error(f"--sizes: unknown student presets {unknown}; expected some of {list(STUDENT_PRESETS)}")
    console = Console(width=260)
    student = {"seeds": list(range(args.seeds))} if args.seeds else {}
    datasets = []
    if args.generated:
        datasets.append(generated(args.profile, args.workdir / "generated" / "lakehouse", student))
    if args.coat:
        datasets.append(converted("coat", args.data / "coat", args.workdir / "coat" / "lakehouse",
                                  date(2026, 1, 1), COAT_DAYS, args.profile, student, unbiased_holdout=True))
    if args.ml_100k:
        start = ML100K_LAST_BUSY_DAY - timedelta(days=args.ml_100k_days - 1)
        datasets.append(converted("ml-100k", args.data / "ml-100k", args.workdir / "ml-100k" / "lakehouse",
                                  start, args.ml_100k_days, args.profile,
                                  {**student, "window_days": args.ml_100k_window_days},
                                  holdout_days=args.ml_100k_holdout_days))
    rows: list[dict[str, object]] = []
    for dataset in datasets:
        tables = dataset.settings.lakehouse.tables
        if not (args.reuse_tables and tables.exists()):
            shutil.rmtree(dataset.settings.lakehouse.root, ignore_errors=True)
            build_tables(dataset, console)
        weights = [float(w) for w in args.kd_listwise_weights.split(",")] if args.kd_listwise_weights else [None]
        for weight in weights:
            variant = dataset if weight is None else replace(dataset, settings=dataset.settings.model_copy(update={
                "student": dataset.settings.student.model_copy(update={"kd_listwise_weight": weight})}))
            found = train_and_evaluate(variant, sizes, args.teacher_seeds, console, args.keep_artifacts)
            rows += [{**row, "kd_listwise_weight": variant.settings.student.kd_listwise_weight} for row in found]
        (args.workdir / "results.json").parent.mkdir(parents=True, exist_ok=True)
        (args.workdir / "results.json").write_text(json.dumps(rows, indent=2, default=str))
        print_table(rows, console)
        print_over_teacher_seeds(rows, console)
    console.print(f"plot: {plot(rows, args.workdir / 'distill_frontier.png')}")


if __name__ == "__main__":
    main()
