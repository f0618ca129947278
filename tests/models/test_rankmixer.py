"""RankMixer as published: parameter-free mixing, per-token FFNs, residual + LayerNorm, optional MoE."""

from __future__ import annotations

import torch

from pipeline.models.rankmixer import (
    PerTokenFFN,
    RankMixer,
    RankMixerBlock,
    SparseMoEPerTokenFFN,
    token_mixing,
    user_group_mask,
)


def test_output_token_h_concatenates_head_h_of_every_token():
    tokens, dim = 4, 8
    x = torch.randn(2, tokens, dim)
    mixed = token_mixing(x)
    head = dim // tokens
    for h in range(tokens):
        expected = torch.cat([x[:, t, h * head:(h + 1) * head] for t in range(tokens)], dim=-1)
        assert torch.equal(mixed[:, h], expected)


def test_token_mixing_has_no_parameters():
    block = RankMixerBlock(4, 8, 2)
    ffn_and_norms = {n for n, _ in block.named_parameters() if n.startswith(("ffn.", "norm_"))}
    assert ffn_and_norms == {n for n, _ in block.named_parameters()}


def test_per_token_ffn_weights_really_differ_per_token():
    ffn = PerTokenFFN(n_tokens=4, dim=8, multiplier=2)
    for t in range(1, 4):
        assert not torch.equal(ffn.w1[0], ffn.w1[t]) and not torch.equal(ffn.w2[0], ffn.w2[t])
    same_vector = torch.randn(8).expand(3, 4, 8)  # one vector placed at every token position
    out = ffn(same_vector)
    for t in range(1, 4):
        assert (out[:, 0] - out[:, t]).abs().max() > 1e-3


def test_per_token_ffn_token_t_uses_only_its_own_weights():
    ffn = PerTokenFFN(n_tokens=4, dim=8, multiplier=2)
    ffn(torch.randn(3, 4, 8))[:, 2].sum().backward()
    for weight in (ffn.w1, ffn.w2, ffn.b1, ffn.b2):
        gradient_norm = weight.grad.flatten(1).abs().sum(dim=1)
        assert gradient_norm[2] > 0 and torch.all(gradient_norm[[0, 1, 3]] == 0)


def test_per_token_ffn_slice_equals_full_computation():
    ffn = PerTokenFFN(n_tokens=6, dim=12, multiplier=2)
    x = torch.randn(5, 6, 12)
    torch.testing.assert_close(ffn(x[:, 2:5], slice(2, 5)), ffn(x)[:, 2:5])


def test_block_is_post_norm_residual():
    block = RankMixerBlock(4, 8, 2).eval()
    x = torch.randn(3, 4, 8)
    mixed = block.norm_mixing(token_mixing(x) + x)
    torch.testing.assert_close(block(x), block.norm_ffn(block.ffn(mixed) + mixed))


def test_mask_blocks_exactly_group_heads_into_user_tokens():
    blocked = user_group_mask(n_tokens=4, n_user_tokens=3).squeeze(-1)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:3, 3] = True
    assert torch.equal(blocked, expected)


def test_split_forward_equals_masked_forward():
    block = RankMixerBlock(8, 32, 2, n_user_tokens=5).eval()
    x = torch.randn(6, 8, 32)
    full = block(x)
    torch.testing.assert_close(block.forward_user(x[:, :5]), full[:, :5], rtol=0, atol=1e-6)
    torch.testing.assert_close(block.forward_group(x[:, 5:], x[:, :5]), full[:, 5:], rtol=0, atol=1e-6)


def test_moe_gates_are_relu_and_zero_gates_contribute_nothing():
    moe = SparseMoEPerTokenFFN(n_tokens=2, dim=8, multiplier=2, n_experts=3)
    with torch.no_grad():
        moe.router_bias[:, 1] = -1e4  # expert 1 never fires
    x = torch.randn(5, 2, 8)
    before = moe(x)
    assert moe.gate_l1 > 0
    with torch.no_grad():
        moe.experts.w2.view(2, 3, 16, 8)[:, 1] += 100.0
    torch.testing.assert_close(moe(x), before)


def test_moe_stack_trains_with_its_penalty():
    mixer = RankMixer(n_tokens=4, dim=8, n_layers=2, ffn_multiplier=2, n_experts=2)
    pooled = mixer(torch.randn(3, 4, 8))
    (pooled.sum() + mixer.gate_l1()).backward()
    assert pooled.shape == (3, 8)
    assert mixer.blocks[0].ffn.router_weight.grad.abs().sum() > 0
