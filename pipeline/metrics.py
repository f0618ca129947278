"""Ranking metrics and the Rec-Distill transferability, with bootstrap uncertainty."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (no ranking to judge)."""
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean of per-user AUC over users with both a click and a non-click."""
    order = np.argsort(groups, kind="stable")
    labels, scores, groups = np.asarray(labels)[order], np.asarray(scores)[order], np.asarray(groups)[order]
    boundaries = np.flatnonzero(np.diff(groups)) + 1
    total, weight = 0.0, 0
    for user_labels, user_scores in zip(np.split(labels, boundaries), np.split(scores, boundaries)):
        if user_labels.min() != user_labels.max():
            total += roc_auc_score(user_labels, user_scores) * len(user_labels)
            weight += len(user_labels)
    return total / weight if weight else float("nan")


def logloss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1]))


def transferability(auc_teacher: float, auc_base: float, auc_kd: float) -> float:
    """Share of the teacher's AUC gain over the base student that KD recovers (Rec-Distill)."""
    gap = auc_teacher - auc_base
    if gap == 0:
        raise ValueError("transferability is undefined when the teacher's AUC equals the base student's")
    return (auc_kd - auc_base) / gap


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Transfer:
    """Transferability over seeds with its paired bootstrap interval, or why it is not measurable."""

    teacher_gain: Estimate  # AUC_teacher − mean AUC_base
    value: Estimate | None  # None unless the teacher-gain interval is above 0
    seeds: int

    @property
    def note(self) -> str:
        if self.value is not None:
            return ""
        where = "includes 0" if self.teacher_gain.high >= 0 else "is below 0: the teacher loses to them"
        return f"not measurable: the teacher's gain over the base students, {self.teacher_gain}, has an interval that {where}"


class _RankedScores:
    """One score vector sorted once, so the AUC under any row weights (a bootstrap draw) is O(rows)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="stable")
        ordered = scores[self.order]
        self.starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]  # tie groups
        self.positive = labels[self.order].astype(bool)

    def auc(self, weights: np.ndarray) -> float:
        """Mann–Whitney AUC with each row counted `weights` times (ties count one half)."""
        w = weights[self.order]
        pos = np.add.reduceat(np.where(self.positive, w, 0.0), self.starts)
        neg = np.add.reduceat(np.where(self.positive, 0.0, w), self.starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


def seed_row_bootstrap(labels: np.ndarray, stacks: dict[str, np.ndarray],
                       statistic: Callable[[dict[str, np.ndarray]], float], rounds: int, seed: int = 0,
                       level: float = 0.9) -> Estimate:
    """`statistic` of per-model AUC vectors, with a paired bootstrap over seeds and rows.

    `stacks` maps a model to its scores [seeds, rows] (one row for a single model such as the
    teacher); each round draws the rows once for every model and the seeds once for every stack with
    more than one seed (the same seed draw pairs, e.g., a seed's base and KD students).
    """
    labels = np.asarray(labels)
    counts = {len(v) for v in stacks.values() if len(v) > 1}
    if len(counts) > 1:
        raise ValueError(f"paired stacks need the same seeds; got seed counts {sorted(counts)}")
    n_seeds = max(counts, default=1)
    ranked = {name: [_RankedScores(labels, np.asarray(s, np.float64)) for s in v] for name, v in stacks.items()}

    def aucs(weights: np.ndarray, seeds: np.ndarray) -> dict[str, np.ndarray]:
        return {name: np.array([runs[i].auc(weights) for i in (seeds if len(runs) > 1 else [0])])
                for name, runs in ranked.items()}

    value = statistic(aucs(np.ones(len(labels)), np.arange(n_seeds)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        weights = np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels)).astype(np.float64)
        draw = statistic(aucs(weights, rng.integers(0, n_seeds, n_seeds)))
        if np.isfinite(draw):
            draws.append(draw)
    if not draws:
        return Estimate(value, float("nan"), float("nan"))
    tail = (1 - level) / 2
    return Estimate(value, float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)))


def transfer_estimate(labels: np.ndarray, teacher: np.ndarray, base: np.ndarray, student: np.ndarray,
                      rounds: int = 200, seed: int = 0, level: float = 0.9) -> Transfer:
    """Transferability = (mean AUC_student − mean AUC_base) / (AUC_teacher − mean AUC_base) over seeds.

    `base` and `student` are [seeds, rows] score stacks of the same seeds (paired), `teacher` is
    [rows]. A ratio of means, not a mean of per-seed ratios, which explodes when one seed's gap is
    tiny; "not measurable" (value None) unless the teacher-gain interval is above 0: a teacher below the
    base makes the ratio positive when KD loses AUC, which reads as transfer.
    """
    stacks = {"teacher": np.asarray(teacher)[None, :], "base": np.asarray(base), "student": np.asarray(student)}

    def gain(a: dict[str, np.ndarray]) -> float:
        return float(a["teacher"][0] - a["base"].mean())

    def ratio(a: dict[str, np.ndarray]) -> float:
        gap = gain(a)
        return float((a["student"].mean() - a["base"].mean()) / gap) if gap != 0 else float("nan")

    teacher_gain = seed_row_bootstrap(labels, stacks, gain, rounds, seed, level)
    measurable = teacher_gain.low > 0
    value = seed_row_bootstrap(labels, stacks, ratio, rounds, seed, level) if measurable else None
    return Transfer(teacher_gain, value, len(stacks["base"]))


def paired_gain(labels: np.ndarray, treated: np.ndarray, control: np.ndarray, rounds: int = 200, seed: int = 0,
                level: float = 0.9) -> Estimate:
    """Mean AUC of `treated` − `control` ([seeds, rows] each, paired by seed), bootstrapped over seeds and rows."""
    return seed_row_bootstrap(labels, {"treated": np.asarray(treated), "control": np.asarray(control)},
                              lambda a: float((a["treated"] - a["control"]).mean()), rounds, seed, level)
