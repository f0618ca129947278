"""Scoring a teacher on dates through its parameter server, and the metrics bundle of a scored date."""

from __future__ import annotations

from datetime import date

import numpy as np

from pipeline.config import Settings
from pipeline.metrics import auc, gauc, logloss
from pipeline.train.loop import Scored, score
from pipeline.train.ranks import gathered
from pipeline.train.teacher_model import TeacherWithPS, teacher_batches


def score_teacher(net: TeacherWithPS, settings: Settings, days: list[date], neutral_position: bool) -> Scored:
    """Click logits for `days` through the parameter server (no admission, no updates)."""
    net.eval()
    batches = net.server.pipeline(teacher_batches(settings, days, None), net.ids_of, train=False)
    try:
        mine = score(batches, lambda b: net.model(b, neutral_position=neutral_position)["click"], "teacher scoring")
    except ValueError as err:
        raise ValueError(f"no training_samples on {[str(d) for d in days]}") from err
    return gathered(mine)


def evaluate_scored(scored: Scored, prefix: str) -> dict[str, float]:
    """AUC, GAUC and LogLoss of scored samples, named `<prefix>auc` etc."""
    probabilities = 1 / (1 + np.exp(-scored.logits))
    return {f"{prefix}auc": auc(scored.labels, scored.logits),
            f"{prefix}gauc": gauc(scored.labels, scored.logits, scored.users),
            f"{prefix}logloss": logloss(scored.labels, probabilities)}
