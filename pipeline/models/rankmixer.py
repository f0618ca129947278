"""RankMixer (ByteDance, 2025): parameter-free token mixing + per-token FFNs.

A block is ``S = LN(TokenMixing(X) + X); X' = LN(PFFN(S) + S)`` on X of shape [T, D]. Token mixing
splits each token into H = T heads and output token h concatenates head h of every token: a
reshape, no weights. The per-token FFN gives every token its own D → kD → D weights. The optional
sparse MoE replaces each token's FFN with ReLU-gated experts (L1 on the gates keeps them sparse).

UG-Sep's mask lives here too: with `n_user_tokens = U`, output tokens h < U take nothing from
tokens t >= U, so the first U tokens stay a function of user inputs only, in every layer.
`forward_user` / `forward_group` compute the two halves separately for request-level reuse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def token_mixing(x: Tensor, blocked: Tensor | None = None) -> Tensor:
    """[B, T, D] → [B, T, D]: output token h = concat over t of head h of token t.

    `blocked` [T, T, 1] (bool) zeroes head h of token t where set: the UG-Sep mask.
    """
    batch, n_tokens, dim = x.shape
    heads = x.view(batch, n_tokens, n_tokens, dim // n_tokens).transpose(1, 2)
    if blocked is not None:
        heads = heads.masked_fill(blocked, 0.0)
    return heads.reshape(batch, n_tokens, dim)


def user_group_mask(n_tokens: int, n_user_tokens: int) -> Tensor:
    """blocked[h, t] is True where a user output token (h < U) would read a group token (t >= U)."""
    rows = torch.arange(n_tokens).unsqueeze(1) < n_user_tokens
    columns = torch.arange(n_tokens).unsqueeze(0) >= n_user_tokens
    return (rows & columns).unsqueeze(-1)


class PerTokenFFN(nn.Module):
    """Token t has its own W1[t] (D × kD) and W2[t] (kD × D): one batched matmul for all tokens."""

    def __init__(self, n_tokens: int, dim: int, multiplier: int) -> None:
        super().__init__()
        hidden = multiplier * dim
        self.w1 = nn.Parameter(torch.empty(n_tokens, dim, hidden))
        self.b1 = nn.Parameter(torch.empty(n_tokens, hidden))
        self.w2 = nn.Parameter(torch.empty(n_tokens, hidden, dim))
        self.b2 = nn.Parameter(torch.empty(n_tokens, dim))
        for weight, bias, fan_in in ((self.w1, self.b1, dim), (self.w2, self.b2, hidden)):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default, drawn independently per token
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, x: Tensor, tokens: slice = slice(None)) -> Tensor:
        """x [B, t, D] holds tokens `tokens` (a contiguous slice of 0..T-1); returns [B, t, D]."""
        by_token = x.transpose(0, 1)
        hidden = F.gelu(torch.baddbmm(self.b1[tokens].unsqueeze(1), by_token, self.w1[tokens]))
        return torch.baddbmm(self.b2[tokens].unsqueeze(1), hidden, self.w2[tokens]).transpose(0, 1)


class SparseMoEPerTokenFFN(nn.Module):
    """Per token, `n_experts` FFNs mixed by a ReLU router; `gate_l1` (last forward) is the sparsity penalty.

    Experts run densely and are weighted by their gates (a zero gate contributes nothing); on a GPU
    this keeps training simple, and the L1 penalty drives most gates to exactly zero.
    """

    def __init__(self, n_tokens: int, dim: int, multiplier: int, n_experts: int) -> None:
        super().__init__()
        self.n_tokens, self.n_experts = n_tokens, n_experts
        self.experts = PerTokenFFN(n_tokens * n_experts, dim, multiplier)
        self.router_weight = nn.Parameter(torch.randn(n_tokens, dim, n_experts) / math.sqrt(dim))
        self.router_bias = nn.Parameter(torch.full((n_tokens, n_experts), 0.1))
        self.gate_l1 = torch.zeros(())

    def forward(self, x: Tensor, tokens: slice = slice(None)) -> Tensor:
        batch, n_tokens, dim = x.shape
        chosen = range(self.n_tokens)[tokens]
        gates = F.relu(torch.baddbmm(self.router_bias[tokens].unsqueeze(1), x.transpose(0, 1),
                                     self.router_weight[tokens])).transpose(0, 1)  # [B, t, E]
        self.gate_l1 = gates.sum(dim=(1, 2)).mean()
        per_expert = x.unsqueeze(2).expand(batch, n_tokens, self.n_experts, dim).reshape(batch, -1, dim)
        outputs = self.experts(per_expert, slice(chosen.start * self.n_experts, chosen.stop * self.n_experts))
        return (outputs.view(batch, n_tokens, self.n_experts, dim) * gates.unsqueeze(-1)).sum(dim=2)


class RankMixerBlock(nn.Module):
    """One RankMixer layer; with `n_user_tokens` > 0 the UG-Sep mask keeps user tokens user-only."""

    def __init__(self, n_tokens: int, dim: int, ffn_multiplier: int, *, n_user_tokens: int = 0,
                 n_experts: int = 0) -> None:
        super().__init__()
        if dim % n_tokens:
            raise ValueError(f"token dim {dim} must be divisible by the number of tokens {n_tokens}")
        self.n_tokens, self.n_user_tokens = n_tokens, n_user_tokens
        self.norm_mixing = nn.LayerNorm(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn: nn.Module = (SparseMoEPerTokenFFN(n_tokens, dim, ffn_multiplier, n_experts) if n_experts
                               else PerTokenFFN(n_tokens, dim, ffn_multiplier))
        self.register_buffer("blocked", user_group_mask(n_tokens, n_user_tokens) if n_user_tokens else None,
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """All T tokens at once: [B, T, D] → [B, T, D]."""
        mixed = self.norm_mixing(token_mixing(x, self.blocked) + x)
        return self.norm_ffn(self.ffn(mixed) + mixed)

    def forward_user(self, user: Tensor) -> Tensor:
        """User tokens alone, [Bu, U, D] → [Bu, U, D]; equals forward()'s first U tokens."""
        batch, n_user, dim = user.shape
        heads = user.view(batch, n_user, self.n_tokens, dim // self.n_tokens)[:, :, :n_user].transpose(1, 2)
        mixed = F.pad(heads, (0, 0, 0, self.n_tokens - n_user)).reshape(batch, n_user, dim)
        mixed = self.norm_mixing(mixed + user)
        return self.norm_ffn(self.ffn(mixed, slice(0, n_user)) + mixed)

    def forward_group(self, group: Tensor, user: Tensor) -> Tensor:
        """Group tokens [N, G, D] given this layer's user-token input [1 or N, U, D] → [N, G, D]."""
        n_rows, n_group, dim = group.shape
        n_user, head = user.shape[1], dim // self.n_tokens
        from_user = user.view(user.shape[0], n_user, self.n_tokens, head)[:, :, n_user:].transpose(1, 2)
        from_group = group.view(n_rows, n_group, self.n_tokens, head)[:, :, n_user:].transpose(1, 2)
        mixed = torch.cat([from_user.expand(n_rows, -1, -1, -1), from_group], dim=2).reshape(n_rows, n_group, dim)
        mixed = self.norm_mixing(mixed + group)
        return self.norm_ffn(self.ffn(mixed, slice(n_user, self.n_tokens)) + mixed)


class RankMixer(nn.Module):
    """A stack of RankMixer blocks whose output is the mean of the last layer's tokens."""

    def __init__(self, n_tokens: int, dim: int, n_layers: int, ffn_multiplier: int, n_experts: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(RankMixerBlock(n_tokens, dim, ffn_multiplier, n_experts=n_experts)
                                    for _ in range(n_layers))

    def forward(self, tokens: Tensor) -> Tensor:
        """[B, T, D] → pooled [B, D]."""
        for block in self.blocks:
            tokens = block(tokens)
        return tokens.mean(dim=1)

    def gate_l1(self) -> Tensor:
        """Sum of the MoE gate penalties of the last forward (zero without experts)."""
        penalties = [b.ffn.gate_l1 for b in self.blocks if isinstance(b.ffn, SparseMoEPerTokenFFN)]
        return torch.stack(penalties).sum() if penalties else torch.zeros(())
