"""From trained models to served ones: W8A16, parity, export, registration (student and teacher), the gate.

The gate and the parity report see the held-out date as real requests: samples whose user-side
inputs are identical (same user, context and sequence) form one request with N candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date

from pipeline.artifacts import (
    ExportFolder,
    ExportManifest,
    StudentFolder,
    export_folder,
    heldout_path,
    teacher_folder,
    teacher_manifest,
)
from pipeline.config import Settings
from pipeline.export.artifact import export_student
from pipeline.export.latency import LatencyGain
from pipeline.export.latency import measure as measure_latency
from pipeline.export.latency import requests_of
from pipeline.export.loader import read_manifest
from pipeline.export.parity import ParityReport, parity_report
from pipeline.lineage import Lineage
from pipeline.models.quantize import quantize_w8a16
from pipeline.registry.card import STUDENT_TAG, TEACHER_VERSION_TAG
from pipeline.registry.gate import Decision
from pipeline.registry.heldout import HeldoutAUC, write_heldout
from pipeline.registry.registry import promote, register_student, register_teacher
from pipeline.registry.request import RequestContract
from pipeline.train.distill import load_student

PARITY_REQUESTS = 200


@dataclass(frozen=True)
class Release:
    export: ExportFolder
    version: str
    parity: ParityReport
    latency: LatencyGain
    decision: Decision


def export_release(settings: Settings, student: StudentFolder, holdout: date) -> tuple[ExportFolder, ParityReport,
                                                                                      LatencyGain]:
    """Quantize to W8A16, check parity against fp32 on `holdout`'s requests, export, store the requests.

    The export's record also holds the latency: naive vs reuse vs W8A16 on a pooled ranking request.
    """
    model = load_student(student)
    quantized = quantize_w8a16(model)
    requests = list(requests_of(settings, holdout, model))  # one read of the held-out date serves both uses
    parity = parity_report(model.score, quantized.score, requests[:PARITY_REQUESTS])
    exported = export_folder(settings, student.name)
    latency = measure_latency(model, quantized, requests)
    if settings.registry.served_path != "measured":
        latency = replace(latency, pinned=settings.registry.served_path)
    # W8A16 only where it is measured faster on this machine (it can be slower at small N) or pinned; the
    # record says which.
    # A request is a group of one scoring batch, so it has at most that many candidates.
    export_student(quantized if latency.served == "w8a16" else model, exported.directory,
                   max_candidates=settings.student.scoring_batch_size)
    contract = RequestContract.of_artifact(exported.directory)
    write_heldout(heldout_path(settings, holdout), contract, requests)
    ExportManifest(student=student.name, program_sha256=read_manifest(exported.directory)["sha256"], holdout=holdout,
                   parity=parity.to_dict(),
                   latency={**{k: v for k, v in asdict(latency).items() if k != "pinned"}, "gain": latency.gain,
                            "served_w8a16": int(latency.served == "w8a16"),
                            "served_pinned": int(latency.pinned is not None)}).write(exported.record_path)
    return exported, parity, latency


def register_release(settings: Settings, student: StudentFolder) -> str:
    """Register a student's export as `challenger`, with its lineage and parity; its registry version."""
    manifest = student.manifest()
    record = export_folder(settings, student.name).record()
    teacher = manifest.teacher_version and register_teacher_version(settings, manifest.teacher_version)
    # Named for their data: AUCs on the parity requests (the first PARITY_REQUESTS of the held-out day).
    lineage = Lineage.collect(settings, manifest.data_dates, teacher_version=teacher or None, parity=record.parity,
                              metrics={"parity_requests_auc_fp32": record.parity["auc_reference"],
                                       "parity_requests_auc_w8a16": record.parity["auc_candidate"],
                                       "latency_gain": record.latency["gain"]})
    window = f"{manifest.data_dates[0]} … {manifest.data_dates[-1]}"
    teacher_text = f", teacher v{teacher}" if teacher else ""
    tags = {f"{STUDENT_TAG}name": student.name, f"{STUDENT_TAG}kind": manifest.kind,
            f"{STUDENT_TAG}seed": str(manifest.seed)}
    if manifest.calibration_date is not None:
        tags[f"{STUDENT_TAG}calibration_date"] = str(manifest.calibration_date)
    return register_student(settings, export_folder(settings, student.name).directory, lineage,
                            f"register {manifest.kind} student seed {manifest.seed} (data {window}{teacher_text})",
                            tags)


def register_teacher_version(settings: Settings, version: str) -> str:
    """Register a finished teacher in MLflow (a pointer to its snapshot); returns the registry version.

    Idempotent: a teacher registered before keeps its registry version.
    """
    manifest = teacher_manifest(settings, version)
    if manifest.registry_version:
        return manifest.registry_version
    lineage = Lineage.collect(settings, manifest.data_dates, metrics=manifest.metrics)
    folder = teacher_folder(settings, version)
    registry_version = register_teacher(
        settings, folder.best, lineage,
        f"register teacher {version} (data {manifest.data_dates[0]} … {manifest.data_dates[-1]})",
        {TEACHER_VERSION_TAG: version})
    manifest.model_copy(update={"registry_version": registry_version}).write(folder.manifest_path)
    return registry_version


def gate_release(settings: Settings, version: str, holdout: date) -> Decision:
    """The promotion gate for registry `version` against the champion on `holdout`'s requests."""
    return promote(settings, HeldoutAUC(heldout_path(settings, holdout)), version, str(holdout))


def release_student(settings: Settings, student: StudentFolder, holdout: date) -> Release:
    """Export → register as `challenger` → gate, in one call (the Airflow DAG runs them as three tasks)."""
    exported, parity, latency = export_release(settings, student, holdout)
    version = register_release(settings, student)
    return Release(exported, version, parity, latency, gate_release(settings, version, holdout))
