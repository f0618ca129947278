"""`recdistill registry …` end to end on the real store: register, promote, list, roll back."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.registry.cli import registry_app
from tests.registry.conftest import Students

DATES = ["--from", "2026-01-01", "--to", "2026-01-04", "--profile", "tiny"]


def test_registry_commands_register_promote_list_and_refuse_a_rollback_with_no_history(
        registry_root: Path, students: Students, tmp_path: Path) -> None:
    runner = CliRunner(env={"RECDISTILL_LAKEHOUSE_ROOT": str(registry_root), "RECDISTILL_MLFLOW_URI": None,
                            "COLUMNS": "200"})
    snapshot = tmp_path / "snapshot-000000042"
    snapshot.mkdir()
    (snapshot / "meta.json").write_text(json.dumps({"step": 42}))
    parity = tmp_path / "parity.json"
    parity.write_text(json.dumps(students.parity))

    teacher = runner.invoke(registry_app, ["register", "teacher", str(snapshot), *DATES, "--metric", "auc=0.70"])
    assert teacher.exit_code == 0, teacher.output
    assert "recdistill-teacher version 1 registered" in teacher.output
    student = runner.invoke(registry_app, ["register", "student", str(students.good), *DATES,
                                           "--teacher-version", "1", "--parity", str(parity),
                                           "--metric", "auc=0.63"])
    assert student.exit_code == 0, student.output
    assert "recdistill-student version 1 registered as @challenger" in student.output

    promoted = runner.invoke(registry_app, ["promote", "--heldout", str(students.heldout), "--profile", "tiny"])
    assert promoted.exit_code == 0, promoted.output
    assert "promoted: @champion (none) → 1" in promoted.output and "auc: pass" in promoted.output
    again = runner.invoke(registry_app, ["promote", "--heldout", str(students.heldout), "--profile", "tiny"])
    assert again.exit_code == 1 and "no version to promote" in again.output

    listed = runner.invoke(registry_app, ["list", "--profile", "tiny"])
    assert listed.exit_code == 0
    assert "@champion" in listed.output and "2026-01-01..2026-01-04" in listed.output
    assert "promoted" in listed.output

    rollback = runner.invoke(registry_app, ["rollback", "--profile", "tiny"])
    assert rollback.exit_code == 1 and "was the first champion" in rollback.output
    missing = runner.invoke(registry_app, ["register", "student", str(tmp_path / "absent"), *DATES])
    assert missing.exit_code == 1 and "cannot read the artifact manifest" in missing.output


def test_ui_links_open_the_experiment_in_the_model_training_view(registry_root: Path) -> None:
    from pipeline.config import load_settings
    from pipeline.mlflow_store import connect

    runner = CliRunner(env={"RECDISTILL_LAKEHOUSE_ROOT": str(registry_root), "RECDISTILL_MLFLOW_URI": None,
                            "COLUMNS": "200"})
    shown = runner.invoke(registry_app, ["ui", "http://127.0.0.1:5123/", "--profile", "tiny"])
    assert shown.exit_code == 0, shown.output
    settings = load_settings("tiny", lakehouse={"root": str(registry_root)})
    experiment = connect(settings).get_experiment_by_name(settings.mlflow.experiment)  # made if it was missing
    # MLflow 3.17's UI takes its GenAI / Model training view from this query, not from the experiment.
    assert f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}?workflowType=machine_learning" \
        in shown.output
    assert "http://127.0.0.1:5123/#/models/recdistill-student" in shown.output
