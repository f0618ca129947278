"""The logit dump: a finished teacher scores one date's samples into `teacher_logits`.

Position-aware teachers score at the neutral position (the position tower left out), so the
student does not inherit position bias. The observed-position dump exists only as the ablation
and is stored under its own label, ``<version>@observed-position``.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import torch

from pipeline.config import Settings
from pipeline.tables import TEACHER_LOGITS, write_partition_arrow
from pipeline.train.teacher import _batches, open_teacher

OBSERVED_POSITION = "@observed-position"


def logit_label(version: str, neutral_position: bool) -> str:
    return version if neutral_position else f"{version}{OBSERVED_POSITION}"


@torch.no_grad()
def dump_logits(settings: Settings, day: date, version: str, neutral_position: bool | None = None) -> int:
    """Write the teacher's logits for every sample of `day`; idempotent per (date, teacher version).

    An unknown teacher version or a date without samples raises before anything is written.
    """
    neutral = settings.debias.neutral_position if neutral_position is None else neutral_position
    net = open_teacher(settings, version)
    ids, clicks, conversions = [], [], []
    try:
        for batch in net.server.pipeline(_batches(settings, [day], None), net.ids_of, train=False):
            logits = net.model(batch, neutral_position=neutral)
            ids.append(batch["sample_id"].numpy())
            clicks.append(logits["click"].numpy())
            conversions.append(logits.get("conversion", torch.full_like(logits["click"], float("nan"))).numpy())
    finally:
        net.server.close()
    if not ids:
        raise ValueError(f"no training_samples on {day}: nothing to dump (run `recdistill data run --date {day}`)")
    rows = int(sum(len(part) for part in ids))
    table = pa.table({
        "sample_id": pa.array(np.concatenate(ids), pa.int64()),
        "teacher_version": pa.array([logit_label(version, neutral)] * rows, pa.string()),
        "logit_click": pa.array(np.concatenate(clicks), pa.float32()),
        "logit_conversion": pa.array(np.concatenate(conversions), pa.float32()),
        "written_at": pa.array([datetime.now(timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
        "date": pa.array([day] * rows, pa.date32()),
    })
    write_partition_arrow(table, settings, TEACHER_LOGITS, day, where={"teacher_version": logit_label(version, neutral)})
    return rows
