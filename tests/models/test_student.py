"""The UG-Sep student: the mask invariant, request-level reuse, compensation and heads."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.config import DENSE_ITEM
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import random_inputs, random_request


def _batch(config, rows, rng):
    specs = config.user_inputs() + config.candidate_inputs()
    return random_inputs(specs, {"B": rows, "L": config.sequence_length}, rng)


def _perturbed(batch, key, rng):
    changed = dict(batch)
    if key == DENSE_ITEM:
        changed[key] = batch[key] + torch.rand(batch[key].shape, generator=rng) * 10
    else:
        changed[key] = (batch[key] + 1 + torch.randint(0, 1000, batch[key].shape, generator=rng)) % 16384
    return changed


def test_perturbing_any_group_input_leaves_every_user_token_bit_identical_in_every_layer(student_config, rng):
    student = UGSepStudent(student_config).eval()
    n_user = student_config.n_user_tokens
    batch = _batch(student_config, 6, rng)
    with torch.no_grad():
        reference = student.layer_states(batch)
        for spec in student_config.candidate_inputs():
            states = student.layer_states(_perturbed(batch, spec.name, rng))
            for layer, (before, after) in enumerate(zip(reference, states)):
                assert torch.equal(before[:, :n_user], after[:, :n_user]), (spec.name, layer)
            assert not torch.equal(reference[-1][:, n_user:], states[-1][:, n_user:]), spec.name


def test_without_the_mask_user_tokens_do_see_the_candidate(student_config, rng):
    student = UGSepStudent(student_config.model_copy(update={"user_group_mask": False})).eval()
    batch = _batch(student_config, 6, rng)
    with torch.no_grad():
        before = student.layer_states(batch)[-1]
        after = student.layer_states(_perturbed(batch, "item_id", rng))[-1]
    assert not torch.equal(before[:, :student_config.n_user_tokens], after[:, :student_config.n_user_tokens])


@pytest.mark.parametrize("compensation", [True, False])
@pytest.mark.parametrize("n_candidates", [1, 7, 64])
def test_reuse_equals_naive_per_candidate_scoring(student_config, rng, compensation, n_candidates):
    student = UGSepStudent(student_config.model_copy(update={"compensation": compensation})).eval()
    user, candidates = random_request(student_config, n_candidates, rng)
    with torch.no_grad():
        reused, naive = student.score(user, candidates), student.score_naive(user, candidates)
    assert reused.shape == (n_candidates,)
    torch.testing.assert_close(reused, naive, rtol=0, atol=1e-5)


def test_reuse_equals_naive_with_an_empty_history(student_config, rng):
    student = UGSepStudent(student_config).eval()
    user, candidates = random_request(student_config, 5, rng)
    user["seq_length"].zero_()
    with torch.no_grad():
        torch.testing.assert_close(student.score(user, candidates), student.score_naive(user, candidates),
                                   rtol=0, atol=1e-5)


def test_encoded_user_tokens_equal_the_full_forward(student_config, rng):
    student = UGSepStudent(student_config).eval()
    user, candidates = random_request(student_config, 3, rng)
    rows = {k: v.expand(3, *v.shape[1:]) for k, v in user.items()} | candidates
    with torch.no_grad():
        state = student.encode_user(user)
        full = student.layer_states(rows)
    for encoded, layer in zip(state.layers, full):
        torch.testing.assert_close(encoded.expand(3, -1, -1), layer[:, :student_config.n_user_tokens],
                                   rtol=0, atol=1e-6)


def test_user_state_is_reused_across_candidate_pages(student_config, rng):
    student = UGSepStudent(student_config).eval()
    user, candidates = random_request(student_config, 10, rng)
    with torch.no_grad():
        state = student.encode_user(user)
        pages = [student.score_candidates(state, {k: v[s] for k, v in candidates.items()})
                 for s in (slice(0, 4), slice(4, 10))]
        torch.testing.assert_close(torch.cat(pages), student.score(user, candidates), rtol=0, atol=1e-6)


def test_compensation_can_be_switched_off(student_config, rng):
    with_compensation = UGSepStudent(student_config)
    without = UGSepStudent(student_config.model_copy(update={"compensation": False}))
    assert without.compensation is None
    assert with_compensation.trunk_dim == 3 * student_config.token_dim
    assert without.trunk_dim == 2 * student_config.token_dim
    assert without(_batch(student_config, 4, rng)).shape == (4,)


def test_compensation_reads_user_and_candidate(student_config, rng):
    student = UGSepStudent(student_config).eval()
    user, candidates = random_request(student_config, 4, rng)
    with torch.no_grad():
        state = student.encode_user(user)
        group = torch.randn(4, student_config.n_group_tokens, student_config.token_dim)
        base = student.compensation(state.compensation, group)
        other_user = tuple(t + 1 for t in state.compensation)
        assert not torch.allclose(student.compensation(other_user, group), base)
        assert not torch.allclose(student.compensation(state.compensation, group + 1), base)


def test_heads_share_the_trunk(student_config, rng):
    student = UGSepStudent(student_config.model_copy(update={"auxiliary_head": True}))
    batch = _batch(student_config, 5, rng)
    trunk = student.trunk(batch)
    logits = student.forward_heads(batch)
    assert trunk.shape == (5, student.trunk_dim)
    assert set(logits) == {"serving", "auxiliary"}
    torch.testing.assert_close(logits["auxiliary"], student.heads.auxiliary(trunk).squeeze(-1))
    torch.testing.assert_close(student(batch), logits["serving"])


def test_without_the_mask_score_falls_back_to_naive(student_config, rng):
    student = UGSepStudent(student_config.model_copy(update={"user_group_mask": False})).eval()
    user, candidates = random_request(student_config, 4, rng)
    with torch.no_grad():
        torch.testing.assert_close(student.score(user, candidates), student.score_naive(user, candidates))
    with pytest.raises(ValueError, match="needs the user/group mask"):
        student.encode_user(user)


def test_one_training_step_reaches_every_parameter(student_config, rng):
    student = UGSepStudent(student_config)
    batch = _batch(student_config, 16, rng)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(student(batch), torch.ones(16))
    loss.backward()
    untouched = [n for n, p in student.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert untouched == []


def test_request_level_scoring_builds_no_autograd_graph(student_config, rng):
    student = UGSepStudent(student_config).eval()
    user, candidates = random_request(student_config, 3, rng)
    assert not student.score(user, candidates).requires_grad
    assert not student.score_naive(user, candidates).requires_grad
