"""Metrics on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import auc, gauc, logloss, paired_gain, transfer_estimate, transferability


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


def test_transferability_is_a_ratio_of_means_with_an_interval_over_seeds_and_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    signal = labels + rng.normal(0, 1.0, 3000)
    teacher = signal + rng.normal(0, 0.3, 3000)
    base = signal + rng.normal(0, 1.5, (5, 3000))
    kd = signal + rng.normal(0, 0.8, (5, 3000))
    estimate = transfer_estimate(labels, teacher, base, kd, rounds=60)
    aucs = {name: np.array([auc(labels, s) for s in stack]) for name, stack in (("base", base), ("kd", kd))}
    expected = (aucs["kd"].mean() - aucs["base"].mean()) / (auc(labels, teacher) - aucs["base"].mean())
    assert estimate.value is not None and estimate.value.value == pytest.approx(expected)
    assert estimate.value.low <= expected <= estimate.value.high and 0 < estimate.value.low
    assert estimate.teacher_gain.low > 0 and estimate.seeds == 5 and estimate.note == ""


def test_transferability_is_not_measurable_when_the_teacher_gain_interval_includes_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    signal = labels + rng.normal(0, 1.0, 400)
    same = signal + rng.normal(0, 1.0, (4, 400))
    estimate = transfer_estimate(labels, same[0], same[1:3], same[2:4], rounds=60)
    assert estimate.teacher_gain.low < 0 < estimate.teacher_gain.high
    assert estimate.value is None and estimate.note.startswith("not measurable")


def test_paired_gain_is_the_mean_per_seed_difference():
    labels = np.array([0, 0, 1, 1, 0, 1])
    better = np.array([[0.1, 0.2, 0.8, 0.9, 0.3, 0.7], [0.2, 0.1, 0.9, 0.8, 0.4, 0.6]])
    worse = np.array([[0.9, 0.2, 0.8, 0.1, 0.3, 0.7], [0.2, 0.1, 0.9, 0.8, 0.7, 0.6]])
    gain = paired_gain(labels, better, worse, rounds=40)
    expected = np.mean([auc(labels, b) - auc(labels, w) for b, w in zip(better, worse)])
    assert gain.value == pytest.approx(expected) and gain.low <= gain.value <= gain.high
    with pytest.raises(ValueError, match="same seeds"):
        paired_gain(labels, better, worse[:1].repeat(3, axis=0))


def test_transferability_is_not_measurable_when_the_teacher_loses_to_the_base():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 3000)
    signal = labels + rng.normal(0, 1.0, 3000)
    teacher = signal + rng.normal(0, 1.5, 3000)  # worse than every base student
    base = signal + rng.normal(0, 0.3, (4, 3000))
    kd = signal + rng.normal(0, 0.8, (4, 3000))  # KD loses AUC: a ratio would read +x % "transfer"
    estimate = transfer_estimate(labels, teacher, base, kd, rounds=60)
    assert estimate.teacher_gain.high < 0
    assert estimate.value is None and "the teacher loses to them" in estimate.note
