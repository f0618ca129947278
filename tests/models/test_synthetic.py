"""Generated data: random inputs honour their contract; the planted click model is learnable."""

from __future__ import annotations

import torch

from pipeline.metrics import auc
from pipeline.models.config import FeatureSchema, StudentConfig
from pipeline.models.inputs import check_inputs
from pipeline.models.synthetic import PlantedClickWorld, random_request


def test_random_request_satisfies_the_student_contract(student_config, rng):
    user, candidates = random_request(student_config, 5, rng)
    check_inputs(user, student_config.user_inputs(), what="user", dims={"B": 1})
    assert check_inputs(candidates, student_config.candidate_inputs(), what="candidates")["B"] == 5


def test_planted_clicks_follow_their_probability_and_split_into_requests():
    schema = FeatureSchema()
    clicks = PlantedClickWorld(schema, seed=1).sample(n_requests=400, n_candidates=8, sequence_length=16, seed=2)
    config = StudentConfig.preset("tiny", sequence_length=16)
    rows = check_inputs(clicks.rows, config.user_inputs() + config.candidate_inputs(), what="rows")
    assert rows["B"] == 3200 and clicks.n_requests == 400
    assert 0.1 < float(clicks.labels.mean()) < 0.6
    assert auc(clicks.labels.numpy(), clicks.click_probability.numpy()) > 0.7
    user, candidates, labels = clicks.request(3)
    assert user["user_id"].shape == (1,) and candidates["item_id"].shape == (8,) and labels.shape == (8,)
    assert torch.equal(user["user_id"].expand(8), clicks.rows["user_id"][24:32])


def test_sequence_items_share_the_item_slot_hashing():
    world = PlantedClickWorld(FeatureSchema(), seed=1)
    clicks = world.sample(n_requests=200, n_candidates=4, sequence_length=16, seed=3)
    history = set(clicks.rows["seq_item_id"][clicks.rows["seq_item_id"] > 0].tolist())
    candidates = set(clicks.rows["item_id"].tolist())
    assert len(history & candidates) > 50
