"""The periodic teacher: RankMixer + long-sequence encoder, sparse tables on the parameter server.

Each run trains on a window of dates and becomes an immutable *teacher version*
(``teacher-<last date>-<hash of window, config and code>``) under ``artifacts/teachers/``: its
parameter-server snapshot (sparse rows + optimizer state + dense weights) and a manifest. Every
epoch is validated and snapshotted (``ps/``, what a killed run resumes from); the best epoch so far
is also snapshotted in ``best/``, which is the published teacher (early stopping, as for students).
A run that is not resuming warm-starts from the newest earlier teacher of the same shape (a changed
preset or width starts afresh: its weights would not load), unless `teacher.warm_start` is off.
Under ``torchrun`` every rank reads the same batches and trains on its row slice of each (so all
ranks make the same parameter-server calls); dense weights are synchronised with DDP.

The model over its parameter server is `teacher_model`, scoring `teacher_scoring`, ranks `ranks`;
registering a finished teacher is part of `release`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import torch
from torch import nn

from pipeline.artifacts import TeacherManifest, latest_teacher, teacher_folder
from pipeline.config import Settings
from pipeline.hps import has_snapshot
from pipeline.hps.server import ParameterServer
from pipeline.lineage import code_version
from pipeline.train.loop import train_epoch
from pipeline.train.model_configs import teacher_config, teacher_model_hash
from pipeline.train.ranks import rank_world
from pipeline.train.teacher_model import TeacherWithPS, hps_config, teacher_batches, training_loss
from pipeline.train.teacher_scoring import evaluate_scored, score_teacher
from pipeline.train.tracking import log_curves, log_params, training_run
from pipeline.train.windows import require_samples

log = logging.getLogger(__name__)

TeacherRole = Literal["teacher", "search"]


@dataclass(frozen=True)
class TeacherRun:
    version: str
    directory: Path
    metrics: dict[str, float]
    run_id: str


def teacher_version(settings: Settings, days: list[date], role: TeacherRole = "teacher") -> str:
    """`teacher-<last date>-<hash>`: the window, the settings and the code name a version (a search
    candidate's is `teacher-search-…`, so the winner trained as the teacher is a version of its own)."""
    payload = f"{[str(d) for d in days]}|{settings.config_hash()}|{code_version()}"
    prefix = "teacher" if role == "teacher" else "teacher-search"
    return f"{prefix}-{days[-1]:%Y%m%d}-{hashlib.sha1(payload.encode()).hexdigest()[:8]}"


def train_teacher(settings: Settings, days: list[date], validation_days: list[date],
                  role: TeacherRole = "teacher") -> TeacherRun:
    """Train (or resume) the teacher version for `days`; per-epoch metrics on `validation_days`."""
    require_samples(settings, days, "teacher training")
    cfg = settings.teacher
    rank, world = rank_world()
    version = teacher_version(settings, days, role)
    folder = teacher_folder(settings, version)
    snapshots = folder.snapshots
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    server = ParameterServer(hps_config(settings, folder.training_tier(rank)))
    net = TeacherWithPS(settings, server)
    model: nn.Module = nn.parallel.DistributedDataParallel(net.model) if world > 1 else net.model
    optimizer = torch.optim.Adam(net.model.parameters(), lr=cfg.lr)
    start_epoch, losses, validation = 1, [], []  # per epoch: mean train loss, validation metrics
    warm_from = None
    shape = teacher_model_hash(settings)
    if has_snapshot(snapshots):
        dense = server.restore(snapshots)
        net.model.load_state_dict(dense["model"])
        optimizer.load_state_dict(dense["optimizer"])
        start_epoch, losses, validation = (int(dense["epoch"]) + 1, json.loads(dense["losses"]),
                                           json.loads(dense["validation"]))
        log.info("resuming %s after epoch %d", version, start_epoch - 1)
    elif cfg.warm_start and (warm_from := latest_teacher(settings, before=version, model_hash=shape)) is not None:
        dense = server.restore(teacher_folder(settings, warm_from).best)
        net.model.load_state_dict(dense["model"])
        log.info("warm-starting %s from %s", version, warm_from)

    tags = {"recdistill.teacher_version": version, "recdistill.data_dates": f"{days[0]}..{days[-1]}",
            "recdistill.warm_start": str(warm_from)}
    tracked = rank == 0  # one MLflow run per teacher: the ranks share one store, rank 0 reports for all
    try:  # a killed or failed run still stops the server's prefetch thread and closes its tiers
        with training_run(settings, version, tags) if tracked else nullcontext() as run:
            if tracked:
                log_params({**cfg.model_dump(), "world_size": world, "train_days": [str(d) for d in days],
                            "model": teacher_config(settings).model_dump_json()})
            for epoch in range(start_epoch, cfg.epochs + 1):
                # Batch order and position dropout are seeded by the epoch: a resumed epoch draws what it drew.
                seed = cfg.seed * 1000 + epoch
                net.train()
                torch.manual_seed(seed)
                batches = server.pipeline(teacher_batches(settings, days, seed), net.ids_of)
                losses.append(train_epoch(batches, lambda batch: training_loss(model, net.model, batch),
                                          optimizer, f"teacher epoch {epoch}"))
                metrics = evaluate_scored(score_teacher(net, settings, validation_days, neutral_position=False), "val_")
                validation.append(metrics)
                if tracked:
                    mlflow.log_metrics({"train_loss": losses[-1], **metrics, **server.stats().as_dict()}, step=epoch)
                if metrics["val_auc"] > max((m["val_auc"] for m in validation[:-1]), default=-1.0):
                    # Before the epoch snapshot: a run killed in between redoes this epoch and rewrites it.
                    server.checkpoint(folder.best, dense={"model": net.model.state_dict(), "epoch": epoch})
                server.checkpoint(snapshots, dense={"model": net.model.state_dict(), "epoch": epoch,
                                                    "optimizer": optimizer.state_dict(), "losses": json.dumps(losses),
                                                    "validation": json.dumps(validation)})
                log.info("teacher %s epoch %d: %s | %s", version, epoch, metrics, server.stats().summary())
            val_aucs = [m["val_auc"] for m in validation]
            best_epoch = int(np.argmax(val_aucs)) + 1  # the first with the best AUC: the one in best/
            metrics = validation[best_epoch - 1]
            if tracked:
                mlflow.log_metric("best_epoch", best_epoch)
                log_curves({"train_loss": losses, "val_auc": val_aucs}, version, "curves/teacher.png")
                TeacherManifest(
                    version=version, data_dates=days, config_hash=settings.config_hash(), code_version=code_version(),
                    snapshot=str(folder.best.resolve()), warm_start=warm_from, metrics=metrics, best_epoch=best_epoch,
                    validation_aucs=val_aucs, run_id=run.info.run_id, world_size=world,
                    finished_at=datetime.now(timezone.utc), model_hash=shape, role=role,
                ).write(folder.manifest_path)
    finally:
        server.close()
    return TeacherRun(version, folder.directory, metrics, run.info.run_id if tracked else "")
