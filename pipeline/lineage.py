"""Where a model came from: the code version, and the `Lineage` tags every registered version carries.

A base module: training records lineage and the registry checks it, so both import it from here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from datetime import date
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from pipeline.config import Settings

PREFIX = "lineage."


class Lineage(BaseModel):
    """Data dates, teacher version, code version, config hash, parity report and evaluation metrics."""

    data_start: date
    data_end: date
    config_hash: str
    code_version: str
    teacher_version: str | None = Field(None, description="version of the registered teacher whose logits "
                                                          "the student learnt from")
    parity: dict[str, float | int] | None = Field(None, description="`ParityReport.to_dict()` of the W8A16 "
                                                              "student against its fp32 original")
    metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered_dates(self) -> Lineage:
        if self.data_end < self.data_start:
            raise ValueError(f"lineage: data_end {self.data_end} is before data_start {self.data_start}")
        return self

    @classmethod
    def collect(cls, settings: Settings, dates: Sequence[date], *, teacher_version: str | None = None,
                parity: Mapping[str, float | int] | None = None,
                metrics: Mapping[str, float] | None = None) -> Lineage:
        """Lineage of a model trained now on `dates` with `settings` (hash and code version filled in)."""
        if not dates:
            raise ValueError("lineage needs the training dates; got none")
        return cls(data_start=min(dates), data_end=max(dates), config_hash=settings.config_hash(),
                   code_version=code_version(), teacher_version=teacher_version,
                   parity=dict(parity) if parity is not None else None, metrics=dict(metrics or {}))

    def tags(self) -> dict[str, str]:
        tags = {f"{PREFIX}data_dates": f"{self.data_start}..{self.data_end}",
                f"{PREFIX}config_hash": self.config_hash, f"{PREFIX}code_version": self.code_version,
                f"{PREFIX}metrics": json.dumps(self.metrics, sort_keys=True)}
        if self.teacher_version is not None:
            tags[f"{PREFIX}teacher_version"] = self.teacher_version
        if self.parity is not None:
            tags[f"{PREFIX}parity"] = json.dumps(self.parity, sort_keys=True)
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Lineage:
        """The lineage a version was registered with (inverse of `tags`)."""
        start, _, end = tags[f"{PREFIX}data_dates"].partition("..")
        parity = tags.get(f"{PREFIX}parity")
        return cls(data_start=date.fromisoformat(start), data_end=date.fromisoformat(end),
                   config_hash=tags[f"{PREFIX}config_hash"], code_version=tags[f"{PREFIX}code_version"],
                   teacher_version=tags.get(f"{PREFIX}teacher_version"),
                   parity=json.loads(parity) if parity else None,
                   metrics=json.loads(tags.get(f"{PREFIX}metrics", "{}")))


def code_version() -> str:
    """The git commit of the code ("+dirty" with uncommitted changes), else the package version."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"recdistill=={version('recdistill')}"
    return f"{commit}+dirty" if dirty else commit
