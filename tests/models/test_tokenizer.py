"""Tokenization: semantic groups of slots become tokens; one provider call per part."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.config import DENSE_USER, FeatureSchema, TokenGroup
from pipeline.models.synthetic import random_inputs
from pipeline.models.tokenizer import Tokenizer, signed_log1p

GROUPS = [
    TokenGroup(name="who", features=["user_id", "user_age"], n_tokens=2),
    TokenGroup(name="when", features=["hour", DENSE_USER]),
]


class CountingTable(nn.Embedding):
    def __init__(self, *args: int) -> None:
        super().__init__(*args)
        self.calls: list[torch.Tensor] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(ids)
        return super().forward(ids)


def _tokenizer(provider: nn.Module | None = None) -> Tokenizer:
    return Tokenizer(FeatureSchema(), {"user": GROUPS}, embedding_dim=4, token_dim=8, embeddings=provider)


def test_groups_become_their_token_count(rng):
    tokenizer = _tokenizer()
    batch = random_inputs(FeatureSchema().inputs_for(["user_id", "user_age", "hour", DENSE_USER]), {"B": 5}, rng)
    tokens = tokenizer(tokenizer.embed_features(batch, "user"), "user")
    assert tokens.shape == (5, 3, 8) and tokenizer.n_tokens("user") == 3


def test_a_token_reads_only_its_groups_features(rng):
    tokenizer = _tokenizer()
    batch = random_inputs(FeatureSchema().inputs_for(["user_id", "user_age", "hour", DENSE_USER]), {"B": 5}, rng)
    before = tokenizer(tokenizer.embed_features(batch, "user"), "user")
    after = tokenizer(tokenizer.embed_features({**batch, "hour": (batch["hour"] + 1) % 16384}, "user"), "user")
    assert torch.equal(before[:, :2], after[:, :2])
    assert not torch.equal(before[:, 2], after[:, 2])


def test_one_provider_call_with_the_batch_ids_unchanged(rng):
    table = CountingTable(16384, 4)
    tokenizer = _tokenizer(table)
    batch = random_inputs(FeatureSchema().inputs_for(["user_id", "user_age", "hour", DENSE_USER]), {"B": 5}, rng)
    tokenizer.embed_features(batch, "user")
    assert len(table.calls) == 1
    assert torch.equal(table.calls[0], torch.stack([batch["user_id"], batch["user_age"], batch["hour"]], dim=1))


def test_dense_counts_are_compressed_with_their_sign():
    values = torch.tensor([[-1000.0, 0.0, 0.5, 1e6]])
    torch.testing.assert_close(signed_log1p(values), torch.tensor([[-6.9088, 0.0, 0.4055, 13.8155]]),
                               rtol=0, atol=1e-4)
