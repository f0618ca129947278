"""The random-exposure protocol: a uniform share that training may use, a test share nothing touches.

Where a data set has random-exposure rows (scenario `random`: items shown at random, the unbiased
test), those of the calibration and held-out dates are split by a seeded, user-stratified draw:
each user gives about `evaluation.uniform_share` of their rows to the *uniform share* (what
calibration, early stopping and the selection-bias debiasing part may use), the rest of the
held-out date's are the *test share*, on which every random-exposure AUC is computed and which
nothing trains or early-stops on. The draw depends only on (seed, sample_id, user), so reruns and
other readers get the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow.compute as pc

from pipeline.config import Settings
from pipeline.tables import TRAINING_SAMPLES, read_arrow, table_exists
from pipeline.train.windows import holdout_period


@dataclass(frozen=True)
class ExposureSplit:
    """Sample ids of the two disjoint shares (sorted); both empty where there is no random exposure."""

    uniform: np.ndarray
    test: np.ndarray

    @property
    def exists(self) -> bool:
        return len(self.uniform) + len(self.test) > 0

    def in_uniform(self, sample_id: np.ndarray) -> np.ndarray:
        return np.isin(sample_id, self.uniform)

    def in_test(self, sample_id: np.ndarray) -> np.ndarray:
        return np.isin(sample_id, self.test)


def user_stratified_draw(sample_id: np.ndarray, user: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A boolean mask choosing about `share` of each user's rows, by a seeded hash of each row.

    Every user gives floor(share·n + u) rows, u a per-user hash in [0, 1): the expected share is
    exact for every user, also those with fewer than 1/share rows.
    """
    if not 0 <= share < 1:
        raise ValueError(f"evaluation.uniform_share must be in [0, 1), got {share}")
    sample_id, user = np.asarray(sample_id, np.int64), np.asarray(user, np.int64)
    row_key, user_key = mix64(sample_id, seed), mix64(user, seed + 1)
    order = np.lexsort((row_key, user))
    sorted_user = user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_user)) + 1] if len(user) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(user)])
    fraction = (user_key[order][starts] >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    taken = np.floor(share * counts + fraction).astype(np.int64)
    rank = np.arange(len(user)) - np.repeat(starts, counts)
    chosen = np.zeros(len(user), bool)
    chosen[order] = rank < np.repeat(taken, counts)
    return chosen


def exposure_split(settings: Settings, calibration: date, holdout: date) -> ExposureSplit:
    """The split of the random-exposure rows of `calibration` and the held-out period from `holdout`
    (`windows.holdout_period`; see the module doc)."""
    if not table_exists(settings, TRAINING_SAMPLES):
        raise FileNotFoundError("training_samples does not exist; run `recdistill data run` first")
    period = holdout_period(settings, holdout)
    rows = read_arrow(settings, TRAINING_SAMPLES, days=[calibration, *period],
                      columns=["sample_id", "user_id", "scenario", "date"])
    rows = rows.filter(pc.equal(rows.column("scenario"), "random"))
    ids, users = rows.column("sample_id").to_numpy(), rows.column("user_id").to_numpy()
    uniform = user_stratified_draw(ids, users, settings.evaluation.uniform_share, settings.evaluation.uniform_seed)
    on_holdout = np.asarray(pc.not_equal(rows.column("date"), calibration).to_numpy(zero_copy_only=False), bool)
    return ExposureSplit(np.sort(ids[uniform]), np.sort(ids[~uniform & on_holdout]))


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of `values` xor a seed: a fast, well-spread 64-bit hash of integer ids."""
    x = values.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
