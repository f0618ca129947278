"""Tiny configs and seeded generators: every model test runs in well under a second."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.config import StudentConfig, TeacherConfig


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def student_config() -> StudentConfig:
    return StudentConfig.preset("tiny")


@pytest.fixture
def teacher_config() -> TeacherConfig:
    return TeacherConfig.preset("tiny")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
