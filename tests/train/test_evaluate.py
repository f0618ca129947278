"""Held-out evaluation's arithmetic on hand-made numbers (the end-to-end run is in test_training.py)."""

from __future__ import annotations

import pytest

from pipeline.train.evaluate import paired_difference


def test_paired_difference_compares_seed_by_seed_on_the_unbiased_slice():
    debiased = {0: {"auc": 0.70, "random_auc": 0.62}, 1: {"auc": 0.71, "random_auc": 0.60},
                2: {"auc": 0.70, "random_auc": 0.50}}
    kd = {0: {"auc": 0.72, "random_auc": 0.58}, 1: {"auc": 0.69, "random_auc": 0.61}}
    paired = paired_difference(debiased, kd)
    assert paired == pytest.approx({"random_auc_mean": 0.015, "random_auc_std": 0.025, "random_auc_wins": 1,
                                    "seeds": 2})
    without_random = paired_difference({0: {"auc": 0.7}}, {0: {"auc": 0.6}})
    assert without_random == pytest.approx({"auc_mean": 0.1, "auc_std": 0.0, "auc_wins": 1, "seeds": 1})
    assert paired_difference({}, kd) == {}
