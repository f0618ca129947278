"""Register the student and the teacher with lineage, promote through the gate, roll back, list.

Aliases, not stages (MLflow 3): registering a student gives it `challenger`; `promote` moves
`champion` to it only if the gate passes, and records the decision as `gate.*` tags on the version
either way; `rollback` moves `champion` back to the champion it replaced. The teacher version is a
pointer to its parameter-server snapshot, never the embedding tables themselves. Every registered
model carries a description of what it is, and every version its model card (`registry.card`),
rewritten whenever the registry learns more about it (the gate's decision, an alias).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion

from pipeline.config import Settings
from pipeline.export.loader import load_student_artifact
from pipeline.hps import snapshot_info
from pipeline.lineage import PREFIX as LINEAGE
from pipeline.lineage import Lineage
from pipeline.mlflow_store import connect, experiment_id
from pipeline.registry.card import STUDENT_DESCRIPTION, TEACHER_DESCRIPTION, model_card
from pipeline.registry.gate import PREFIX as GATE
from pipeline.registry.gate import Check, Decision, auc_check, parity_check, signature_check
from pipeline.registry.pyfunc import ARTIFACT_KEY, SERVING_MODULES
from pipeline.registry.request import RequestContract

Evaluator = Callable[[str], float]
"""Held-out AUC of the model at a `models:/` URI; the gate calls one evaluator for both models."""

METADATA_KEY = "recdistill"
SNAPSHOT_TAG = "teacher.snapshot"


def model_uri(name: str, *, version: str | None = None, alias: str | None = None) -> str:
    """`models:/name/version` or `models:/name@alias`."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version and alias")
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def register_student(settings: Settings, artifact_dir: str | Path, lineage: Lineage, run_name: str | None = None,
                     tags: Mapping[str, str] | None = None) -> str:
    """Log the exported student as a pyfunc, register it with lineage (and `tags`) and alias it `challenger`.

    The artifact is loaded first, so a corrupt or foreign one is refused before anything is written.
    `run_name` names the registration run. Returns the new version.
    """
    config = settings.registry
    client = connect(settings)
    if lineage.teacher_version is not None:
        _require_version(client, config.teacher_model, lineage.teacher_version)
    artifact = load_student_artifact(artifact_dir)
    contract = RequestContract.from_manifest(artifact.manifest)
    metadata = {METADATA_KEY: {"contract": contract.to_dict(), "program_sha256": artifact.manifest["sha256"],
                               "quantization": artifact.manifest["quantization"]}}
    run_name = run_name or f"register student {Path(artifact_dir).name} (data {lineage.data_start} … {lineage.data_end})"
    with tempfile.TemporaryDirectory() as code, _run(settings, run_name, "student", lineage) as run:
        info = mlflow.pyfunc.log_model(
            name="student", python_model=str(Path(__file__).with_name("serving_model.py")),
            artifacts={ARTIFACT_KEY: str(artifact_dir)}, code_paths=[_serving_code(Path(code))],
            signature=contract.signature(), input_example=_input_example(contract),
            pip_requirements=[f"{p}=={package_version(p)}" for p in ("mlflow", "torch", "numpy", "pandas")],
            metadata=metadata)
        version = str(mlflow.register_model(info.model_uri, config.student_model,
                                            tags={**lineage.tags(), **(tags or {}), "run_id": run.info.run_id}).version)
    _describe_model(client, config.student_model, STUDENT_DESCRIPTION)
    client.set_registered_model_alias(config.student_model, config.challenger_alias, version)
    write_card(settings, config.student_model, version)
    return version


def register_teacher(settings: Settings, snapshot: str | Path, lineage: Lineage, run_name: str | None = None,
                     tags: Mapping[str, str] | None = None) -> str:
    """Register a teacher version that points at its parameter-server snapshot; returns the version.

    `snapshot` is a snapshot folder, a checkpoint folder (its `LATEST` snapshot is pinned) or a
    remote URI (recorded as given).
    """
    config = settings.registry
    client = connect(settings)
    uri, meta = _snapshot_pointer(snapshot)
    run_name = run_name or f"register teacher (data {lineage.data_start} … {lineage.data_end})"
    with _run(settings, run_name, "teacher", lineage) as run:
        mlflow.log_dict({"snapshot": uri, "meta": meta}, "teacher/snapshot.json")
        _ensure_registered(client, config.teacher_model)
        _describe_model(client, config.teacher_model, TEACHER_DESCRIPTION)
        version_tags = {**lineage.tags(), **(tags or {}), SNAPSHOT_TAG: uri, "run_id": run.info.run_id}
        if meta:
            version_tags["teacher.snapshot_step"] = str(meta["step"])
        version = str(client.create_model_version(config.teacher_model, f"runs:/{run.info.run_id}/teacher",
                                                  run_id=run.info.run_id, tags=version_tags).version)
    write_card(settings, config.teacher_model, version)
    return version


def promote(settings: Settings, evaluate: Evaluator, version: str | None = None, day: str | None = None) -> Decision:
    """Run the gate on `version` (default: the `challenger`) against the `champion`.

    Moves `champion` only if every check passes; the decision and its reasons are tagged on the
    version either way, and its card rewritten. `evaluate` scores both models on the same held-out
    data, the requests of `day`.
    """
    config = settings.registry
    client = connect(settings)
    name = config.student_model
    aliases = _aliases(client, name)
    version = version or aliases.get(config.challenger_alias)
    if version is None:
        raise ValueError(f"no version to promote: give one, or register a student so that "
                         f"{name}@{config.challenger_alias} exists")
    champion = aliases.get(config.champion_alias)
    if champion == version:
        raise ValueError(f"version {version} of {name} is already {config.champion_alias}")
    candidate = client.get_model_version(name, version)
    parity = candidate.tags.get(f"{LINEAGE}parity")
    contract = _contract(model_uri(name, version=version))
    checks: list[Check] = [
        parity_check(json.loads(parity) if parity else None, config),
        signature_check(contract, _contract(model_uri(name, version=champion)) if champion else None)]
    challenger_auc = champion_auc = None
    if all(check.passed for check in checks):  # evaluation is the expensive part: only when it can matter
        challenger_auc = evaluate(model_uri(name, version=version))
        champion_auc = evaluate(model_uri(name, version=champion)) if champion else None
        checks.append(auc_check(challenger_auc, champion_auc, config.auc_tolerance))
    decision = Decision(name, version, champion, tuple(checks), challenger_auc, champion_auc, day)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promoted:
        client.set_registered_model_alias(name, config.champion_alias, version)
        if aliases.get(config.challenger_alias) == version:
            client.delete_registered_model_alias(name, config.challenger_alias)
        if champion is not None:
            write_card(settings, name, champion)  # its card no longer says @champion
    write_card(settings, name, version)
    return decision


def version_card(settings: Settings, name: str, version: str) -> str:
    """The model card of registry `version` of `name` (`registry.card`), as it stands now."""
    contract = _contract(model_uri(name, version=version)) if name == settings.registry.student_model else None
    return model_card(connect(settings), settings.registry, name, version, contract)


def write_card(settings: Settings, name: str, version: str) -> None:
    """Rewrite the version's description with its model card, after anything the card shows changed."""
    connect(settings).update_model_version(name, version, description=version_card(settings, name, version))


def _describe_model(client: MlflowClient, name: str, description: str) -> None:
    if client.get_registered_model(name).description != description:
        client.update_registered_model(name, description=description)


def rollback(settings: Settings, to_version: str | None = None, reason: str = "") -> str:
    """Move `champion` back to `to_version` (default: the champion the current one replaced).

    Only a former champion (a version the gate promoted) can be restored. Returns it.
    """
    config = settings.registry
    client = connect(settings)
    name = config.student_model
    current = _aliases(client, name).get(config.champion_alias)
    if current is None:
        raise ValueError(f"{name} has no {config.champion_alias}: nothing to roll back")
    target = to_version or client.get_model_version(name, current).tags.get(f"{GATE}champion_before", "none")
    if target == "none":
        raise ValueError(f"version {current} of {name} was the first {config.champion_alias}; "
                         f"give the version to roll back to")
    if target == current:
        raise ValueError(f"version {target} of {name} is already {config.champion_alias}")
    if client.get_model_version(name, target).tags.get(f"{GATE}decision") != "promoted":
        raise ValueError(f"version {target} of {name} never passed the promotion gate; "
                         f"roll back only to a former {config.champion_alias}")
    for key, value in {"rollback.replaced_by": target, "rollback.reason": reason or "unspecified",
                       "rollback.at": datetime.now(timezone.utc).isoformat(timespec="seconds")}.items():
        client.set_model_version_tag(name, current, key, value)
    client.set_registered_model_alias(name, config.champion_alias, target)
    for changed in (current, target):
        write_card(settings, name, changed)
    return target


def list_versions(settings: Settings, model: Literal["student", "teacher"] = "student") -> list[ModelVersion]:
    """Every version of the student (or teacher), newest first, with aliases and tags."""
    config = settings.registry
    name = config.student_model if model == "student" else config.teacher_model
    client = connect(settings)
    found = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), reverse=True)
    return [client.get_model_version(name, str(v)) for v in found]  # search results carry no aliases


def serve_command(settings: Settings, *, version: str | None = None, alias: str | None = None,
                  host: str = "127.0.0.1", port: int = 5001) -> tuple[list[str], dict[str, str]]:
    """The `recdistill registry serve` process of a student version (or alias), and its env vars."""
    config = settings.registry
    uri = model_uri(config.student_model, version=version, alias=alias)
    command = [sys.executable, "-m", "pipeline.cli", "registry", "serve", "--model-uri", uri,
               "--host", host, "--port", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_REGISTRY_URI": settings.tracking_uri}
    return command, env


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def _require_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as err:
        raise ValueError(f"lineage names {name} version {version}, which is not registered") from err


def _ensure_registered(client: MlflowClient, name: str) -> None:
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)


def _contract(uri: str) -> RequestContract:
    """The request contract a registered student was logged with."""
    metadata = mlflow.models.get_model_info(uri).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{uri} was not registered by recdistill: its MLmodel has no {METADATA_KEY!r} metadata")
    return RequestContract.from_manifest(metadata[METADATA_KEY]["contract"])


@contextmanager
def _run(settings: Settings, run_name: str, kind: str, lineage: Lineage) -> Iterator[Run]:
    """An MLflow run in the configured experiment holding the lineage as tags and metrics."""
    with mlflow.start_run(experiment_id=experiment_id(settings), run_name=run_name,
                          nested=mlflow.active_run() is not None) as run:
        mlflow.set_tags({**lineage.tags(), "kind": kind})
        mlflow.log_metrics(lineage.metrics)
        yield run


def _serving_code(directory: Path) -> str:
    """Copy the modules the served model imports into `directory/pipeline`; returns that folder."""
    source, target = Path(__file__).resolve().parents[1], directory / "pipeline"
    for relative in SERVING_MODULES:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)
    return str(target)


def _input_example(contract: RequestContract) -> pd.DataFrame:
    """A valid request with two candidates, stored with the model and checked by MLflow at logging."""
    from pipeline.models.synthetic import random_inputs

    generator = torch.Generator().manual_seed(0)
    user = random_inputs(contract.user_inputs, {"B": 1, "L": min(4, contract.max_sequence_length)}, generator)
    candidates = random_inputs(contract.candidate_inputs, {"B": 2}, generator)
    return pd.DataFrame([contract.to_row(user, candidates)])


def _snapshot_pointer(snapshot: str | Path) -> tuple[str, dict[str, Any] | None]:
    """(URI, meta.json contents) of a parameter-server snapshot; local ones must exist."""
    text = str(snapshot)
    if urlparse(text).scheme not in ("", "file"):
        return text, None
    path, meta = snapshot_info(Path(urlparse(text).path if text.startswith("file:") else text).resolve())
    return path.resolve().as_uri(), meta
