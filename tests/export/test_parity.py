"""Parity reports compare two request scorers on the same labelled requests."""

from __future__ import annotations

import pytest

from pipeline.export.parity import parity_report
from pipeline.models.config import StudentConfig
from pipeline.models.quantize import quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import PlantedClickWorld

CONFIG = StudentConfig.preset("tiny")


def _requests():
    return PlantedClickWorld(CONFIG.features, seed=0).sample(n_requests=40, n_candidates=8,
                                                             sequence_length=CONFIG.sequence_length, seed=1)


def test_a_scorer_is_at_parity_with_itself():
    student = UGSepStudent(CONFIG).eval()
    report = parity_report(student.score, student.score, _requests().requests())
    assert report.max_abs_logit_diff == 0 and report.delta_auc == 0
    assert (report.n_requests, report.n_rows) == (40, 320)


def test_w8a16_report_measures_its_drift():
    student = UGSepStudent(CONFIG).eval()
    report = parity_report(student.score, quantize_w8a16(student).score, _requests().requests())
    assert 0 < report.max_abs_logit_diff < 0.05
    assert abs(report.delta_auc) < 0.05
    assert set(report.to_dict()) >= {"max_abs_logit_diff", "delta_auc", "auc_reference", "auc_candidate"}


def test_an_empty_request_stream_is_an_error():
    student = UGSepStudent(CONFIG).eval()
    with pytest.raises(ValueError, match="at least one request"):
        parity_report(student.score, student.score, iter(()))
