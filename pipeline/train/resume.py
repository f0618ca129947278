"""A student run's resume state, saved atomically every epoch so a killed task resumes where it stopped.

(The parameter server's snapshots, which the teacher resumes from, are `hps.checkpoint`.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, state dicts, numbers, strings) atomically: a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_resume_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it belongs to the same task (`fingerprint`), else None.

    Loads with `weights_only=True`: a checkpoint never unpickles arbitrary objects.
    """
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    return state if state.get("fingerprint") == fingerprint else None
