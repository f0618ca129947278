"""Registration, gated promotion and rollback against a real MLflow store (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.config import RegistryConfig, Settings
from pipeline.lineage import Lineage
from pipeline.registry.heldout import HeldoutAUC
from pipeline.registry.registry import (
    list_versions,
    model_uri,
    promote,
    register_student,
    register_teacher,
    rollback,
)
from tests.registry.conftest import Students, lineage_for


def _snapshot(root: Path, step: int) -> Path:
    """A parameter-server checkpoint folder whose LATEST names a snapshot with its meta.json."""
    snapshot = root / f"snapshot-{step:09d}"
    snapshot.mkdir(parents=True)
    (snapshot / "meta.json").write_text(json.dumps({"format": 1, "step": step, "dim": 8}))
    (root / "LATEST").write_text(snapshot.name)
    return snapshot


def test_teacher_version_points_at_its_pinned_snapshot(
        registry_settings: Settings, registry_config: RegistryConfig, client: MlflowClient, tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path / "checkpoints", step=1200)
    lineage = Lineage.collect(registry_settings, [registry_settings.generator.start_date], metrics={"auc": 0.7})
    version = register_teacher(registry_settings, tmp_path / "checkpoints", lineage)
    tags = client.get_model_version(registry_config.teacher_model, version).tags
    assert tags["teacher.snapshot"] == snapshot.resolve().as_uri()
    assert tags["teacher.snapshot_step"] == "1200"
    pointer = mlflow.artifacts.load_dict(f"runs:/{tags['run_id']}/teacher/snapshot.json")
    assert pointer["snapshot"] == snapshot.resolve().as_uri() and pointer["meta"]["step"] == 1200
    with pytest.raises(FileNotFoundError, match="not a parameter-server snapshot"):
        register_teacher(registry_settings, tmp_path / "nowhere", lineage)


def test_student_version_carries_lineage_and_becomes_challenger(
        registry_settings: Settings, registry_config: RegistryConfig, client: MlflowClient, students: Students,
        tmp_path: Path) -> None:
    teacher_lineage = Lineage.collect(registry_settings, [registry_settings.generator.start_date])
    teacher = register_teacher(registry_settings, _snapshot(tmp_path, step=7), teacher_lineage)
    lineage = lineage_for(registry_settings, students, teacher_version=teacher)
    version = register_student(registry_settings, students.good, lineage)

    registered = client.get_model_version(registry_config.student_model, version)
    assert registered.aliases == [registry_config.challenger_alias]
    assert Lineage.from_tags(registered.tags) == lineage
    assert registered.tags["lineage.data_dates"] == "2026-01-01..2026-01-04"
    assert registered.tags["lineage.config_hash"] == registry_settings.config_hash()
    assert json.loads(registered.tags["lineage.parity"]) == students.parity
    info = mlflow.models.get_model_info(model_uri(registry_config.student_model, version=version))
    assert info.signature.inputs.input_names()[0] == "user_id"
    assert info.metadata["recdistill"]["quantization"].startswith("w8a16")


def test_student_lineage_must_name_a_registered_teacher(
        registry_settings: Settings, registry_config: RegistryConfig, students: Students) -> None:
    lineage = lineage_for(registry_settings, students, teacher_version="41")
    with pytest.raises(ValueError, match="not registered"):
        register_student(registry_settings, students.good, lineage)


def test_gate_promotes_an_equal_student_refuses_a_worse_one_and_rollback_restores(
        registry_settings: Settings, registry_config: RegistryConfig, client: MlflowClient,
        students: Students) -> None:
    name, evaluate = registry_config.student_model, HeldoutAUC(students.heldout)

    def champion() -> str:
        return str(client.get_registered_model(name).aliases.get(registry_config.champion_alias))

    first = register_student(registry_settings, students.good, lineage_for(registry_settings, students))
    assert promote(registry_settings, evaluate).promoted  # the challenger by default
    assert champion() == first
    assert registry_config.challenger_alias not in client.get_registered_model(name).aliases

    second = register_student(registry_settings, students.good, lineage_for(registry_settings, students))
    decision = promote(registry_settings, evaluate, second)
    assert decision.promoted and decision.challenger_auc == decision.champion_auc
    assert champion() == second
    assert client.get_model_version(name, second).tags["gate.champion_before"] == first

    worse = register_student(registry_settings, students.worse, lineage_for(registry_settings, students))
    refused = promote(registry_settings, evaluate, worse)
    assert not refused.promoted
    assert refused.challenger_auc == pytest.approx(1 - refused.champion_auc, abs=0.01)
    assert refused.champion_auc > 0.55
    assert [c.name for c in refused.checks if not c.passed] == ["auc"]
    assert champion() == second  # a failed gate leaves the champion untouched
    tags = client.get_model_version(name, worse).tags
    assert tags["gate.decision"] == "refused" and "auc: FAIL" in "\n".join(refused.reasons)
    assert json.loads(tags["gate.checks"])[-1]["passed"] is False

    assert rollback(registry_settings, reason="latency regression") == first
    assert champion() == first
    demoted = client.get_model_version(name, second).tags
    assert demoted["rollback.replaced_by"] == first and demoted["rollback.reason"] == "latency regression"
    with pytest.raises(ValueError, match="was the first champion"):
        rollback(registry_settings)
    with pytest.raises(ValueError, match="never passed the promotion gate"):
        rollback(registry_settings, to_version=worse)

    listed = list_versions(registry_settings)
    assert [str(v.version) for v in listed] == [worse, second, first]
    assert listed[0].aliases == [registry_config.challenger_alias]
    assert listed[2].aliases == [registry_config.champion_alias]


def test_student_failing_w8a16_parity_is_refused(
        registry_settings: Settings, registry_config: RegistryConfig, client: MlflowClient,
        students: Students) -> None:
    drifted = {**students.parity, "max_abs_logit_diff": 0.5}
    version = register_student(registry_settings, students.good,
                               lineage_for(registry_settings, students, parity=drifted))
    decision = promote(registry_settings, HeldoutAUC(students.heldout), version)
    assert not decision.promoted
    assert [c.name for c in decision.checks if not c.passed] == ["parity"]
    assert "max |Δlogit| 0.5" in decision.reasons[0]
    assert registry_config.champion_alias not in client.get_registered_model(registry_config.student_model).aliases
