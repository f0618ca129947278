"""The teacher as training and scoring use it: the model over its parameter server, its batches, its loss."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.artifacts import teacher_folder, teacher_manifest
from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.hps.config import HPSConfig
from pipeline.hps.embedding import PSEmbedding
from pipeline.hps.server import ParameterServer
from pipeline.models.config import SEQ_ITEM_CATEGORY, SEQ_ITEM_ID
from pipeline.models.teacher import TeacherEnsemble, build_teacher
from pipeline.slots import SPARSE_SLOTS
from pipeline.train.loop import Batch
from pipeline.train.model_configs import teacher_config
from pipeline.train.ranks import rank_world, row_slice


def hps_config(settings: Settings, ssd_path: Path) -> HPSConfig:
    """The parameter server behind the teacher's sparse tables, its SSD tier at `ssd_path`."""
    cfg = settings.teacher
    return HPSConfig(dim=teacher_config(settings).row_width, num_keys=settings.features.hash_buckets,
                     optimizer=cfg.sparse_optimizer, lr=cfg.sparse_lr, weight_decay=cfg.sparse_weight_decay,
                     init_scale=cfg.init_scale, seed=cfg.seed, memory_capacity_bytes=cfg.memory_tier_mib << 20,
                     ssd_path=ssd_path, prefetch=True)


class TeacherWithPS(nn.Module):
    """The teacher plus the server behind its embeddings; `ids_of` names every id a batch reads."""

    def __init__(self, settings: Settings, server: ParameterServer) -> None:
        super().__init__()
        self.server = server
        self.model = build_teacher(teacher_config(settings), PSEmbedding(server, slots=None))

    @staticmethod
    def ids_of(batch: Batch) -> tuple[torch.Tensor, ...]:
        return (torch.stack([batch[s.name] for s in SPARSE_SLOTS], dim=1), batch[SEQ_ITEM_ID], batch[SEQ_ITEM_CATEGORY])


def teacher_batches(settings: Settings, days: list[date], seed: int | None) -> Iterator[Batch]:
    """The teacher's batches of `days` (shuffled by `seed`, else in order), this rank's rows of each."""
    rank, world = rank_world()
    for batch in iter_batches(settings, days, settings.teacher.batch_size, "teacher", seed=seed):
        yield row_slice(batch, rank, world)


def teacher_loss(logits: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits["click"], batch["click"])
    if "conversion" in logits:
        # Conversion is observed only after a click: learn it on clicked samples.
        clicked = batch["click"] > 0
        if bool(clicked.any()):
            loss = loss + F.binary_cross_entropy_with_logits(logits["conversion"][clicked], batch["conversion"][clicked])
    return loss


def training_loss(model: nn.Module, teacher: nn.Module, batch: Batch) -> torch.Tensor:
    """The step's loss through `model` (`teacher`, maybe wrapped by DDP): an ensemble's members each learn
    from the labels on their own loss (summed: each member's gradient is the one it would get alone), not
    through their mean logit, which would make them one wide model."""
    if isinstance(teacher, TeacherEnsemble):
        loss = torch.stack([teacher_loss(output, batch) for output in model(batch, per_member=True)]).sum()
    else:
        loss = teacher_loss(model(batch), batch)
    return loss + teacher.aux_loss()


def open_teacher(settings: Settings, version: str) -> TeacherWithPS:
    """A finished teacher, restored from its best snapshot, ready to score (close `.server` after)."""
    teacher_manifest(settings, version)  # a clear error for an unknown or unfinished version
    folder = teacher_folder(settings, version)
    server = ParameterServer(hps_config(settings, folder.serving_tier))
    net = TeacherWithPS(settings, server)
    dense = server.restore(folder.best)
    net.model.load_state_dict(dense["model"])
    return net.eval()
