"""The promotion gate as pure checks, so each rule is specified and tested without MLflow.

A challenger becomes champion only if every check passes: its W8A16 parity report is within the
configured limits, it accepts every request the champion's callers send, and its held-out AUC is
not worse than the champion's (on the same data) by more than the tolerance. The AUC check, the
expensive one, runs only when the other two pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from pipeline.config import RegistryConfig
from pipeline.registry.request import RequestContract

PREFIX = "gate."


@dataclass(frozen=True)
class Check:
    """One rule of the gate, its outcome and the numbers behind it."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {'pass' if self.passed else 'FAIL'} ({self.detail})"


def parity_check(parity: Mapping[str, float | int] | None, config: RegistryConfig) -> Check:
    """W8A16 against fp32: largest |Δlogit| and AUC drop within the configured limits."""
    if parity is None:
        return Check("parity", False, "the version has no W8A16 parity report")
    diff, drop = parity["max_abs_logit_diff"], parity["auc_reference"] - parity["auc_candidate"]
    passed = diff <= config.parity_max_abs_logit_diff and drop <= config.parity_max_auc_drop
    return Check("parity", passed, f"max |Δlogit| {diff:.4g} (limit {config.parity_max_abs_logit_diff:g}), "
                                   f"AUC drop {drop:.4g} (limit {config.parity_max_auc_drop:g})")


def signature_check(challenger: RequestContract, champion: RequestContract | None) -> Check:
    """The challenger must accept every request the champion's callers send."""
    if champion is None:
        return Check("signature", True, "no champion yet")
    problems = challenger.problems_against(champion)
    return Check("signature", not problems, "; ".join(problems) or "accepts the champion's requests")


def auc_check(challenger_auc: float, champion_auc: float | None, tolerance: float) -> Check:
    """Held-out AUC not worse than the champion's by more than `tolerance`."""
    if champion_auc is None:
        return Check("auc", True, f"no champion yet; challenger {challenger_auc:.4f}")
    gap = champion_auc - challenger_auc
    return Check("auc", gap <= tolerance, f"challenger {challenger_auc:.4f} vs champion {champion_auc:.4f}: "
                                          f"behind by {gap:.4f} (tolerance {tolerance:g})")


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one version; `tags` is how the registry records it."""

    model: str
    version: str
    champion_before: str | None
    checks: tuple[Check, ...]
    challenger_auc: float | None
    champion_auc: float | None
    day: str | None = None  # the held-out day both AUCs are on


    @property
    def promoted(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [str(check) for check in self.checks]

    def tags(self) -> dict[str, str]:
        tags = {f"{PREFIX}decision": "promoted" if self.promoted else "refused",
                f"{PREFIX}checks": json.dumps([asdict(c) for c in self.checks]),
                f"{PREFIX}champion_before": self.champion_before or "none",
                f"{PREFIX}decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.day is not None:
            tags[f"{PREFIX}day"] = self.day
        for name, value in (("challenger", self.challenger_auc), ("champion", self.champion_auc)):
            if value is not None:
                tags[f"{PREFIX}{name}_gate_day_auc"] = f"{value:.6f}"
        return tags
