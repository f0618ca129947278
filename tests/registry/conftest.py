"""A real MLflow store (SQLite, migrated once) and real exported W8A16 students for the registry tests.

The students are a briefly trained tiny UG-Sep student and a planted worse one: the same student
with its serving head negated, so its held-out AUC is one minus the good one's.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import Tensor

from pipeline.config import RegistryConfig, Settings, load_settings
from pipeline.export.artifact import export_student
from pipeline.export.parity import parity_report
from pipeline.lineage import Lineage
from pipeline.models.config import StudentConfig
from pipeline.models.quantize import quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import PlantedClickWorld
from pipeline.registry.heldout import HeldoutAUC, write_heldout
from pipeline.registry.registry import connect, promote, register_student
from pipeline.registry.request import RequestContract

Request = tuple[dict[str, Tensor], dict[str, Tensor], Tensor]


@dataclass(frozen=True)
class Students:
    good: Path
    worse: Path
    parity: dict[str, float | int]
    heldout: Path
    requests: list[Request]

    @property
    def contract(self) -> RequestContract:
        return RequestContract.of_artifact(self.good)


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakehouse whose SQLite MLflow store is migrated once, before any test writes to it."""
    root = tmp_path_factory.mktemp("registry_lakehouse")
    settings = load_settings("tiny", lakehouse={"root": str(root)})
    assert settings.tracking_uri == f"sqlite:///{root.resolve()}/mlflow.db", \
        f"the tests would write to {settings.tracking_uri}: unset RECDISTILL_MLFLOW_URI"
    connect(settings).search_experiments()  # also keeps any stray default client off ./mlflow.db
    return root


@pytest.fixture
def registry_settings(registry_root: Path) -> Settings:
    """Model names of this test alone, so tests share the store but not each other's versions."""
    suffix = uuid.uuid4().hex[:8]
    return load_settings("tiny", lakehouse={"root": str(registry_root)},
                         registry={"student_model": f"student-{suffix}", "teacher_model": f"teacher-{suffix}"})


@pytest.fixture
def client(registry_settings: Settings) -> MlflowClient:
    return MlflowClient(registry_settings.tracking_uri)


@pytest.fixture
def registry_config(registry_settings: Settings) -> RegistryConfig:
    return registry_settings.registry


@pytest.fixture(scope="session")
def students(tmp_path_factory: pytest.TempPathFactory) -> Students:
    root = tmp_path_factory.mktemp("students")
    torch.manual_seed(0)
    config = StudentConfig.preset("tiny")
    world = PlantedClickWorld(config.features, n_users=100, n_items=200, n_categories=6, taste_weight=2.0)
    student = UGSepStudent(config)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    train = world.sample(200, 8, config.sequence_length, seed=1)
    for rows, labels in train.batches(256, generator):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(student(rows), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    inverted = copy.deepcopy(student)
    with torch.no_grad():
        head = inverted.heads.serving[-1]
        head.weight.neg_()
        head.bias.neg_()
    quantized = quantize_w8a16(student)
    parity_requests = world.sample(8, 8, config.sequence_length, seed=2).requests()
    parity = parity_report(student.score, quantized.score, parity_requests)
    good = export_student(quantized, root / "good", max_candidates=64)
    worse = export_student(quantize_w8a16(inverted), root / "worse", max_candidates=64)
    heldout_requests = list(world.sample(40, 8, config.sequence_length, seed=3).requests())
    heldout = write_heldout(root / "heldout.parquet", RequestContract.of_artifact(good), heldout_requests)
    return Students(good, worse, parity.to_dict(), heldout, heldout_requests[:4])


def lineage_for(settings: Settings, students: Students, *, teacher_version: str | None = None,
                parity: dict[str, float | int] | None = None) -> Lineage:
    """Lineage of a student trained on the tiny profile's first four days (default: the good one's parity)."""
    days = [settings.generator.start_date, settings.generator.start_date + timedelta(days=3)]
    return Lineage.collect(settings, days, teacher_version=teacher_version, parity=parity or students.parity,
                           metrics={"auc": 0.63})


@dataclass(frozen=True)
class Served:
    settings: Settings
    config: RegistryConfig
    version: str


@pytest.fixture(scope="session")
def served(registry_root: Path, students: Students) -> Served:
    """The good student registered and promoted to champion under names of its own."""
    settings = load_settings("tiny", lakehouse={"root": str(registry_root)},
                             registry={"student_model": "served-student", "teacher_model": "served-teacher"})
    version = register_student(settings, students.good, lineage_for(settings, students))
    decision = promote(settings, HeldoutAUC(students.heldout), version)
    assert decision.promoted, decision.reasons
    return Served(settings, settings.registry, version)
