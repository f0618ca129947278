"""Reading teacher logits back for distillation: per date and teacher version, joined by sample_id."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow.compute as pc
import torch

from pipeline.config import Settings
from pipeline.tables import TEACHER_LOGITS, read_arrow, table_exists


class LogitLookup:
    """Teacher click logits of some dates for one teacher version, looked up by sample_id.

    Holds only the requested dates of one version (16 bytes a sample), never the whole table.
    """

    def __init__(self, settings: Settings, days: list[date], teacher_version: str) -> None:
        if not table_exists(settings, TEACHER_LOGITS):
            raise FileNotFoundError("teacher_logits does not exist; run `recdistill logits dump` first")
        table = read_arrow(settings, TEACHER_LOGITS, days=days, columns=["sample_id", "teacher_version", "logit_click"])
        versions = set(pc.unique(table.column("teacher_version")).to_pylist())
        if teacher_version not in versions:
            raise ValueError(f"no teacher_logits for teacher version {teacher_version!r} on {[str(d) for d in days]}; "
                             f"versions present: {sorted(versions) or 'none'}")
        table = table.filter(pc.equal(table.column("teacher_version"), teacher_version))
        ids = table.column("sample_id").to_numpy()
        order = np.argsort(ids)
        self.sample_ids = ids[order]
        self.logits = table.column("logit_click").to_numpy()[order].astype(np.float32)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def lookup(self, sample_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, found mask) for a batch; samples without a logit get found = False."""
        ids = sample_id.numpy()
        where = np.clip(np.searchsorted(self.sample_ids, ids), 0, max(len(self.sample_ids) - 1, 0))
        found = (self.sample_ids[where] == ids) if len(self.sample_ids) else np.zeros(len(ids), bool)
        logits = np.where(found, self.logits[where] if len(self.logits) else 0.0, 0.0).astype(np.float32)
        return torch.from_numpy(logits), torch.from_numpy(found)
