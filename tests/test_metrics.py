"""Metrics on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import auc, bootstrap_transferability, gauc, logloss, transferability


def test_transferability_on_hand_made_numbers():
    assert transferability(auc_teacher=0.80, auc_base=0.70, auc_kd=0.76) == pytest.approx(0.6)
    assert transferability(0.80, 0.70, 0.70) == 0.0
    assert transferability(0.80, 0.70, 0.82) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="undefined"):
        transferability(0.7, 0.7, 0.75)


def test_auc_and_gauc_on_hand_made_numbers():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.3])
    users = np.array([1, 1, 1, 2, 2, 2])
    assert auc(labels, scores) == pytest.approx(6 / 9)
    # user 1: pairs (0.9>0.1, 0.9>0.8) → 1.0; user 2: (0.2 vs 0.3 ✗, 0.7>0.3 ✓) → 0.5; equal weights.
    assert gauc(labels, scores, users) == pytest.approx(0.75)
    assert np.isnan(auc(np.ones(3), np.arange(3)))
    assert logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


def test_bootstrap_interval_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    signal = labels + rng.normal(0, 1.0, 2000)
    teacher = signal + rng.normal(0, 0.3, 2000)
    base = signal + rng.normal(0, 1.5, 2000)
    kd = signal + rng.normal(0, 0.8, 2000)
    estimate = bootstrap_transferability(labels, teacher, base, kd, rounds=100)
    assert estimate.low <= estimate.value <= estimate.high
    assert 0 < estimate.value < 1
