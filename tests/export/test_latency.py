"""The release summary's latency gain scores one pooled ranking request three ways."""

from __future__ import annotations

import pytest
import torch

from pipeline.export.latency import measure, ranking_request
from pipeline.models.config import StudentConfig
from pipeline.models.quantize import quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import PlantedClickWorld

CONFIG = StudentConfig.preset("tiny")


def _requests():
    return list(PlantedClickWorld(CONFIG.features, seed=0).sample(
        n_requests=5, n_candidates=8, sequence_length=CONFIG.sequence_length, seed=1).requests())


def test_a_ranking_request_pools_candidates_behind_the_first_user():
    requests = _requests()
    user, pool = ranking_request(requests, 100)  # more than the 40 held-out rows: the pool cycles
    assert all(torch.equal(user[k], requests[0][0][k]) for k in user)
    assert {len(v) for v in pool.values()} == {100}
    assert torch.equal(pool[next(iter(pool))][8:16], requests[1][1][next(iter(pool))])


def test_the_three_paths_are_timed_on_the_same_request():
    student = UGSepStudent(CONFIG).eval()
    result = measure(student, quantize_w8a16(student), _requests(), candidates=32, repeats=3)
    assert result.candidates == 32
    assert min(result.naive_ms, result.reuse_ms, result.w8a16_ms) > 0
    assert result.served_ms == min(result.reuse_ms, result.w8a16_ms)
    assert result.served == ("w8a16" if result.w8a16_ms < result.reuse_ms else "reuse")
    assert result.gain == pytest.approx(result.naive_ms / result.served_ms)


def test_no_requests_is_an_error():
    student = UGSepStudent(CONFIG).eval()
    with pytest.raises(ValueError, match="at least one held-out request"):
        measure(student, student, [])
