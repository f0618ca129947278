"""The one config: the registry's gate, scoring and the parameter server's optimizer are settings too."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings


def test_gate_scoring_and_parameter_server_settings_take_profile_values_and_env_overrides(monkeypatch, tmp_path):
    from pipeline.train.teacher_model import hps_config

    settings = load_settings("tiny", registry={"auc_tolerance": 0.01}, teacher={"init_scale": 0.2})
    assert settings.registry.auc_tolerance == 0.01
    monkeypatch.setenv("RECDISTILL_REGISTRY__PARITY_MAX_AUC_DROP", "0.004")
    monkeypatch.setenv("RECDISTILL_TEACHER__SPARSE_OPTIMIZER", "adam")
    monkeypatch.setenv("RECDISTILL_STUDENT__SCORING_BATCH_SIZE", "256")
    settings = load_settings("tiny", teacher={"init_scale": 0.2})
    assert settings.registry.parity_max_auc_drop == 0.004 and settings.student.scoring_batch_size == 256
    ps = hps_config(settings, tmp_path / "ssd")
    assert (ps.optimizer, ps.init_scale, ps.ssd_path) == ("adam", 0.2, tmp_path / "ssd")


def test_an_unknown_sparse_optimizer_is_refused_when_settings_load(monkeypatch):
    monkeypatch.setenv("RECDISTILL_TEACHER__SPARSE_OPTIMIZER", "sgd")
    with pytest.raises(ValueError, match="sparse_optimizer"):
        load_settings("tiny")
