"""The promotion gate's rules, without MLflow: AUC tolerance, W8A16 parity, and the decision."""

from __future__ import annotations

import json

from pipeline.config import RegistryConfig
from pipeline.registry.gate import Check, Decision, auc_check, parity_check

CONFIG = RegistryConfig(auc_tolerance=0.002, parity_max_abs_logit_diff=0.05, parity_max_auc_drop=0.001)
PARITY = {"max_abs_logit_diff": 0.01, "auc_reference": 0.7000, "auc_candidate": 0.6995}


def test_auc_may_trail_the_champion_by_the_tolerance_but_no_more() -> None:
    assert auc_check(0.7485, 0.7500, CONFIG.auc_tolerance).passed
    assert auc_check(0.7600, 0.7500, CONFIG.auc_tolerance).passed
    refused = auc_check(0.7470, 0.7500, CONFIG.auc_tolerance)
    assert not refused.passed and "behind by 0.0030 (tolerance 0.002)" in refused.detail


def test_first_version_passes_auc_without_a_champion() -> None:
    check = auc_check(0.61, None, CONFIG.auc_tolerance)
    assert check.passed and "no champion yet" in check.detail


def test_parity_within_limits_passes() -> None:
    assert parity_check(PARITY, CONFIG).passed


def test_parity_over_a_limit_or_missing_fails() -> None:
    assert not parity_check({**PARITY, "max_abs_logit_diff": 0.2}, CONFIG).passed
    assert not parity_check({**PARITY, "auc_candidate": 0.6980}, CONFIG).passed
    missing = parity_check(None, CONFIG)
    assert not missing.passed and "no W8A16 parity report" in missing.detail


def test_decision_promotes_only_when_every_check_passes_and_tags_its_reasons() -> None:
    passing = (Check("parity", True, "ok"), Check("signature", True, "ok"), Check("auc", True, "ok"))
    assert Decision("m", "3", "2", passing, 0.75, 0.74).promoted
    refused = Decision("m", "3", "2", (*passing[:2], Check("auc", False, "behind")), 0.70, 0.74)
    assert not refused.promoted
    tags = refused.tags()
    assert tags["gate.decision"] == "refused" and tags["gate.champion_before"] == "2"
    assert tags["gate.challenger_gate_day_auc"] == "0.700000" and tags["gate.champion_gate_day_auc"] == "0.740000"
    assert [c["name"] for c in json.loads(tags["gate.checks"]) if not c["passed"]] == ["auc"]
    assert refused.reasons[-1] == "auc: FAIL (behind)"
