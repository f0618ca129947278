"""Held-out evaluation of teacher and students, and Rec-Distill's transferability with uncertainty.

Every model is scored on the same held-out date (with `evaluation.holdout_days`, the period from it),
overall and on the random-exposure test share (the unbiased test where the data has one,
`pipeline.train.exposure`). Transferability is the ratio of seed means with a paired bootstrap interval
over seeds and rows (`pipeline.metrics.transfer_estimate`), "not measurable" when the teacher's gain
is not; the debiased student is compared with plain KD paired by seed, on the test share where there is
one. Each evaluation also measures the serving latency of its student size and redraws the
quality–latency frontier of every size evaluated so far.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict
from datetime import date
from pathlib import Path

import mlflow
import numpy as np

from pipeline.artifacts import (EvaluationReport, StudentFolder, evaluation_folder, evaluation_reports,
                                evaluated_students, frontier_path)
from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.dates import ONE_DAY
from pipeline.export.latency import measure as measure_latency
from pipeline.export.latency import requests_of
from pipeline.metrics import auc, paired_gain, transfer_estimate
from pipeline.models.quantize import quantize_w8a16
from pipeline.train.distill import load_student
from pipeline.train.exposure import ExposureSplit, exposure_split
from pipeline.train.loop import Scored, score
from pipeline.train.teacher_model import open_teacher
from pipeline.train.teacher_scoring import evaluate_scored, score_teacher
from pipeline.train.tracking import log_params, training_run
from pipeline.train.windows import holdout_period

log = logging.getLogger(__name__)


def _slice_metrics(scored: Scored, split: ExposureSplit) -> dict[str, float]:
    """Metrics on the whole date and, prefixed `random_`, on the random-exposure test share."""
    metrics = evaluate_scored(scored, "")
    test = split.in_test(scored.sample_id)
    if test.any():
        metrics.update(evaluate_scored(scored.subset(test), "random_"))
    return metrics


def evaluate(settings: Settings, day: date, teacher_version: str) -> EvaluationReport:
    """Score the teacher and every matching student on `day` (and the rest of its held-out period); log
    metrics and a comparison plot."""
    students = evaluated_students(settings, teacher_version, before=day)
    period = holdout_period(settings, day)
    missing = [kind for kind in ("base", "kd") if not students[kind]]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} students for teacher {teacher_version!r} trained before {day}; "
                         f"run `recdistill student distill` first")
    net = open_teacher(settings, teacher_version)
    try:
        # "teacher" is what students learn from (neutral position); "teacher_observed" adds the
        # position tower back, as the teacher was trained — the gap is how much position explains.
        teacher = score_teacher(net, settings, period, neutral_position=True)
        observed = score_teacher(net, settings, period, neutral_position=False)
    finally:
        net.server.close()
    report = EvaluationReport(day=day, teacher_version=teacher_version, preset=settings.student.preset,
                              holdout_dates=period)
    report.latency = serving_latency(settings, day, (students["kd"] or students["base"])[0])
    split = exposure_split(settings, day - ONE_DAY, day)
    report.exposure = ({"uniform_share_rows": len(split.uniform), "test_share_rows": len(split.test)} if split.exists
                       else {"note": "no random-exposure slice: no uniform- or test-share metrics"})
    report.metrics["teacher"] = _slice_metrics(teacher, split)
    report.metrics["teacher_observed"] = _slice_metrics(observed, split)
    per_kind: dict[str, dict[int, Scored]] = {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for kind, folders in students.items():
        per_kind[kind] = {}
        for folder in folders:
            model = load_student(folder)
            seed = folder.manifest().seed
            scored = score(iter_batches(settings, period, settings.student.scoring_batch_size, "student"), model,
                           f"{kind} seed {seed}")
            per_kind[kind][seed] = scored.aligned_to(teacher.sample_id)
        per_seed[kind] = {seed: _slice_metrics(s, split) for seed, s in per_kind[kind].items()}
        if per_seed[kind]:
            runs = list(per_seed[kind].values())
            report.metrics[kind] = {k: float(np.nanmean([r[k] for r in runs])) for k in runs[0]}
            report.metrics[kind].update({f"{k}_std": float(np.nanstd([r[k] for r in runs])) for k in runs[0]})
    rounds = settings.evaluation.bootstrap_rounds
    report.transferability = _transferability(teacher, per_kind, split, rounds)
    report.debiased_vs_kd = paired_difference(per_kind.get("debiased", {}), per_kind["kd"], split, rounds)
    _log(settings, report)
    return report


def _transferability(teacher: Scored, per_kind: dict[str, dict[int, Scored]], split: ExposureSplit,
                     rounds: int) -> dict[str, object]:
    """Transferability of KD and debiased students (`metrics.transfer_estimate`) on the held-out date
    and, prefixed `random_`, on the random-exposure test share."""
    out: dict[str, object] = {}
    slices = [("", np.ones(len(teacher.labels), bool))]
    if split.exists:
        slices.append(("random_", split.in_test(teacher.sample_id)))
    for prefix, rows in slices:
        for kind in ("kd", "debiased"):
            seeds = sorted(set(per_kind.get(kind, {})) & set(per_kind["base"]))
            if not seeds:
                continue
            estimate = transfer_estimate(teacher.labels[rows], teacher.logits[rows],
                                         np.stack([per_kind["base"][s].logits[rows] for s in seeds]),
                                         np.stack([per_kind[kind][s].logits[rows] for s in seeds]), rounds)
            key = f"{prefix}{kind}"
            out.update({f"{key}_teacher_gain": estimate.teacher_gain.value,
                        f"{key}_teacher_gain_low": estimate.teacher_gain.low,
                        f"{key}_teacher_gain_high": estimate.teacher_gain.high, f"{key}_seeds": len(seeds)})
            if estimate.value is None:
                out[f"{key}_note"] = estimate.note
            else:
                out.update({f"{key}_value": estimate.value.value, f"{key}_low": estimate.value.low,
                            f"{key}_high": estimate.value.high})
    return out


def paired_difference(treated: dict[int, Scored], control: dict[int, Scored], split: ExposureSplit,
                      rounds: int) -> dict[str, float]:
    """AUC of `treated` − `control`, paired by seed, on the random-exposure test share where there is
    one (else the whole date): mean with a bootstrap interval over seeds and rows, and the seeds won."""
    seeds = sorted(set(treated) & set(control))
    if not seeds:
        return {}
    first = control[seeds[0]]
    rows = split.in_test(first.sample_id) if split.exists else np.ones(len(first.labels), bool)
    key = "random_auc" if split.exists else "auc"
    stack = {name: np.stack([runs[s].logits[rows] for s in seeds]) for name, runs in (("t", treated), ("c", control))}
    labels = first.labels[rows]
    estimate = paired_gain(labels, stack["t"], stack["c"], rounds)
    wins = sum(auc(labels, t) > auc(labels, c) for t, c in zip(stack["t"], stack["c"]))
    return {f"{key}_mean": estimate.value, f"{key}_low": estimate.low, f"{key}_high": estimate.high,
            f"{key}_wins": float(wins), "seeds": float(len(seeds))}


def serving_latency(settings: Settings, day: date, student: StudentFolder, candidates: int = 256) -> dict[str, object]:
    """Per-request milliseconds of a student of this size on `day`'s requests with `candidates` candidates:
    naive, reuse, reuse + W8A16, and the path a release serves (W8A16 only where measured faster)."""
    model = load_student(student)
    requests = list(itertools.islice(requests_of(settings, day, model), 64))
    gain = measure_latency(model, quantize_w8a16(model), requests, candidates)
    return {**asdict(gain), "served": gain.served, "served_ms": gain.served_ms,
            "parameters": sum(p.numel() for p in model.parameters())}


def _number(metrics: dict[str, float | None], key: str) -> float:
    """A metric as a float: NaN where it is missing or undefined (strict JSON reports store NaN as null)."""
    value = metrics.get(key)
    return float("nan") if value is None else float(value)


def frontier_plot(reports: list[dict[str, object]], path: Path) -> Path:
    """Quality against serving latency: AUC (random-exposure test share where there is one) per student
    size for base, KD and debiased students (± std over seeds), the teacher as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = sorted(reports, key=lambda r: r["latency"]["served_ms"])  # type: ignore[index]
    key = "random_auc" if "random_auc" in reports[0]["metrics"]["teacher"] else "auc"  # type: ignore[index]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = [r["latency"]["served_ms"] for r in reports]  # type: ignore[index]
    for kind, marker in (("base", "o"), ("kd", "s"), ("debiased", "^")):
        shown = [(xi, r["metrics"][kind]) for xi, r in zip(x, reports) if kind in r["metrics"]]  # type: ignore[index]
        if shown:
            ax.errorbar([s[0] for s in shown], [_number(m, key) for _, m in shown],
                        yerr=[_number(m, f"{key}_std") for _, m in shown], marker=marker, capsize=3, label=kind)
    teacher = _number(reports[0]["metrics"]["teacher"], key)  # type: ignore[index]
    if np.isfinite(teacher):
        ax.axhline(teacher, color="k", linestyle="--", label="teacher")
    for xi, r in zip(x, reports):
        ax.annotate(str(r["preset"]), (xi, ax.get_ylim()[0]), textcoords="offset points", xytext=(0, 4), ha="center")
    ax.set_xlabel("serving latency per request, N = 256 (ms)")
    ax.set_ylabel("test-share AUC" if key == "random_auc" else "held-out AUC")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def comparison_plot(report: EvaluationReport, path: Path) -> Path:
    """Bar chart of AUC (overall and random-exposure slice) for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report.metrics)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for offset, key, label in ((-width / 2, "auc", "held-out"), (width / 2, "random_auc", "random exposure")):
        values = [report.metrics[m].get(key, np.nan) for m in models]
        ax.bar(np.arange(len(models)) + offset, values, width, label=label)
    ax.set_xticks(range(len(models)), models)
    finite = [v for m in models for k in ("auc", "random_auc") if np.isfinite(v := report.metrics[m].get(k, np.nan))]
    ax.set_ylim(min(finite) - 0.02, max(finite) + 0.02)
    ax.set_ylabel("AUC")
    ax.set_title(f"{report.day}: teacher vs students")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _metric_name(model: str, key: str) -> str:
    """`kd/heldout_day_auc`, `kd/random_exposure_auc`: the name says which data the number is on."""
    if key.startswith("random_"):
        return f"{model}/random_exposure_{key.removeprefix('random_')}"
    return f"{model}/heldout_day_{key}"


def _log(settings: Settings, report: EvaluationReport) -> None:
    folder = evaluation_folder(settings, report.day, report.teacher_version, report.preset)
    report.write(folder.report)
    plot = comparison_plot(report, folder.plot)
    sizes = evaluation_reports(settings, report.day, report.teacher_version)
    frontier = frontier_plot(sizes, frontier_path(settings, report.day, report.teacher_version))
    with training_run(settings, f"evaluation on held-out {report.day} (teacher {report.teacher_version})",
                      {"recdistill.teacher_version": report.teacher_version}):
        log_params({"day": str(report.day)})
        mlflow.log_metrics({_metric_name(model, k): v for model, values in report.metrics.items()
                            for k, v in values.items() if np.isfinite(v)})
        mlflow.log_metrics({f"transferability/{k}": v for k, v in report.transferability.items()
                            if isinstance(v, (int, float)) and np.isfinite(v)})
        mlflow.log_metrics({f"debiased_vs_kd/{k}": v for k, v in report.debiased_vs_kd.items() if np.isfinite(v)})
        mlflow.log_artifact(str(plot))
        mlflow.log_artifact(str(frontier))
        mlflow.log_metrics({f"latency/{k}": float(v) for k, v in report.latency.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(folder.report))
    # One short line; the whole report (curves, every seed) is in report.json.
    log.info("evaluation on %s: %s; report %s", report.day,
             ", ".join(f"{model} AUC {values['auc']:.4f}" for model, values in report.metrics.items()),
             folder.report)
