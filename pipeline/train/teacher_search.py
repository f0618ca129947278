"""The window's teacher, with its sparse weight decay chosen by a small search where a grid is set.

Why a search and not one value: L2 on the teacher's sparse rows (`teacher.sparse_weight_decay`) moved its
AUC on Coat's random-exposure test share from 0.7522 to 0.7639 at 1e-2 (3 seeds, README quality report),
but Coat's biased calibration date preferred no decay (AUC 0.7664 against 0.7624) while the uniform share
preferred 1e-2 (0.7958 against 0.7862): what a data set needs, and where it can be told, differs. So each
grid value trains a candidate teacher (role "search", a version of its own, never `latest_teacher`), the
candidates are compared on the uniform share where the data has random exposure (`pipeline.train.exposure`:
rows training may use, never the test share), else by their own best calibration AUC, and the winner is
trained as the window's teacher. The choice and every score are recorded (`artifacts/searches/teacher-*.json`):
a rerun reads it instead of scoring again.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date

import numpy as np

from pipeline.artifacts import recorded_search, teacher_folder
from pipeline.config import Settings
from pipeline.dates import ONE_DAY
from pipeline.metrics import auc
from pipeline.train.exposure import ExposureSplit, exposure_split
from pipeline.train.teacher import TeacherRun, teacher_version, train_teacher
from pipeline.train.teacher_model import open_teacher
from pipeline.train.teacher_scoring import score_teacher
from pipeline.train.windows import holdout_period

log = logging.getLogger(__name__)


def fit_teacher(settings: Settings, days: list[date], validation_days: list[date]) -> TeacherRun:
    """The teacher of `days` (validated on `validation_days`, the last being the calibration date), its
    sparse weight decay searched over `teacher.sparse_weight_decay_search` when that is set."""
    grid = settings.teacher.sparse_weight_decay_search
    if not grid:
        return train_teacher(settings, days, validation_days)
    calibration = validation_days[-1]
    split = exposure_split(settings, calibration, calibration + ONE_DAY)
    share = split if len(split.uniform) >= settings.debias.uniform_min_rows else None
    key = (f"{[str(d) for d in days]}|{[str(d) for d in validation_days]}|{settings.config_hash()}|"
           f"{hashlib.sha1(split.uniform.tobytes()).hexdigest() if share else 'no uniform share'}")

    def run() -> dict[str, object]:
        scores = [(value, _candidate_auc(with_decay(settings, value), days, validation_days, share))
                  for value in grid]
        best = max(scores, key=lambda row: row[1])[0]  # the first grid value wins a tie
        where = "the uniform share" if share else str(calibration)
        log.info("teacher sparse weight decay search on %s: %s → %s", where, scores, best)
        return {"choice": best, "scored_on": where, "scores": scores}

    record = recorded_search(settings, "teacher", days[-1], key, run)
    return train_teacher(with_decay(settings, float(record["choice"])), days, validation_days)


def with_decay(settings: Settings, value: float) -> Settings:
    """`settings` with the teacher's sparse weight decay `value` and no search."""
    return settings.model_copy(update={"teacher": settings.teacher.model_copy(
        update={"sparse_weight_decay": value, "sparse_weight_decay_search": []})})


def _candidate_auc(settings: Settings, days: list[date], validation_days: list[date],
                   share: ExposureSplit | None) -> float:
    """A candidate teacher's AUC on the uniform share (its best calibration AUC without one); a finished
    candidate is read, not trained again."""
    folder = teacher_folder(settings, teacher_version(settings, days, "search"))
    manifest = (folder.manifest() if folder.manifest_path.exists()
                else teacher_folder(settings, train_teacher(settings, days, validation_days, "search").version).manifest())
    if share is None:
        return float(manifest.metrics["val_auc"])
    calibration = validation_days[-1]
    net = open_teacher(settings, manifest.version)
    try:
        scored = score_teacher(net, settings, [calibration, *holdout_period(settings, calibration + ONE_DAY)],
                               neutral_position=False)
    finally:
        net.server.close()
    rows = np.isin(scored.sample_id, share.uniform)
    value = auc(scored.labels[rows], scored.logits[rows])
    if not np.isfinite(value):
        raise ValueError(f"the uniform share of {calibration} has {int(rows.sum())} rows of one label: it cannot "
                         "compare teachers (raise evaluation.uniform_share or clear teacher.sparse_weight_decay_search)")
    return value
