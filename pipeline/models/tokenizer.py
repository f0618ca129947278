"""Tokenization: feature slots grouped into T tokens of width D, as in RankMixer.

Sparse slots are looked up in one embedding provider: any module with
``forward(ids: LongTensor[B, S]) -> Tensor[B, S, dim]`` (a plain `nn.Embedding` by default, a
parameter-server module later). The ids go to the provider unchanged: the data plane already hashes
each slot's values with the slot name (`pipeline.slots`), so slots share one id space without
colliding, and a prefetcher that reads batch ids sees exactly the rows the model will ask for.
Each token group concatenates its features and one linear layer projects them to `n_tokens`
tokens; a model may split its groups into named parts (the student's "user" and "group" parts)
that are tokenized separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from pipeline.models.config import DENSE_ITEM, DENSE_USER, FeatureSchema, TokenGroup


def signed_log1p(values: Tensor) -> Tensor:
    """Compress counts and CTRs to a common scale without losing sign."""
    return torch.sign(values) * torch.log1p(values.abs())


class Tokenizer(nn.Module):
    """Features → tokens: per-part token groups, each a concatenation projected to n_tokens × D."""

    def __init__(self, schema: FeatureSchema, parts: Mapping[str, Sequence[TokenGroup]], embedding_dim: int,
                 token_dim: int, embeddings: nn.Module | None = None,
                 extra_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.schema = schema
        self.parts = {name: list(groups) for name, groups in parts.items()}
        self.embedding_dim = embedding_dim
        self.token_dim = token_dim
        self.embeddings = embeddings if embeddings is not None else nn.Embedding(schema.hash_buckets, embedding_dim)
        if embeddings is None:
            nn.init.normal_(self.embeddings.weight, std=0.1)
        widths = {DENSE_USER: schema.n_dense_user, DENSE_ITEM: schema.n_dense_item, **(extra_dims or {})}
        self.feature_dims = {**{s: embedding_dim for s in schema.user_slots + schema.item_slots}, **widths}
        self.projections = nn.ModuleDict({
            name: nn.ModuleList(
                nn.Linear(sum(self.feature_dims[f] for f in g.features), g.n_tokens * token_dim) for g in groups)
            for name, groups in self.parts.items()})

    def n_tokens(self, part: str) -> int:
        return sum(g.n_tokens for g in self.parts[part])

    def lookup(self, ids: Tensor) -> Tensor:
        """Provider rows for ids of any shape [B, ...] (e.g. a sequence [B, L]) → [B, ..., E]."""
        flat = ids.reshape(ids.shape[0], -1)
        rows = self.embeddings(flat)
        if rows.shape != (*flat.shape, self.embedding_dim):
            raise ValueError(f"embedding provider {type(self.embeddings).__name__} returned shape "
                             f"{tuple(rows.shape)} for ids of shape {tuple(flat.shape)}; expected "
                             f"{(*flat.shape, self.embedding_dim)} (embedding_dim {self.embedding_dim})")
        return rows.view(*ids.shape, self.embedding_dim)

    def embed_features(self, batch: Mapping[str, Tensor], part: str) -> dict[str, Tensor]:
        """The sparse slots (one provider call) and dense blocks a part's groups read, [B, dim] each."""
        wanted = list(dict.fromkeys(f for g in self.parts[part] for f in g.features))
        slots = [f for f in wanted if f in self.schema.user_slots or f in self.schema.item_slots]
        features: dict[str, Tensor] = {}
        if slots:
            rows = self.lookup(torch.stack([batch[s] for s in slots], dim=1))
            features.update({s: rows[:, i] for i, s in enumerate(slots)})
        for dense in (DENSE_USER, DENSE_ITEM):
            if dense in wanted:
                features[dense] = signed_log1p(batch[dense])
        return features

    def forward(self, features: Mapping[str, Tensor], part: str) -> Tensor:
        """Tokens [B, n_tokens(part), D] from per-feature vectors [B, dim]."""
        tokens = []
        for group, projection in zip(self.parts[part], self.projections[part]):
            missing = [f for f in group.features if f not in features]
            if missing:
                raise ValueError(f"token group {group.name!r} needs features {missing}; got {sorted(features)}")
            joined = torch.cat([features[f] for f in group.features], dim=-1)
            tokens.append(projection(joined).view(joined.shape[0], group.n_tokens, self.token_dim))
        return torch.cat(tokens, dim=1)
