"""`recdistill registry …`: register, promote, roll back, list and serve through the MLflow registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from pipeline.config import Settings, load_settings
from pipeline.lineage import Lineage
from pipeline.mlflow_store import experiment_page
from pipeline.registry.heldout import HeldoutAUC
from pipeline.registry.registry import (
    list_versions,
    model_uri,
    promote,
    register_student,
    register_teacher,
    rollback,
    version_card,
)

registry_app = typer.Typer(help="MLflow registry: register with lineage, gated promotion, rollback, serving.",
                           no_args_is_help=True)
console = Console()

class Kind(str, Enum):
    student = "student"
    teacher = "teacher"


ProfileOpt = Annotated[Optional[str], typer.Option("--profile", help="config profile: tiny, demo, prod")]


def _settings(profile: str | None) -> Settings:
    try:
        return load_settings(profile)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--profile") from err


@contextmanager
def _reported() -> Iterator[None]:
    """Registry and input errors end the command with their message, not a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError, MlflowException) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err


def _metrics(pairs: list[str]) -> dict[str, float]:
    metrics = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            if not name:
                raise ValueError(pair)
            metrics[name] = float(value)
        except ValueError as err:
            raise typer.BadParameter(f"{pair!r} is not NAME=NUMBER", param_hint="--metric") from err
    return metrics


@registry_app.command("register")
def register(
    kind: Annotated[Kind, typer.Argument(help="what SOURCE is")],
    source: Annotated[str, typer.Argument(help="student: exported artifact folder; teacher: parameter-server "
                                               "snapshot (a snapshot or checkpoint folder, or a URI)")],
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first training date")],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="last training date")],
    teacher_version: Annotated[Optional[str], typer.Option(help="student: its teacher's registered version")] = None,
    parity: Annotated[Optional[Path], typer.Option(help="student: JSON of its W8A16 ParityReport.to_dict()")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(help="evaluation metric NAME=NUMBER (repeatable)")] = None,
    profile: ProfileOpt = None,
) -> None:
    """Register a student (alias `challenger`) or a teacher snapshot pointer, with lineage tags."""
    settings = _settings(profile)
    config = settings.registry
    with _reported():
        lineage = Lineage.collect(settings, [start.date(), end.date()], teacher_version=teacher_version,
                                  metrics=_metrics(metric or []),
                                  parity=json.loads(parity.read_text()) if parity else None)
        if kind is Kind.student:
            version = register_student(settings, Path(source), lineage)
            console.print(f"{config.student_model} version {version} registered as @{config.challenger_alias}")
        else:
            version = register_teacher(settings, source, lineage)
            console.print(f"{config.teacher_model} version {version} registered → {source}")


@registry_app.command("promote")
def promote_cmd(
    heldout: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                          help="parquet of held-out requests with labels (write_heldout)")],
    version: Annotated[Optional[str], typer.Option(help="version to promote; default: @challenger")] = None,
    profile: ProfileOpt = None,
) -> None:
    """Gate a version against @champion on held-out data; move @champion only if every check passes."""
    settings = _settings(profile)
    config = settings.registry
    with _reported():
        decision = promote(settings, HeldoutAUC(heldout), version, heldout.stem)
    for reason in decision.reasons:
        console.print(f"  {reason}")
    if not decision.promoted:
        console.print(f"[red]refused:[/red] version {decision.version} stays out; @{config.champion_alias} is "
                      f"still {decision.champion_before or 'unset'}")
        raise typer.Exit(1)
    console.print(f"[green]promoted:[/green] @{config.champion_alias} {decision.champion_before or '(none)'} → "
                  f"{decision.version}")


@registry_app.command("rollback")
def rollback_cmd(
    to: Annotated[Optional[str], typer.Option("--to", help="version to restore; default: the champion the "
                                                           "current one replaced")] = None,
    reason: Annotated[str, typer.Option(help="why, recorded on the demoted version")] = "",
    profile: ProfileOpt = None,
) -> None:
    """Move @champion back to a former champion."""
    settings = _settings(profile)
    config = settings.registry
    with _reported():
        restored = rollback(settings, to, reason)
    console.print(f"@{config.champion_alias} → version {restored}")


@registry_app.command("list")
def list_cmd(teacher: Annotated[bool, typer.Option("--teacher", help="list teacher versions")] = False,
             profile: ProfileOpt = None) -> None:
    """Versions with aliases, lineage and the gate's last decision, newest first."""
    settings = _settings(profile)
    config = settings.registry
    with _reported():
        versions = list_versions(settings, "teacher" if teacher else "student")
    table = Table(title=config.teacher_model if teacher else config.student_model)
    for column in ("version", "aliases", "data dates", "teacher", "code", "config", "gate", "AUC"):
        table.add_column(column)
    for v in versions:
        tags = v.tags
        table.add_row(str(v.version), ", ".join(f"@{a}" for a in v.aliases), tags.get("lineage.data_dates", ""),
                      tags.get("lineage.teacher_version", tags.get("teacher.snapshot", "")),
                      tags.get("lineage.code_version", ""), tags.get("lineage.config_hash", ""),
                      tags.get("gate.decision", ""), tags.get("gate.challenger_gate_day_auc", ""))
    console.print(table)


@registry_app.command("show")
def show(version: Annotated[Optional[str], typer.Argument(help="default: @champion, else the newest")] = None,
         teacher: Annotated[bool, typer.Option("--teacher", help="a teacher version")] = False,
         profile: ProfileOpt = None) -> None:
    """A version's model card: what it is, inputs, how to call it, data window, teacher, gate, metrics.

    The same text is the version's description in the MLflow UI.
    """
    settings = _settings(profile)
    config = settings.registry
    name = config.teacher_model if teacher else config.student_model
    with _reported():
        versions = list_versions(settings, "teacher" if teacher else "student")
        if not versions:
            raise ValueError(f"{name} has no registered version yet")
        champion = next((v for v in versions if config.champion_alias in v.aliases), None)
        chosen = version or str((champion or versions[0]).version)
        console.print(Markdown(version_card(settings, name, chosen)))


@registry_app.command("ui")
def ui(url: Annotated[str, typer.Argument(help="the MLflow UI's address")] = "http://127.0.0.1:5000",
       profile: ProfileOpt = None) -> None:
    """Links to the experiment's runs (in the Model training view) and to both registered models."""
    settings = _settings(profile)
    config = settings.registry
    with _reported():
        console.print(f"runs:     {experiment_page(settings, url)}")
        for name in (config.student_model, config.teacher_model):
            console.print(f"registry: {url.rstrip('/')}/#/models/{name}")


@registry_app.command("serve")
def serve(
    version: Annotated[Optional[str], typer.Option(help="serve this version instead of an alias")] = None,
    alias: Annotated[Optional[str], typer.Option(help="alias to serve; default: champion")] = None,
    model_uri_: Annotated[Optional[str], typer.Option("--model-uri", help="serve this model URI instead "
                                                      "(e.g. models:/NAME@champion)")] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 5001,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="largest request body, MiB")] = 8.0,
    profile: ProfileOpt = None,
) -> None:
    """Serve the student over HTTP in this process until SIGTERM or SIGINT (nothing is left running)."""
    import os

    from pipeline.registry.serving import Limits
    from pipeline.registry.serving import serve as serve_model

    settings = _settings(profile)
    config = settings.registry
    uri = model_uri_ or model_uri(config.student_model, version=version,
                                  alias=None if version else alias or config.champion_alias)
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.tracking_uri)
    os.environ.setdefault("MLFLOW_REGISTRY_URI", settings.tracking_uri)
    console.print(f"serving {uri} on http://{host}:{port}")
    with _reported():
        serve_model(uri, host, port, Limits(max_body_bytes=int(max_body_mb * 1024 * 1024)))
