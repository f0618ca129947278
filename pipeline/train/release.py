"""From a trained student to a served one: W8A16, parity, export, registration, gated promotion.

The gate and the parity report see the held-out date as real requests: samples whose user-side
inputs are identical (same user, context and sequence) form one request with N candidates.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path


from pipeline.config import Settings
from pipeline.export.artifact import export_student
from pipeline.export.latency import LatencyGain
from pipeline.export.latency import measure as measure_latency
from pipeline.export.latency import requests_of
from pipeline.export.parity import ParityReport, parity_report
from pipeline.models.quantize import quantize_w8a16
from pipeline.models.student import UGSepStudent
from pipeline.registry.evaluate import HeldoutAUC, write_heldout
from pipeline.registry.gate import Decision
from pipeline.registry.lineage import Lineage
from pipeline.registry.registry import promote, register_student
from pipeline.registry.request import RequestContract
from pipeline.train.distill import load_student
from pipeline.train.teacher import register_teacher_version

PARITY_REQUESTS = 200
LATENCY_FILE = "latency.json"


@dataclass(frozen=True)
class Release:
    export_dir: Path
    version: str
    parity: ParityReport
    latency: LatencyGain
    decision: Decision


def heldout_path(settings: Settings, holdout: date) -> Path:
    """Where the gate's held-out requests of `holdout` live (one file per date, rewritten on rerun)."""
    return settings.lakehouse.artifacts / "heldout" / f"{holdout}.parquet"


def export_release(settings: Settings, student_dir: Path, holdout: date) -> tuple[Path, ParityReport, LatencyGain]:
    """Quantize to W8A16, check parity against fp32 on `holdout`'s requests, export, store the requests.

    The export folder also gets `latency.json`: naive vs reuse vs W8A16 on a pooled ranking request.
    """
    manifest = json.loads((student_dir / "manifest.json").read_text())
    model = load_student(student_dir)
    quantized = quantize_w8a16(model)
    requests = list(requests_of(settings, holdout, model))  # one read of the held-out date serves both uses
    parity = parity_report(model.score, quantized.score, requests[:PARITY_REQUESTS])
    export_dir = settings.lakehouse.artifacts / "exports" / manifest["name"]
    latency = measure_latency(model, quantized, requests)
    # W8A16 only where it is faster on this machine (it can be slower at small N): the choice is in latency.json.
    export_student(quantized if latency.served == "w8a16" else model, export_dir)
    (export_dir / "parity.json").write_text(json.dumps(parity.to_dict(), indent=2))
    (export_dir / LATENCY_FILE).write_text(json.dumps({**asdict(latency), "gain": latency.gain, "served": latency.served},
                                                      indent=2))
    write_heldout(heldout_path(settings, holdout), RequestContract.of_artifact(export_dir), requests)
    return export_dir, parity, latency


def register_release(settings: Settings, student_dir: Path, export_dir: Path) -> str:
    """Register an exported student as `challenger`, with its lineage and parity; its registry version."""
    manifest = json.loads((student_dir / "manifest.json").read_text())
    parity = json.loads((export_dir / "parity.json").read_text())
    latency = json.loads((export_dir / LATENCY_FILE).read_text())
    teacher = manifest["teacher_version"] and register_teacher_version(settings, manifest["teacher_version"])
    lineage = Lineage.collect(settings, [date.fromisoformat(d) for d in manifest["data_dates"]],
                              teacher_version=teacher or None, parity=parity,
                              metrics={"heldout_auc_fp32": parity["auc_reference"],
                                       "heldout_auc_w8a16": parity["auc_candidate"],
                                       "latency_gain": latency["gain"]})
    return register_student(settings, export_dir, lineage)


def gate_release(settings: Settings, version: str, holdout: date) -> Decision:
    """The promotion gate for registry `version` against the champion on `holdout`'s requests."""
    return promote(settings, HeldoutAUC(heldout_path(settings, holdout)), version)


def release_student(settings: Settings, student_dir: Path, holdout: date) -> Release:
    """Export → register as `challenger` → gate, in one call (the Airflow DAG runs them as three tasks)."""
    export_dir, parity, latency = export_release(settings, student_dir, holdout)
    version = register_release(settings, student_dir, export_dir)
    return Release(export_dir, version, parity, latency, gate_release(settings, version, holdout))
