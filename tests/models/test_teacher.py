"""The teacher: multi-task logits, neutral position, long sequences, optional MoE."""

from __future__ import annotations

import torch

from pipeline.models.config import TeacherConfig
from pipeline.models.synthetic import random_inputs
from pipeline.models.teacher import Teacher, TeacherEnsemble, build_teacher


def _batch(config: TeacherConfig, rows: int, length: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    return random_inputs(config.inputs(), {"B": rows, "L": length}, rng)


def test_one_logit_per_task_and_row(teacher_config, rng):
    logits = Teacher(teacher_config)(_batch(teacher_config, 5, 32, rng))
    assert set(logits) == {"click", "conversion"}
    assert all(v.shape == (5,) and torch.isfinite(v).all() for v in logits.values())


def test_neutral_position_ignores_position_and_does_not_need_it(teacher_config, rng):
    teacher = Teacher(teacher_config).eval()
    batch = _batch(teacher_config, 5, 32, rng)
    moved = {**batch, "position": (batch["position"] + 7) % 16384}
    without_position = {k: v for k, v in batch.items() if k != "position"}
    with torch.no_grad():
        observed, observed_moved = teacher(batch)["click"], teacher(moved)["click"]
        neutral = teacher(without_position, neutral_position=True)["click"]
    assert not torch.allclose(observed, observed_moved)
    torch.testing.assert_close(teacher(moved, neutral_position=True)["click"], neutral)
    examine = torch.sigmoid(teacher.position_bias(teacher.tokenizer.lookup(batch["position"]))[:, 0])
    torch.testing.assert_close(torch.sigmoid(observed), examine * torch.sigmoid(neutral))


def test_sequence_in_the_thousands_is_merged_and_tractable(rng):
    config = TeacherConfig.preset("tiny", sequence_length=4096, merge_size=32)
    teacher = Teacher(config)
    logits = teacher(_batch(config, 4, 4096, rng))
    assert torch.isfinite(logits["click"]).all()
    assert teacher.long_sequence.merged_positions.num_embeddings == 4096 // 32


def test_sequence_encoder_is_candidate_aware(teacher_config, rng):
    teacher = Teacher(teacher_config).eval()
    events = torch.randn(2, 32, teacher_config.embedding_dim)
    valid = torch.ones(2, 32, dtype=torch.bool)
    query_dim = teacher.long_sequence.candidate.in_features
    one, other = torch.randn(2, query_dim), torch.randn(2, query_dim)
    with torch.no_grad():
        assert not torch.allclose(teacher.long_sequence(events, valid, one)[:, 0],
                                  teacher.long_sequence(events, valid, other)[:, 0])


def test_empty_history_and_padding_are_harmless(teacher_config, rng):
    teacher = Teacher(teacher_config).eval()
    batch = _batch(teacher_config, 4, 32, rng)
    batch["seq_length"] = torch.tensor([0, 1, 5, 32])
    padded = {**batch, "seq_item_id": batch["seq_item_id"].clone()}
    padded["seq_item_id"][0] = 3  # values beyond each row's length must not matter
    padded["seq_item_id"][2, 8:] = 5
    padded["seq_item_category"] = batch["seq_item_category"].clone()
    padded["seq_item_category"][2, 8:] = 7
    with torch.no_grad():
        torch.testing.assert_close(teacher(batch)["click"], teacher(padded)["click"])
        assert torch.isfinite(teacher(batch)["click"]).all()


def test_moe_teacher_trains_with_sparsity_penalty(rng):
    config = TeacherConfig.preset("tiny", n_experts=3)
    teacher = Teacher(config)
    logits = teacher(_batch(config, 6, 32, rng))
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(v, torch.ones(6)) for v in logits.values())
    (loss + teacher.aux_loss()).backward()
    assert teacher.aux_loss() > 0
    assert teacher.mixer.blocks[0].ffn.router_weight.grad.abs().sum() > 0


def test_custom_embedding_provider_receives_the_batch_ids(teacher_config, rng):
    seen: list[torch.Tensor] = []

    class RecordingTable(torch.nn.Embedding):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            seen.append(ids)
            return super().forward(ids)

    teacher = Teacher(teacher_config, embeddings=RecordingTable(16384, teacher_config.embedding_dim))
    batch = _batch(teacher_config, 3, 32, rng)
    teacher(batch)
    assert any(torch.equal(ids, batch["seq_item_id"]) for ids in seen)
    assert any(ids.dim() == 2 and torch.equal(ids[:, 0], batch["user_id"]) for ids in seen)


def test_training_drops_the_examine_term_for_a_share_of_rows(teacher_config, rng):
    teacher = Teacher(teacher_config.model_copy(update={"position_dropout": 0.5})).train()
    batch = _batch(teacher_config, 400, 32, rng)
    torch.manual_seed(0)
    observed = teacher(batch)["click"]
    torch.manual_seed(0)
    neutral = teacher(batch, neutral_position=True)["click"]
    dropped = torch.isclose(observed, neutral).float().mean()
    assert 0.4 < dropped < 0.6


def test_hard_search_reads_the_history_in_the_candidates_category(teacher_config, rng):
    batch = _batch(teacher_config, 4, 32, rng)
    batch["seq_length"] = torch.full((4,), 32)
    # Every event in the candidate's category (same item ids, so only the categories differ).
    matching = {**batch, "seq_item_category": batch["item_category"].unsqueeze(1).expand(-1, 32).clone()}
    with_search = Teacher(teacher_config).eval()
    without = Teacher(teacher_config.model_copy(update={"hard_search": False})).eval()
    assert without.hard_search is None
    with torch.no_grad():
        found = with_search.hard_search(matching["item_category"], matching["seq_item_category"],
                                        matching["seq_action"], torch.zeros(4, 32, teacher_config.embedding_dim),
                                        torch.ones(4, 32, dtype=torch.bool))
        assert not torch.allclose(with_search(batch)["click"], with_search(matching)["click"])
    assert found.shape == (4, teacher_config.token_dim)


def test_an_ensemble_averages_members_that_each_read_their_own_columns(teacher_config, rng):
    config = teacher_config.model_copy(update={"members": 3})
    dim = config.embedding_dim
    table = torch.nn.Embedding(16384, 3 * dim)
    ensemble = build_teacher(config, table).eval()
    assert isinstance(ensemble, TeacherEnsemble) and isinstance(build_teacher(teacher_config, table), Teacher)
    batch = _batch(config, 6, 32, rng)
    with torch.no_grad():
        members = ensemble(batch, per_member=True)
        mean = ensemble(batch)
        for task in ("click", "conversion"):
            torch.testing.assert_close(mean[task], torch.stack([m[task] for m in members]).mean(dim=0))
        # Different initial weights: the members disagree.
        assert not torch.allclose(members[0]["click"], members[1]["click"])
        # Member 1 reads only its own columns of the shared rows.
        table.weight[:, :dim] += 1.0
        table.weight[:, 2 * dim:] -= 1.0
        moved = ensemble(batch, per_member=True)
    torch.testing.assert_close(moved[1]["click"], members[1]["click"])
    assert not torch.allclose(moved[0]["click"], members[0]["click"])


def test_each_member_learns_from_its_own_loss(teacher_config, rng):
    """Summed member losses, not a loss on the mean logit: a member's gradient is the one it would get alone."""
    from pipeline.train.teacher_model import teacher_loss, training_loss

    config = teacher_config.model_copy(update={"members": 2})
    ensemble = build_teacher(config, torch.nn.Embedding(16384, 2 * config.embedding_dim))
    batch = {**_batch(config, 8, 32, rng), "click": torch.ones(8), "conversion": torch.zeros(8)}
    click_tower = list(ensemble.members[0].towers["click"].parameters())
    torch.manual_seed(0)  # the same position dropout draws in both passes
    training_loss(ensemble, ensemble, batch).backward()
    together = [p.grad.clone() for p in click_tower]
    ensemble.zero_grad()
    torch.manual_seed(0)
    teacher_loss(ensemble(batch, per_member=True)[0], batch).backward()
    for with_other, by_itself in zip(together, [p.grad for p in click_tower]):
        torch.testing.assert_close(with_other, by_itself)
