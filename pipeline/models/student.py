"""The UG-Sep student: a RankMixer whose user tokens never see the candidate, so they are reused.

Tokens 0..U-1 come from user/context features and the short sequence; tokens U..T-1 from the
candidate item and cross features (the candidate attending over the user's sequence). The mask in
token mixing keeps the user tokens a function of user inputs alone in every layer, so a request
computes them once (`encode_user`) and runs only the G group tokens for each of its N candidates
(`score_candidates`). Information compensation puts back the user–item interaction the mask took
out: the candidate's final state attends over the final user tokens and is crossed with the result.

The trunk (pooled user tokens, pooled group tokens, compensation) feeds `heads`: the serving head
and an optional auxiliary head for distillation on the shared trunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pipeline.models.config import (
    SEQ_ACTION,
    SEQ_ITEM_CATEGORY,
    SEQ_ITEM_ID,
    SEQ_LENGTH,
    SEQ_TIME_GAP,
    CATEGORY_HISTORY,
    SEQUENCE_SUMMARY,
    TARGET_ATTENTION,
    StudentConfig,
)
from pipeline.models.inputs import InputSpec, check_inputs
from pipeline.models.rankmixer import RankMixerBlock
from pipeline.models.sequence import CategoryHardSearch, SequenceEmbedding, SequenceSummary, TargetAttention
from pipeline.models.tokenizer import Tokenizer

Inputs = Mapping[str, Tensor]


class History(NamedTuple):
    """The user's sequence as the cross features read it: [Bu, L] (Bu = rows, or 1 per request)."""

    events: Tensor  # event vectors [Bu, L, E]
    valid: Tensor
    categories: Tensor  # hashed category ids
    actions: Tensor


class UserState(NamedTuple):
    """Everything a request computes once: per-layer user tokens and what cross features need."""

    layers: list[Tensor]  # user tokens entering each block, then the final ones: [1, U, D] each
    history: History | None
    compensation: tuple[Tensor, Tensor] | None  # keys and values of the final user tokens


class InformationCompensation(nn.Module):
    """The candidate's pooled final state attends over the final user tokens; the two are crossed."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.key = nn.Linear(dim, rank)
        self.value = nn.Linear(dim, rank)
        self.query = nn.Linear(dim, rank)
        self.out = nn.Linear(rank, dim)

    def user_side(self, user_final: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values [Bu, U, rank]: computed once per request."""
        return self.key(user_final), self.value(user_final)

    def forward(self, user_side: tuple[Tensor, Tensor], group_final: Tensor) -> Tensor:
        """[N, D] from the user side [1 or N, U, rank] and the group tokens [N, G, D]."""
        keys, values = user_side
        query = self.query(group_final.mean(dim=1)).unsqueeze(1)
        weights = torch.softmax(torch.matmul(query, keys.transpose(1, 2)) / math.sqrt(keys.shape[-1]), dim=-1)
        context = torch.matmul(weights, values)
        return self.out((context * query).squeeze(1))


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class StudentHeads(nn.Module):
    """The serving head and an optional auxiliary head (e.g. distillation), both on the trunk."""

    def __init__(self, trunk_dim: int, hidden: int, auxiliary: bool) -> None:
        super().__init__()
        self.serving = _mlp(trunk_dim, hidden)
        self.auxiliary = _mlp(trunk_dim, hidden) if auxiliary else None

    def forward(self, trunk: Tensor) -> dict[str, Tensor]:
        logits = {"serving": self.serving(trunk).squeeze(-1)}
        if self.auxiliary is not None:
            logits["auxiliary"] = self.auxiliary(trunk).squeeze(-1)
        return logits


class UGSepStudent(nn.Module):
    """User/group-separated RankMixer with request-level reuse (see the module docstring)."""

    # Modules that run once per request (one row): W8A16 gives these the small-M int8 kernel.
    per_request_modules = ("tokenizer.projections.user", "compensation.key", "compensation.value")
    # Modules W8A16 keeps at fp32 activations: the heads make the logits, and bf16's 8-bit mantissa
    # would round them to ~0.008 steps, enough to reorder candidates whose scores differ by less.
    full_precision_modules = ("heads.",)

    def __init__(self, config: StudentConfig, embeddings: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        schema, dim = config.features, config.embedding_dim
        features = {f for g in config.user_token_groups + config.group_token_groups for f in g.features}
        self.sequence = SequenceEmbedding(schema.n_actions, config.n_time_buckets, dim) \
            if config.uses_sequence else None
        self.sequence_summary = SequenceSummary(dim, config.n_sequence_queries) \
            if SEQUENCE_SUMMARY in features else None
        self.target_attention = TargetAttention(dim) if TARGET_ATTENTION in features else None
        self.hard_search = CategoryHardSearch(schema.n_actions, dim, dim) if CATEGORY_HISTORY in features else None
        extra_dims = {TARGET_ATTENTION: dim, CATEGORY_HISTORY: dim}
        if self.sequence_summary is not None:
            extra_dims[SEQUENCE_SUMMARY] = self.sequence_summary.out_dim
        self.tokenizer = Tokenizer(schema, {"user": config.user_token_groups, "group": config.group_token_groups},
                                   dim, config.token_dim, embeddings, extra_dims)
        self.n_user_tokens = config.n_user_tokens
        self.blocks = nn.ModuleList(
            RankMixerBlock(config.n_tokens, config.token_dim, config.ffn_multiplier,
                           n_user_tokens=config.n_user_tokens if config.user_group_mask else 0)
            for _ in range(config.n_layers))
        self.compensation = InformationCompensation(config.token_dim, config.compensation_dim) \
            if config.compensation else None
        self.trunk_dim = config.token_dim * (3 if config.compensation else 2)
        self.heads = StudentHeads(self.trunk_dim, config.head_dim, config.auxiliary_head)

    # ---- contracts -------------------------------------------------------------------------
    def user_inputs(self) -> list[InputSpec]:
        return self.config.user_inputs()

    def candidate_inputs(self) -> list[InputSpec]:
        return self.config.candidate_inputs()

    def _check(self, inputs: Inputs, specs: list[InputSpec], what: str, rows: int | None = None) -> None:
        # Eager calls check; the exported program's loader checks against the manifest instead.
        if not torch.compiler.is_exporting():
            check_inputs(inputs, specs, what=what, dims={"B": rows} if rows else None,
                         max_dims={"L": self.config.sequence_length})

    # ---- shared pieces ---------------------------------------------------------------------
    def _history(self, rows: Inputs) -> History | None:
        if self.sequence is None:
            return None
        lookup = self.tokenizer.lookup
        events, valid = self.sequence(lookup(rows[SEQ_ITEM_ID]), lookup(rows[SEQ_ITEM_CATEGORY]), rows[SEQ_ACTION],
                                      rows[SEQ_TIME_GAP], rows[SEQ_LENGTH])
        return History(events, valid, rows[SEQ_ITEM_CATEGORY], rows[SEQ_ACTION])

    def _user_tokens(self, rows: Inputs, history: History | None) -> Tensor:
        features = self.tokenizer.embed_features(rows, "user")
        if self.sequence_summary is not None and history is not None:
            features[SEQUENCE_SUMMARY] = self.sequence_summary(history.events, history.valid)
        return self.tokenizer(features, "user")

    def _group_tokens(self, rows: Inputs, history: History | None) -> Tensor:
        features = self.tokenizer.embed_features(rows, "group")
        schema = self.config.features
        if self.target_attention is not None and history is not None:  # queried as events are embedded
            query = self.tokenizer.lookup(rows[schema.item_id_slot]) + self.tokenizer.lookup(rows[schema.item_category_slot])
            features[TARGET_ATTENTION] = self.target_attention(query, history.events, history.valid)
        if self.hard_search is not None and history is not None:
            features[CATEGORY_HISTORY] = self.hard_search(rows[schema.item_category_slot], history.categories,
                                                          history.actions, history.events, history.valid)
        return self.tokenizer(features, "group")

    def _trunk(self, user_final: Tensor, group_final: Tensor,
               compensation: tuple[Tensor, Tensor] | None) -> Tensor:
        """[N, trunk_dim] from final user tokens [1 or N, U, D] and group tokens [N, G, D]."""
        parts = [user_final.mean(dim=1).expand(group_final.shape[0], -1), group_final.mean(dim=1)]
        if self.compensation is not None and compensation is not None:
            parts.append(self.compensation(compensation, group_final))
        return torch.cat(parts, dim=-1)

    # ---- per-row (training, naive scoring) -------------------------------------------------
    def layer_states(self, batch: Inputs) -> list[Tensor]:
        """Token states [B, T, D]: the tokenizer's output, then each block's; user tokens first."""
        self._check(batch, self.user_inputs() + self.candidate_inputs(), "student batch")
        history = self._history(batch)
        tokens = torch.cat([self._user_tokens(batch, history), self._group_tokens(batch, history)], 1)
        states = [tokens]
        for block in self.blocks:
            tokens = block(tokens)
            states.append(tokens)
        return states

    def trunk(self, batch: Inputs) -> Tensor:
        """The shared representation [B, trunk_dim] that every head reads."""
        final = self.layer_states(batch)[-1]
        user_final, group_final = final[:, :self.n_user_tokens], final[:, self.n_user_tokens:]
        compensation = self.compensation.user_side(user_final) if self.compensation is not None else None
        return self._trunk(user_final, group_final, compensation)

    def forward_heads(self, batch: Inputs) -> dict[str, Tensor]:
        """Logits [B] of every head ("serving", and "auxiliary" when configured)."""
        return self.heads(self.trunk(batch))

    def forward(self, batch: Inputs) -> Tensor:
        """Serving logits [B], one row per (user, candidate) pair."""
        return self.forward_heads(batch)["serving"]

    # ---- request level (inference: no autograd graph) ----------------------------------------
    @torch.no_grad()
    def encode_user(self, user: Inputs) -> UserState:
        """The user side of one request (rows = 1), computed once for all its candidates."""
        if self.blocks[0].n_user_tokens == 0:
            raise ValueError("encode_user needs the user/group mask (config.user_group_mask = True)")
        self._check(user, self.user_inputs(), "user inputs", rows=1)
        history = self._history(user)
        tokens = self._user_tokens(user, history)
        layers = [tokens]
        for block in self.blocks:
            tokens = block.forward_user(tokens)
            layers.append(tokens)
        compensation = self.compensation.user_side(tokens) if self.compensation is not None else None
        return UserState(layers, history, compensation)

    @torch.no_grad()
    def score_candidates(self, user_state: UserState, candidates: Inputs) -> Tensor:
        """Serving logits [N]: only the G group tokens run per candidate."""
        self._check(candidates, self.candidate_inputs(), "candidate inputs")
        tokens = self._group_tokens(candidates, user_state.history)
        for block, user_tokens in zip(self.blocks, user_state.layers):
            tokens = block.forward_group(tokens, user_tokens)
        return self.heads(self._trunk(user_state.layers[-1], tokens, user_state.compensation))["serving"]

    @torch.no_grad()
    def score(self, user: Inputs, candidates: Inputs) -> Tensor:
        """Logits [N] for one request: user side once, reused by all N candidates.

        Without the mask there is nothing to reuse, and this is `score_naive`.
        """
        if self.blocks[0].n_user_tokens == 0:
            return self.score_naive(user, candidates)
        return self.score_candidates(self.encode_user(user), candidates)

    @torch.no_grad()
    def score_naive(self, user: Inputs, candidates: Inputs) -> Tensor:
        """The baseline: the user's inputs copied to every candidate row, all T tokens per row."""
        self._check(user, self.user_inputs(), "user inputs", rows=1)
        self._check(candidates, self.candidate_inputs(), "candidate inputs")
        n_candidates = candidates[self.candidate_inputs()[0].name].shape[0]
        rows = {s.name: user[s.name].expand(n_candidates, *user[s.name].shape[1:]) for s in self.user_inputs()}
        return self.forward({**rows, **candidates})
