"""Model configs built from the data plane's schema, so models always match `training_samples`."""

from __future__ import annotations

import hashlib

from pipeline.config import Settings
from pipeline.models.config import FeatureSchema, StudentConfig, TeacherConfig
from pipeline.slots import SPARSE_SLOTS, dense_names


def feature_schema(settings: Settings) -> FeatureSchema:
    return FeatureSchema(
        user_slots=[s.name for s in SPARSE_SLOTS if s.side == "user"],
        item_slots=[s.name for s in SPARSE_SLOTS if s.side == "item" and s.name != "position"],
        item_id_slot="item_id", position_slot="position",
        n_dense_user=len(dense_names("user")), n_dense_item=len(dense_names("item")),
        hash_buckets=settings.features.hash_buckets, n_actions=4,
    )


def teacher_config(settings: Settings) -> TeacherConfig:
    cfg = settings.teacher
    return TeacherConfig.preset(cfg.preset, features=feature_schema(settings), embedding_dim=cfg.embedding_dim,
                                sequence_length=settings.sequences.teacher_length, members=cfg.members)


def teacher_model_hash(settings: Settings) -> str:
    """The teacher's shape (its model config, whose embedding width is also the parameter server's):
    what a warm start must match."""
    return hashlib.sha256(teacher_config(settings).model_dump_json().encode()).hexdigest()[:12]


def student_config(settings: Settings, auxiliary_head: bool = False) -> StudentConfig:
    cfg = settings.student
    width = {} if cfg.token_dim is None else {"token_dim": cfg.token_dim}
    return StudentConfig.preset(cfg.preset, features=feature_schema(settings), **width,
                                sequence_length=settings.sequences.student_length, auxiliary_head=auxiliary_head)
