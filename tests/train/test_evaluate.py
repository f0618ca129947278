"""Held-out evaluation's arithmetic on hand-made numbers (the end-to-end run is in test_training.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import auc
from pipeline.train.evaluate import paired_difference
from pipeline.train.exposure import ExposureSplit
from pipeline.train.loop import Scored

LABELS = np.array([0, 1, 0, 1, 1, 0, 1, 0])


def _scored(logits: list[float]) -> Scored:
    n = len(LABELS)
    return Scored(np.arange(n), LABELS, np.array(logits), np.zeros(n, np.int64), np.ones(n, bool))


def test_paired_difference_compares_seed_by_seed_on_the_test_share():
    debiased = {0: _scored([0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.4]), 1: _scored([0.5, 0.9, 0.2, 0.1, 0.7, 0.3, 0.6, 0.4]),
                2: _scored([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])}
    kd = {0: _scored([0.9, 0.9, 0.2, 0.8, 0.1, 0.3, 0.6, 0.4]), 1: _scored([0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.4])}
    test = np.arange(2, 8)
    split = ExposureSplit(np.arange(2), test)
    paired = paired_difference(debiased, kd, split, rounds=30)
    rows = slice(2, 8)
    diffs = [auc(LABELS[rows], debiased[s].logits[rows]) - auc(LABELS[rows], kd[s].logits[rows]) for s in (0, 1)]
    assert paired["random_auc_mean"] == pytest.approx(np.mean(diffs)) and paired["seeds"] == 2
    assert paired["random_auc_wins"] == sum(d > 0 for d in diffs)
    assert paired["random_auc_low"] <= paired["random_auc_mean"] <= paired["random_auc_high"]
    empty = np.zeros(0, np.int64)
    whole = paired_difference(debiased, kd, ExposureSplit(empty, empty), rounds=30)
    assert set(whole) == {"auc_mean", "auc_low", "auc_high", "auc_wins", "seeds"}
    assert paired_difference({}, kd, split, rounds=30) == {}
