"""Settings of the model registry and the promotion gate (to be embedded in the central config)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RegistryConfig(BaseModel):
    """Registered model names, aliases and the limits the promotion gate enforces."""

    student_model: str = "recdistill-student"
    teacher_model: str = "recdistill-teacher"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    auc_tolerance: float = Field(0.002, ge=0, description="the challenger's held-out AUC may trail the "
                                                           "champion's by at most this")
    parity_max_abs_logit_diff: float = Field(0.05, gt=0, description="W8A16 against fp32 on the parity "
                                                                       "requests, largest |Δlogit|")
    parity_max_auc_drop: float = Field(0.002, ge=0, description="W8A16 AUC may trail fp32 by at most this")
    artifact_location: str | None = Field(None, description="where a new experiment keeps artifacts; "
                                                            "None: `mlartifacts` next to a local SQLite "
                                                            "store, else the tracking server's default")
