"""The logit dump: a finished teacher scores one date's samples (or the streamed ones) into `teacher_logits`.

Position-aware teachers score at the neutral position (the position tower left out), so the
student does not inherit position bias. The observed-position dump exists only as the ablation
and is stored under its own label, ``<version>@observed-position``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.tables import (STREAM_SAMPLES, TEACHER_LOGITS, insert_missing_arrow, read_arrow, table_exists,
                             write_partition_arrow)
from pipeline.train.loop import Batch
from pipeline.train.teacher_model import TeacherWithPS, open_teacher, teacher_batches

OBSERVED_POSITION = "@observed-position"


def logit_label(version: str, neutral_position: bool) -> str:
    return version if neutral_position else f"{version}{OBSERVED_POSITION}"


def configured_label(settings: Settings, version: str, neutral_position: bool | None = None) -> str:
    """The label `version`'s logits are stored under: at the neutral position unless the config (or caller) says not."""
    return logit_label(version, settings.debias.neutral_position if neutral_position is None else neutral_position)


@torch.no_grad()
def _score(net: TeacherWithPS, batches: Iterable[Batch], label: str, day: date) -> pa.Table | None:
    """The teacher_logits rows of `batches` (all of `day`), or None when there are no samples."""
    neutral = not label.endswith(OBSERVED_POSITION)
    ids, clicks, conversions = [], [], []
    for batch in net.server.pipeline(batches, net.ids_of, train=False):
        logits = net.model(batch, neutral_position=neutral)
        ids.append(batch["sample_id"].numpy())
        clicks.append(logits["click"].numpy())
        conversions.append(logits.get("conversion", torch.full_like(logits["click"], float("nan"))).numpy())
    if not ids:
        return None
    rows = int(sum(len(part) for part in ids))
    return pa.table({
        "sample_id": pa.array(np.concatenate(ids), pa.int64()),
        "teacher_version": pa.array([label] * rows, pa.string()),
        "logit_click": pa.array(np.concatenate(clicks), pa.float32()),
        "logit_conversion": pa.array(np.concatenate(conversions), pa.float32()),
        "written_at": pa.array([datetime.now(timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
        "date": pa.array([day] * rows, pa.date32()),
    })


def dump_logits(settings: Settings, day: date, version: str, neutral_position: bool | None = None) -> int:
    """Write the teacher's logits for every sample of `day`; idempotent per (date, teacher version).

    An unknown teacher version or a date without samples raises before anything is written.
    """
    label = configured_label(settings, version, neutral_position)
    net = open_teacher(settings, version)
    try:
        table = _score(net, teacher_batches(settings, [day], None), label, day)
    finally:
        net.server.close()
    if table is None:
        raise ValueError(f"no training_samples on {day}: nothing to dump (run `recdistill data run --date {day}`)")
    write_partition_arrow(table, settings, TEACHER_LOGITS, day, where={"teacher_version": label})
    return table.num_rows


def unscored_stream_samples(settings: Settings, label: str) -> dict[date, pa.Array]:
    """Per date, the streamed sample_ids that have no logit under `label` yet."""
    if not table_exists(settings, STREAM_SAMPLES):
        return {}
    streamed = read_arrow(settings, STREAM_SAMPLES, columns=["sample_id", "date"])
    days = sorted(set(streamed.column("date").to_pylist()))
    scored = pa.array([], pa.int64())
    if table_exists(settings, TEACHER_LOGITS):
        logits = read_arrow(settings, TEACHER_LOGITS, days=days, columns=["sample_id", "teacher_version"])
        scored = logits.filter(pc.equal(logits.column("teacher_version"), label)).column("sample_id")
    missing = streamed.filter(pc.invert(pc.is_in(streamed.column("sample_id"), scored)))
    missing_days = sorted(set(missing.column("date").to_pylist()))
    return {day: missing.filter(pc.equal(missing.column("date"), day)).column("sample_id").combine_chunks()
            for day in missing_days}


def dump_stream_logits(settings: Settings, version: str, neutral_position: bool | None = None) -> int:
    """Score the streamed samples that lack a logit of `version`; returns how many were written.

    Rows are inserted keyed on (sample_id, teacher_version), so a rerun after a kill scores only
    what is still missing and never doubles a logit.
    """
    label = configured_label(settings, version, neutral_position)
    missing = unscored_stream_samples(settings, label)
    if not missing:
        return 0
    net = open_teacher(settings, version)
    written = 0
    try:
        for day, ids in missing.items():
            batches = iter_batches(settings, [day], settings.teacher.batch_size, "teacher", sample_ids=ids)
            table = _score(net, batches, label, day)
            if table is not None:
                insert_missing_arrow(table, settings, TEACHER_LOGITS)
                written += table.num_rows
    finally:
        net.server.close()
    return written
