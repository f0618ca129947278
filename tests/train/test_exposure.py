"""The random-exposure protocol's draw: disjoint, deterministic, user-stratified."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.train.exposure import ExposureSplit, user_stratified_draw


def test_uniform_share_is_drawn_per_user_and_deterministically():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 40)
    ids = rng.choice(10**9, size=len(users), replace=False).astype(np.int64)  # distinct, unordered
    chosen = user_stratified_draw(ids, users, share=0.1, seed=3)
    assert np.array_equal(chosen, user_stratified_draw(ids, users, share=0.1, seed=3))
    shuffled = rng.permutation(len(ids))
    assert np.array_equal(chosen[shuffled], user_stratified_draw(ids[shuffled], users[shuffled], 0.1, 3))
    per_user = np.bincount(users[chosen], minlength=50)
    assert set(per_user) <= {4}  # 10 % of each user's 40 rows, not 10 % of the rows at large
    assert not np.array_equal(chosen, user_stratified_draw(ids, users, 0.1, seed=4))
    # Users with fewer rows than 1/share still give their share on average.
    few = np.repeat(np.arange(2000), 3)
    assert user_stratified_draw(np.arange(len(few)), few, 0.1, 0).mean() == pytest.approx(0.1, abs=0.02)


def test_shares_are_disjoint_and_a_bad_share_is_refused():
    users = np.repeat(np.arange(10), 20)
    ids = np.arange(200, dtype=np.int64)
    chosen = user_stratified_draw(ids, users, 0.25, 0)
    split = ExposureSplit(np.sort(ids[chosen]), np.sort(ids[~chosen]))
    assert not (split.in_uniform(ids) & split.in_test(ids)).any() and (split.in_uniform(ids) | split.in_test(ids)).all()
    assert ExposureSplit(np.zeros(0, np.int64), np.zeros(0, np.int64)).exists is False
    with pytest.raises(ValueError, match=r"evaluation.uniform_share must be in \[0, 1\), got 1.5"):
        user_stratified_draw(ids, users, 1.5, 0)
