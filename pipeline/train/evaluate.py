"""Held-out evaluation of teacher and students, and Rec-Distill's transferability with uncertainty.

Every model is scored on the same held-out date, overall and on its random-exposure slice (the
unbiased test where the data has one). Transferability is computed per seed from paired base/KD
students, reported as mean ± std over seeds plus a bootstrap interval over samples; the debiased
student is compared with plain KD seed by seed, on the unbiased slice where there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import mlflow
import numpy as np

from pipeline.artifacts import EvaluationReport, evaluation_folder, students_for
from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.metrics import auc, bootstrap_transferability, transferability
from pipeline.train.distill import load_student
from pipeline.train.loop import Scored, score
from pipeline.train.teacher_model import open_teacher
from pipeline.train.teacher_scoring import evaluate_scored, score_teacher
from pipeline.train.tracking import log_params, training_run

log = logging.getLogger(__name__)


def _slice_metrics(scored: Scored) -> dict[str, float]:
    metrics = evaluate_scored(scored, "")
    if scored.random_exposure.any():
        metrics.update(evaluate_scored(scored.subset(scored.random_exposure), "random_"))
    return metrics


def evaluate(settings: Settings, day: date, teacher_version: str) -> EvaluationReport:
    """Score the teacher and every matching student on `day`; log metrics and a comparison plot."""
    students = students_for(settings, teacher_version, before=day)
    missing = [kind for kind in ("base", "kd") if not students[kind]]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} students for teacher {teacher_version!r} trained before {day}; "
                         f"run `recdistill student distill` first")
    net = open_teacher(settings, teacher_version)
    try:
        # "teacher" is what students learn from (neutral position); "teacher_observed" adds the
        # position tower back, as the teacher was trained — the gap is how much position explains.
        teacher = score_teacher(net, settings, [day], neutral_position=True)
        observed = score_teacher(net, settings, [day], neutral_position=False)
    finally:
        net.server.close()
    report = EvaluationReport(day=day, teacher_version=teacher_version)
    report.metrics["teacher"] = _slice_metrics(teacher)
    report.metrics["teacher_observed"] = _slice_metrics(observed)
    per_kind: dict[str, dict[int, Scored]] = {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for kind, folders in students.items():
        per_kind[kind] = {}
        for folder in folders:
            model = load_student(folder)
            seed = folder.manifest().seed
            scored = score(iter_batches(settings, [day], settings.student.scoring_batch_size, "student"), model,
                           f"{kind} seed {seed}")
            per_kind[kind][seed] = scored.aligned_to(teacher.sample_id)
        per_seed[kind] = {seed: _slice_metrics(s) for seed, s in per_kind[kind].items()}
        if per_seed[kind]:
            runs = list(per_seed[kind].values())
            report.metrics[kind] = {k: float(np.nanmean([r[k] for r in runs])) for k in runs[0]}
            report.metrics[kind].update({f"{k}_std": float(np.nanstd([r[k] for r in runs])) for k in runs[0]})
    report.transferability = _transferability(teacher, per_kind, settings.evaluation.bootstrap_rounds)
    report.debiased_vs_kd = paired_difference(per_seed.get("debiased", {}), per_seed["kd"])
    _log(settings, report)
    return report


def _transferability(teacher: Scored, per_kind: dict[str, dict[int, Scored]], rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    teacher_auc = auc(teacher.labels, teacher.logits)
    for kind in ("kd", "debiased"):
        seeds = sorted(set(per_kind.get(kind, {})) & set(per_kind["base"]))
        if not seeds:
            continue
        values = [transferability(teacher_auc, auc(teacher.labels, per_kind["base"][s].logits),
                                  auc(teacher.labels, per_kind[kind][s].logits)) for s in seeds]
        interval = bootstrap_transferability(teacher.labels, teacher.logits, per_kind["base"][seeds[0]].logits,
                                             per_kind[kind][seeds[0]].logits, rounds=rounds)
        out.update({f"{kind}_mean": float(np.mean(values)), f"{kind}_std": float(np.std(values)),
                    f"{kind}_ci_low": interval.low, f"{kind}_ci_high": interval.high, f"{kind}_seeds": len(seeds)})
    return out


def paired_difference(treated: dict[int, dict[str, float]], control: dict[int, dict[str, float]]) -> dict[str, float]:
    """AUC of `treated` − `control` per shared seed, on the unbiased (random-exposure) slice where there
    is one: mean, std, and on how many seeds `treated` won."""
    seeds = sorted(set(treated) & set(control))
    if not seeds:
        return {}
    key = "random_auc" if "random_auc" in treated[seeds[0]] else "auc"
    diffs = np.array([treated[s][key] - control[s][key] for s in seeds])
    return {f"{key}_mean": float(diffs.mean()), f"{key}_std": float(diffs.std()),
            f"{key}_wins": float((diffs > 0).sum()), "seeds": float(len(seeds))}


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
    folder = evaluation_folder(settings, report.day, report.teacher_version)
    report.write(folder.report)
    plot = comparison_plot(report, folder.plot)
    with training_run(settings, f"evaluation on held-out {report.day} (teacher {report.teacher_version})",
                      {"recdistill.teacher_version": report.teacher_version}):
        log_params({"day": str(report.day)})
        mlflow.log_metrics({_metric_name(model, k): v for model, values in report.metrics.items()
                            for k, v in values.items() if np.isfinite(v)})
        mlflow.log_metrics({f"transferability/{k}": v for k, v in report.transferability.items()})
        mlflow.log_metrics({f"debiased_vs_kd/{k}": v for k, v in report.debiased_vs_kd.items() if np.isfinite(v)})
        mlflow.log_artifact(str(plot))
        mlflow.log_artifact(str(folder.report))
    # One short line; the whole report (curves, every seed) is in report.json.
    log.info("evaluation on %s: %s; report %s", report.day,
             ", ".join(f"{model} AUC {values['auc']:.4f}" for model, values in report.metrics.items()),
             folder.report)
