"""Ranking metrics and the Rec-Distill transferability, with bootstrap uncertainty."""

from __future__ import annotations

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


def bootstrap_transferability(labels: np.ndarray, teacher: np.ndarray, base: np.ndarray, kd: np.ndarray,
                              rounds: int = 200, seed: int = 0, level: float = 0.9) -> Estimate:
    """Transferability on the full set, with a paired bootstrap interval over samples."""
    labels = np.asarray(labels)
    value = transferability(auc(labels, teacher), auc(labels, base), auc(labels, kd))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        try:
            draws.append(transferability(auc(labels[idx], teacher[idx]), auc(labels[idx], base[idx]),
                                         auc(labels[idx], kd[idx])))
        except ValueError:
            continue
    draws = np.asarray([d for d in draws if np.isfinite(d)])
    tail = (1 - level) / 2
    return Estimate(value, float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)))
