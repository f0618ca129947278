"""The periodic teacher: RankMixer + long-sequence encoder, sparse tables on the parameter server.

Each run trains on a window of dates and becomes an immutable *teacher version*
(``teacher-<last date>-<hash of window, config and code>``) under ``artifacts/teachers/``: its
parameter-server snapshot (sparse rows + optimizer state + dense weights) and a manifest. Every
epoch is validated and snapshotted (``ps/``, what a killed run resumes from); the best epoch so far
is also snapshotted in ``best/``, which is the published teacher (early stopping, as for students).
A run that is not resuming warm-starts from the newest earlier teacher.
Under ``torchrun`` every rank reads the same batches and trains on its row slice of each (so all
ranks make the same parameter-server calls); dense weights are synchronised with DDP.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.hps import has_snapshot
from pipeline.hps.config import HPSConfig
from pipeline.hps.embedding import PSEmbedding
from pipeline.hps.server import ParameterServer
from pipeline.models.config import SEQ_ITEM_CATEGORY, SEQ_ITEM_ID
from pipeline.models.teacher import Teacher
from pipeline.slots import SPARSE_SLOTS
from pipeline.train.builders import teacher_config
from pipeline.train.checkpoints import write_json
from pipeline.train.loop import Batch, Scored, score
from pipeline.train.metrics import auc, gauc, logloss
from pipeline.registry.lineage import code_version
from pipeline.train.tracking import log_curves, log_params, training_run

log = logging.getLogger(__name__)
SNAPSHOTS = "ps"  # every epoch's, for resuming
BEST = "best"  # the best epoch's on the validation days: the teacher that scores, warm-starts and is registered
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TeacherRun:
    version: str
    directory: Path
    metrics: dict[str, float]
    run_id: str


def teacher_root(settings: Settings) -> Path:
    return settings.lakehouse.artifacts / "teachers"


def teacher_version(settings: Settings, days: list[date]) -> str:
    payload = f"{[str(d) for d in days]}|{settings.config_hash()}|{code_version()}"
    return f"teacher-{days[-1]:%Y%m%d}-{hashlib.sha1(payload.encode()).hexdigest()[:8]}"


def teacher_manifest(settings: Settings, version: str) -> dict[str, object]:
    """The manifest of a finished teacher; a clear error for an unknown or unfinished version."""
    path = teacher_root(settings) / version / MANIFEST
    if not path.exists():
        known = sorted(p.parent.name for p in teacher_root(settings).glob(f"*/{MANIFEST}"))
        raise ValueError(f"unknown teacher version {version!r}; finished teachers: {known or 'none'}")
    return json.loads(path.read_text())


def latest_teacher(settings: Settings, before: str | None = None, data_before: date | None = None) -> str | None:
    """The finished teacher with the newest data window, optionally other than the version `before`
    and trained only on dates before `data_before`."""
    finished = []
    for path in teacher_root(settings).glob(f"*/{MANIFEST}"):
        manifest = json.loads(path.read_text())
        last_day = manifest["data_dates"][-1]
        if manifest["version"] != before and (data_before is None or last_day < str(data_before)):
            finished.append((last_day, manifest["finished_at"], manifest["version"]))
    return max(finished)[2] if finished else None


def hps_config(settings: Settings, directory: Path) -> HPSConfig:
    cfg = settings.teacher
    return HPSConfig(dim=cfg.embedding_dim, num_keys=settings.features.hash_buckets, optimizer="rowwise_adagrad",
                     lr=cfg.sparse_lr, init_scale=0.05, seed=cfg.seed, memory_capacity_bytes=cfg.memory_tier_mib << 20,
                     ssd_path=directory / "ssd", prefetch=True)


class TeacherWithPS(nn.Module):
    """The teacher plus the server behind its embeddings; `ids_of` names every id a batch reads."""

    def __init__(self, settings: Settings, server: ParameterServer) -> None:
        super().__init__()
        self.server = server
        self.model = Teacher(teacher_config(settings), embeddings=PSEmbedding(server, slots=None))

    @staticmethod
    def ids_of(batch: Batch) -> tuple[torch.Tensor, ...]:
        return (torch.stack([batch[s.name] for s in SPARSE_SLOTS], dim=1), batch[SEQ_ITEM_ID], batch[SEQ_ITEM_CATEGORY])


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _my_rows(batch: Batch, rank: int, world: int) -> Batch:
    return batch if world == 1 else {k: v[rank::world] for k, v in batch.items()}


def _batches(settings: Settings, days: list[date], seed: int | None) -> Iterator[Batch]:
    rank, world = _rank_world()
    for batch in iter_batches(settings, days, settings.teacher.batch_size, "teacher", seed=seed):
        yield _my_rows(batch, rank, world)


def teacher_loss(logits: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits["click"], batch["click"])
    if "conversion" in logits:
        # Conversion is observed only after a click: learn it on clicked samples.
        clicked = batch["click"] > 0
        if bool(clicked.any()):
            loss = loss + F.binary_cross_entropy_with_logits(logits["conversion"][clicked], batch["conversion"][clicked])
    return loss


def score_teacher(net: TeacherWithPS, settings: Settings, days: list[date], neutral_position: bool) -> Scored:
    """Click logits for `days` through the parameter server (no admission, no updates)."""
    net.eval()
    batches = net.server.pipeline(_batches(settings, days, None), net.ids_of, train=False)
    try:
        mine = score(batches, lambda b: net.model(b, neutral_position=neutral_position)["click"], "teacher scoring")
    except ValueError as err:
        raise ValueError(f"no training_samples on {[str(d) for d in days]}") from err
    return _gathered(mine)


def _gathered(mine: Scored) -> Scored:
    """Every rank's row slice put back together, so metrics under torchrun cover all rows."""
    _, world = _rank_world()
    if world == 1:
        return mine
    parts: list[Scored | None] = [None] * world
    dist.all_gather_object(parts, mine)
    fields = ("sample_id", "labels", "logits", "users", "random_exposure")
    return Scored(*(np.concatenate([getattr(part, f) for part in parts]) for f in fields))  # type: ignore[arg-type]


def evaluate_scored(scored: Scored, prefix: str) -> dict[str, float]:
    probabilities = 1 / (1 + np.exp(-scored.logits))
    return {f"{prefix}auc": auc(scored.labels, scored.logits),
            f"{prefix}gauc": gauc(scored.labels, scored.logits, scored.users),
            f"{prefix}logloss": logloss(scored.labels, probabilities)}


def open_teacher(settings: Settings, version: str) -> TeacherWithPS:
    """A finished teacher, restored from its snapshot, ready to score."""
    teacher_manifest(settings, version)
    directory = teacher_root(settings) / version
    server = ParameterServer(hps_config(settings, directory / "serve"))
    net = TeacherWithPS(settings, server)
    dense = server.restore(directory / BEST)
    net.model.load_state_dict(dense["model"])
    return net.eval()


def train_teacher(settings: Settings, days: list[date], validation_days: list[date]) -> TeacherRun:
    """Train (or resume) the teacher version for `days`; per-epoch metrics on `validation_days`."""
    if not days:
        raise ValueError("train_teacher needs at least one training date (--from/--to)")
    cfg = settings.teacher
    rank, world = _rank_world()
    version = teacher_version(settings, days)
    directory = teacher_root(settings) / version
    snapshots = directory / SNAPSHOTS
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    server = ParameterServer(hps_config(settings, directory / f"rank{rank}"))
    net = TeacherWithPS(settings, server)
    model: nn.Module = nn.parallel.DistributedDataParallel(net.model) if world > 1 else net.model
    optimizer = torch.optim.Adam(net.model.parameters(), lr=cfg.lr)
    start_epoch, losses, validation = 1, [], []  # per epoch: mean train loss, validation metrics
    warm_from = None
    if has_snapshot(snapshots):
        dense = server.restore(snapshots)
        net.model.load_state_dict(dense["model"])
        optimizer.load_state_dict(dense["optimizer"])
        start_epoch, losses, validation = (int(dense["epoch"]) + 1, json.loads(dense["losses"]),
                                           json.loads(dense["validation"]))
        log.info("resuming %s after epoch %d", version, start_epoch - 1)
    elif (warm_from := latest_teacher(settings, before=version)) is not None:
        dense = server.restore(teacher_root(settings) / warm_from / BEST)
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
                losses.append(_train_epoch(net, model, optimizer, settings, days, epoch))
                metrics = evaluate_scored(score_teacher(net, settings, validation_days, neutral_position=False), "val_")
                validation.append(metrics)
                if tracked:
                    mlflow.log_metrics({"train_loss": losses[-1], **metrics, **server.stats().as_dict()}, step=epoch)
                if metrics["val_auc"] > max((m["val_auc"] for m in validation[:-1]), default=-1.0):
                    # Before the epoch snapshot: a run killed in between redoes this epoch and rewrites it.
                    server.checkpoint(directory / BEST, dense={"model": net.model.state_dict(), "epoch": epoch})
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
                write_json(directory / MANIFEST, {
                    "version": version, "data_dates": [str(d) for d in days], "config_hash": settings.config_hash(),
                    "code_version": code_version(), "snapshot": str((directory / BEST).resolve()),
                    "warm_start": warm_from,
                    "metrics": metrics, "best_epoch": best_epoch, "validation_aucs": val_aucs,
                    "run_id": run.info.run_id, "world_size": world,
                    "finished_at": datetime.now(timezone.utc).isoformat(),
                })
    finally:
        server.close()
    return TeacherRun(version, directory, metrics, run.info.run_id if tracked else "")


def _train_epoch(net: TeacherWithPS, model: nn.Module, optimizer: torch.optim.Optimizer, settings: Settings,
                 days: list[date], epoch: int) -> float:
    """One pass over `days` through the parameter server; returns the mean loss.

    Batch order and position dropout are seeded by the epoch, so a resumed epoch draws what it drew.
    """
    seed = settings.teacher.seed * 1000 + epoch
    net.train()
    torch.manual_seed(seed)
    total, steps = 0.0, 0
    for batch in net.server.pipeline(_batches(settings, days, seed), net.ids_of):
        optimizer.zero_grad(set_to_none=True)
        loss = teacher_loss(model(batch), batch) + net.model.aux_loss()
        loss.backward()
        optimizer.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1)


def init_distributed_from_env() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def register_teacher_version(settings: Settings, version: str) -> str:
    """Register a finished teacher in MLflow (a pointer to its snapshot); returns the registry version.

    Idempotent: a teacher registered before keeps its registry version.
    """
    from pipeline.registry.lineage import Lineage
    from pipeline.registry.registry import register_teacher

    manifest = teacher_manifest(settings, version)
    if manifest.get("registry_version"):
        return str(manifest["registry_version"])
    days = [date.fromisoformat(d) for d in manifest["data_dates"]]  # type: ignore[union-attr]
    lineage = Lineage.collect(settings, days, metrics=manifest["metrics"])  # type: ignore[arg-type]
    registry_version = register_teacher(settings, teacher_root(settings) / version / BEST, lineage)
    write_json(teacher_root(settings) / version / MANIFEST, {**manifest, "registry_version": registry_version})
    return registry_version
