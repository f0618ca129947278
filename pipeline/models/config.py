"""Typed configs of the teacher and the UG-Sep student, and the input keys every batch uses.

A batch is a dict of tensors (the first dimension is rows, B):

- one LongTensor[B] per sparse slot in `FeatureSchema`, ids already hashed per slot into
  [0, hash_buckets) (the data plane's `pipeline.slots` hashing; 0 means missing);
- ``dense_user`` FloatTensor[B, n_dense_user] and ``dense_item`` FloatTensor[B, n_dense_item]
  (raw CTRs/counts; the models apply a signed log1p);
- the behaviour sequence, **most recent first**, 0-padded at the end: ``seq_item_id``
  LongTensor[B, L] (hashed as the ``item_id`` slot, so they share its embedding rows),
  ``seq_item_category`` LongTensor[B, L] (their categories, hashed as the ``item_category`` slot),
  ``seq_action`` LongTensor[B, L] in [0, n_actions), ``seq_time_gap`` [B, L] seconds before the
  request (int or float), and ``seq_length`` LongTensor[B] (entries at index >= length are padding);
- ``position`` LongTensor[B] (hashed) for the teacher's position-bias tower, unless it scores at the
  neutral position.

The teacher gets the long sequence (L <= `TeacherConfig.sequence_length`), the student the short
one (L <= `StudentConfig.sequence_length`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from pipeline.config import STUDENT_PRESETS
from pipeline.models.inputs import InputSpec

DENSE_USER = "dense_user"
DENSE_ITEM = "dense_item"
SEQ_ITEM_ID = "seq_item_id"
SEQ_ITEM_CATEGORY = "seq_item_category"
SEQ_ACTION = "seq_action"
SEQ_TIME_GAP = "seq_time_gap"
SEQ_LENGTH = "seq_length"
SEQUENCE_KEYS = (SEQ_ITEM_ID, SEQ_ITEM_CATEGORY, SEQ_ACTION, SEQ_TIME_GAP, SEQ_LENGTH)

# Features computed inside the models from the sequence, usable in token groups like any slot.
SEQUENCE_SUMMARY = "sequence_summary"  # user side: pooled short sequence (no candidate involved)
TARGET_ATTENTION = "target_attention"  # cross: the candidate item attends over the sequence
CATEGORY_HISTORY = "category_history"  # cross: the sequence's events in the candidate's category (SIM)
CROSS_FEATURES = (TARGET_ATTENTION, CATEGORY_HISTORY)

Side = Literal["user", "item", "cross"]


class FeatureSchema(BaseModel):
    """Which slots a batch carries and which side of the request each one describes."""

    user_slots: list[str] = Field(default_factory=lambda: [
        "user_id", "user_age", "user_gender", "user_segment", "device", "hour", "scenario"])
    item_slots: list[str] = Field(default_factory=lambda: ["item_id", "item_category"])
    item_id_slot: str = "item_id"
    item_category_slot: str = "item_category"
    position_slot: str = "position"
    n_dense_user: int = Field(9, ge=1, description="pipeline.slots.dense_names('user')")
    n_dense_item: int = Field(9, ge=1, description="pipeline.slots.dense_names('item')")
    hash_buckets: int = Field(1 << 14, ge=16)
    n_actions: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _slots_are_distinct(self) -> FeatureSchema:
        names = self.user_slots + self.item_slots + [self.position_slot]
        reserved = {DENSE_USER, DENSE_ITEM, SEQUENCE_SUMMARY, *CROSS_FEATURES, *SEQUENCE_KEYS}
        duplicated = sorted({n for n in names if names.count(n) > 1} | (set(names) & reserved))
        if duplicated:
            raise ValueError(f"slot names must be distinct and not reserved; clashing: {duplicated}")
        for field in ("item_id_slot", "item_category_slot"):
            if getattr(self, field) not in self.item_slots:
                raise ValueError(f"{field} {getattr(self, field)!r} must be one of item_slots {self.item_slots}")
        return self

    def side_of(self, feature: str) -> Side:
        """The request side a token-group feature belongs to; raises for an unknown name."""
        if feature in self.user_slots or feature in (DENSE_USER, SEQUENCE_SUMMARY):
            return "user"
        if feature in self.item_slots or feature == DENSE_ITEM:
            return "item"
        if feature in CROSS_FEATURES:
            return "cross"
        known = self.user_slots + self.item_slots + [DENSE_USER, DENSE_ITEM, SEQUENCE_SUMMARY, *CROSS_FEATURES]
        raise ValueError(f"unknown feature {feature!r} in a token group; known features: {known}")

    def inputs_for(self, features: list[str]) -> list[InputSpec]:
        """Specs of the batch inputs that the given token-group features read."""
        specs: list[InputSpec] = []
        for name in dict.fromkeys(features):
            if name in self.user_slots or name in self.item_slots:
                side = "user" if name in self.user_slots else "item"
                specs.append(InputSpec(name, ("B",), ("int64",), self.hash_buckets - 1,
                                       f"{side}-side sparse slot, hashed ids"))
            elif name == DENSE_USER:
                specs.append(InputSpec(name, ("B", self.n_dense_user), ("float32",), None, "dense user features"))
            elif name == DENSE_ITEM:
                specs.append(InputSpec(name, ("B", self.n_dense_item), ("float32",), None, "dense item features"))
        return specs

    def sequence_inputs(self) -> list[InputSpec]:
        """The behaviour sequence, most recent first, padded at the end beyond `seq_length`."""
        return [
            InputSpec(SEQ_ITEM_ID, ("B", "L"), ("int64",), self.hash_buckets - 1,
                      f"sequence item ids, hashed like {self.item_id_slot!r}, most recent first"),
            InputSpec(SEQ_ITEM_CATEGORY, ("B", "L"), ("int64",), self.hash_buckets - 1,
                      f"the sequence items' categories, hashed like {self.item_category_slot!r}"),
            InputSpec(SEQ_ACTION, ("B", "L"), ("int64",), self.n_actions - 1, "sequence action ids"),
            InputSpec(SEQ_TIME_GAP, ("B", "L"), ("float32", "int64", "int32"), None,
                      "seconds between each event and the request"),
            InputSpec(SEQ_LENGTH, ("B",), ("int64",), "L", "valid events per row; the rest is padding"),
        ]

    def position_input(self) -> InputSpec:
        return InputSpec(self.position_slot, ("B",), ("int64",), self.hash_buckets - 1,
                         "hashed display position, read only by the position-bias tower")


class TokenGroup(BaseModel):
    """Semantically related features, concatenated and projected into `n_tokens` tokens of width D."""

    name: str
    features: list[str] = Field(min_length=1)
    n_tokens: int = Field(1, ge=1)


def _check_mixing_width(n_tokens: int, token_dim: int, what: str) -> None:
    # Parameter-free mixing splits each token into T heads, so D must divide by T.
    if token_dim % n_tokens:
        raise ValueError(f"{what}: token_dim {token_dim} must be divisible by the number of tokens {n_tokens}")


def _check_features(schema: FeatureSchema, groups: list[TokenGroup], allowed: set[Side], what: str) -> None:
    for group in groups:
        for feature in group.features:
            side = schema.side_of(feature)
            if side not in allowed:
                raise ValueError(f"{what}: token group {group.name!r} has {side}-side feature {feature!r}; "
                                 f"allowed sides: {sorted(allowed)}")


class TeacherConfig(BaseModel):
    """A RankMixer stack over feature tokens plus a LONGER-style encoder of the long sequence."""

    features: FeatureSchema = Field(default_factory=FeatureSchema)
    token_groups: list[TokenGroup]
    embedding_dim: int = Field(16, ge=1)
    token_dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=1)
    ffn_multiplier: int = Field(4, ge=1)
    n_experts: int = Field(0, ge=0, description="0: dense per-token FFN; >0: ReLU-routed sparse MoE")
    moe_l1_weight: float = Field(1e-3, ge=0)
    sequence_length: int = Field(256, ge=1, description="longest teacher sequence accepted (L_teacher)")
    merge_size: int = Field(8, ge=1, description="adjacent sequence items merged into one token")
    n_global_tokens: int = Field(3, ge=0)
    sequence_dim: int = Field(64, ge=1)
    sequence_heads: int = Field(4, ge=1)
    sequence_layers: int = Field(2, ge=1, description="one cross-attention layer, then self-attention")
    n_time_buckets: int = Field(32, ge=2)
    tasks: list[str] = Field(default_factory=lambda: ["click", "conversion"], min_length=1)
    tower_dim: int = Field(64, ge=1)
    position_dropout: float = Field(0.3, ge=0, lt=1, description="share of training rows without the position "
                                                                 "bias, so the main towers learn relevance")
    hard_search: bool = Field(True, description="SIM-style hard search: statistics of the history in the "
                                                "candidate's category join the candidate's interest token")
    members: int = Field(1, ge=1, description="ensemble members (`TeacherEnsemble`): each its own towers and its "
                                              "own columns of the embedding rows, logits averaged")

    @property
    def row_width(self) -> int:
        """The width of the embedding rows the teacher reads: `embedding_dim` columns per ensemble member."""
        return self.embedding_dim * self.members

    @property
    def n_sequence_tokens(self) -> int:
        """Tokens the long-sequence encoder adds: one candidate-aware interest token + globals."""
        return 1 + self.n_global_tokens

    @property
    def n_tokens(self) -> int:
        return sum(g.n_tokens for g in self.token_groups) + self.n_sequence_tokens

    def inputs(self, *, neutral_position: bool = False) -> list[InputSpec]:
        """Every input the teacher reads; `position` only when it scores at the observed position."""
        features = [f for g in self.token_groups for f in g.features]
        needed = (self.features.item_id_slot, self.features.item_category_slot)
        item_slots = [s for s in self.features.item_slots if s in features or s in needed]
        specs = self.features.inputs_for(features + item_slots) + self.features.sequence_inputs()
        return specs if neutral_position else [*specs, self.features.position_input()]

    @model_validator(mode="after")
    def _consistent(self) -> TeacherConfig:
        _check_features(self.features, self.token_groups, {"user", "item"}, "teacher")
        for group in self.token_groups:
            if SEQUENCE_SUMMARY in group.features:
                raise ValueError(f"teacher token group {group.name!r}: the teacher encodes the sequence "
                                 f"with its long-sequence encoder, not {SEQUENCE_SUMMARY!r}")
        _check_mixing_width(self.n_tokens, self.token_dim, "teacher")
        if self.sequence_dim % self.sequence_heads:
            raise ValueError(f"teacher: sequence_dim {self.sequence_dim} must be divisible by "
                             f"sequence_heads {self.sequence_heads}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"teacher: task names must be distinct, got {self.tasks}")
        return self

    @classmethod
    def preset(cls, name: Literal["tiny", "small", "large"], **overrides: object) -> TeacherConfig:
        """tiny (T=8, D=32): unit tests; small (T=16, D=128): a CPU; large (T=32, D=512, 4 experts, ~1B): a GPU."""
        presets: dict[str, dict[str, object]] = {
            "tiny": dict(token_groups=_teacher_groups(1), embedding_dim=8, token_dim=32, n_layers=1,
                         sequence_length=32, merge_size=4, n_global_tokens=1, sequence_dim=16,
                         sequence_heads=2, sequence_layers=2, tower_dim=16),
            "small": dict(token_groups=_teacher_groups(2), embedding_dim=16, token_dim=128, n_layers=2,
                          sequence_length=256, merge_size=8, n_global_tokens=7, sequence_dim=64,
                          sequence_heads=4, sequence_layers=2, tower_dim=64),
            "large": dict(token_groups=_teacher_groups(4), embedding_dim=64, token_dim=512, n_layers=4,
                          n_experts=4, sequence_length=4096, merge_size=16, n_global_tokens=15,
                          sequence_dim=256, sequence_heads=8, sequence_layers=3, tower_dim=256),
        }
        if name not in presets:
            raise ValueError(f"unknown teacher preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


def _teacher_groups(scale: int) -> list[TokenGroup]:
    """Six semantic groups; `scale` tokens for the wide ones (ids), fewer for the rest."""
    return [
        TokenGroup(name="user_id", features=["user_id"], n_tokens=scale),
        TokenGroup(name="user_profile", features=["user_age", "user_gender", "user_segment"],
                   n_tokens=max(1, scale // 2)),
        TokenGroup(name="context", features=["device", "hour", "scenario"], n_tokens=max(1, scale // 2)),
        TokenGroup(name="user_dense", features=[DENSE_USER], n_tokens=max(1, scale // 2)),
        TokenGroup(name="item", features=["item_id", "item_category"], n_tokens=scale),
        TokenGroup(name="item_dense", features=[DENSE_ITEM], n_tokens=max(1, scale // 2)),
    ]


def _default_user_groups() -> list[TokenGroup]:
    return [
        TokenGroup(name="user_id", features=["user_id"], n_tokens=2),
        TokenGroup(name="user_profile", features=["user_age", "user_gender", "user_segment"], n_tokens=2),
        TokenGroup(name="context", features=["device", "hour", "scenario"], n_tokens=2),
        TokenGroup(name="user_dense", features=[DENSE_USER], n_tokens=2),
        TokenGroup(name="short_sequence", features=[SEQUENCE_SUMMARY], n_tokens=4),
    ]


def _default_group_groups() -> list[TokenGroup]:
    return [
        TokenGroup(name="item", features=["item_id", "item_category"], n_tokens=2),
        TokenGroup(name="item_dense", features=[DENSE_ITEM], n_tokens=1),
        TokenGroup(name="item_history_cross", features=[TARGET_ATTENTION, CATEGORY_HISTORY], n_tokens=1),
    ]


class StudentConfig(BaseModel):
    """The UG-Sep student: user tokens first, group (candidate + cross) tokens after them.

    Defaults are the serving student of the benchmark: 12 user tokens, 4 group tokens, D = 256.
    """

    features: FeatureSchema = Field(default_factory=FeatureSchema)
    user_token_groups: list[TokenGroup] = Field(default_factory=_default_user_groups)
    group_token_groups: list[TokenGroup] = Field(default_factory=_default_group_groups)
    embedding_dim: int = Field(16, ge=1)
    token_dim: int = Field(256, ge=1)
    n_layers: int = Field(2, ge=1)
    ffn_multiplier: int = Field(4, ge=1)
    sequence_length: int = Field(32, ge=1, description="longest student sequence accepted (L_student)")
    n_sequence_queries: int = Field(3, ge=0, description="learned-query attention pools of the sequence")
    n_time_buckets: int = Field(32, ge=2)
    user_group_mask: bool = Field(True, description="False gives plain RankMixer (no reuse possible)")
    compensation: bool = Field(True, description="information compensation; False for the ablation")
    compensation_dim: int = Field(64, ge=1)
    head_dim: int = Field(128, ge=1)
    auxiliary_head: bool = Field(False, description="second head on the shared trunk (distillation)")

    @property
    def n_user_tokens(self) -> int:
        return sum(g.n_tokens for g in self.user_token_groups)

    @property
    def n_group_tokens(self) -> int:
        return sum(g.n_tokens for g in self.group_token_groups)

    @property
    def n_tokens(self) -> int:
        return self.n_user_tokens + self.n_group_tokens

    @property
    def uses_sequence(self) -> bool:
        features = {f for g in self.user_token_groups + self.group_token_groups for f in g.features}
        return bool(features & {SEQUENCE_SUMMARY, *CROSS_FEATURES})

    def user_inputs(self) -> list[InputSpec]:
        """The request's user/context side: one row per request when scoring."""
        specs = self.features.inputs_for([f for g in self.user_token_groups for f in g.features])
        return specs + self.features.sequence_inputs() if self.uses_sequence else specs

    def candidate_inputs(self) -> list[InputSpec]:
        """The candidate side: one row per candidate item."""
        features = [f for g in self.group_token_groups for f in g.features]
        if set(CROSS_FEATURES) & set(features):  # what the cross features query with: the candidate, its category
            features += [self.features.item_id_slot, self.features.item_category_slot]
        return self.features.inputs_for(features)

    @model_validator(mode="after")
    def _consistent(self) -> StudentConfig:
        _check_features(self.features, self.user_token_groups, {"user"}, "student user tokens")
        _check_features(self.features, self.group_token_groups, {"item", "cross"}, "student group tokens")
        if not self.group_token_groups:
            raise ValueError("student: at least one group token group is needed (the candidate item)")
        _check_mixing_width(self.n_tokens, self.token_dim, "student")
        return self

    @classmethod
    def preset(cls, name: str, **overrides: object) -> StudentConfig:
        """A named size from `STUDENT_PRESETS`: `xs`/`s`/`m` are the serving-budget sizes (token
        width, tokens, layers, embedding width), `tiny` the unit tests', `default` the UG-Sep benchmark's."""
        if name not in _PRESET_FIELDS:
            raise ValueError(f"unknown student preset {name!r}; expected one of {list(STUDENT_PRESETS)}")
        return cls(**{**_PRESET_FIELDS[name](), **overrides})


def _compact_user_groups() -> list[TokenGroup]:
    """Six user tokens: one per profile/context/dense group, two for the short sequence."""
    return [
        TokenGroup(name="user_id", features=["user_id"]),
        TokenGroup(name="user_profile", features=["user_age", "user_gender", "user_segment"]),
        TokenGroup(name="context", features=["device", "hour", "scenario"]),
        TokenGroup(name="user_dense", features=[DENSE_USER]),
        TokenGroup(name="short_sequence", features=[SEQUENCE_SUMMARY], n_tokens=2),
    ]


def _compact_group_groups() -> list[TokenGroup]:
    """Two group tokens: the candidate (ids, category, dense) and its cross features."""
    return [
        TokenGroup(name="item", features=["item_id", "item_category", DENSE_ITEM]),
        TokenGroup(name="item_history_cross", features=[TARGET_ATTENTION, CATEGORY_HISTORY]),
    ]


def _compact(token_dim: int, n_layers: int, embedding_dim: int, head_dim: int) -> dict[str, object]:
    return dict(user_token_groups=_compact_user_groups(), group_token_groups=_compact_group_groups(),
                embedding_dim=embedding_dim, token_dim=token_dim, n_layers=n_layers, sequence_length=8,
                n_sequence_queries=2, compensation_dim=16, head_dim=head_dim)


# The fields of each of `STUDENT_PRESETS`; the sizes are (token width D, tokens T = user + group, layers,
# embedding width).
_PRESET_FIELDS: dict[str, Callable[[], dict[str, object]]] = {
    "xs": lambda: _compact(token_dim=16, n_layers=1, embedding_dim=8, head_dim=16),  # T = 6 + 2
    "s": lambda: _compact(token_dim=32, n_layers=2, embedding_dim=8, head_dim=16),  # T = 6 + 2
    "m": lambda: dict(embedding_dim=16, token_dim=64, n_layers=2, compensation_dim=32, head_dim=64),  # T = 12 + 4
    "tiny": lambda: _compact(token_dim=32, n_layers=2, embedding_dim=8, head_dim=16),
    "default": lambda: {},
}
