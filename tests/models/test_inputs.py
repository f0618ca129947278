"""Bad shapes, dtypes, ranges and missing slots raise InputError naming the input and the expectation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models.inputs import InputError
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import random_inputs, random_request
from pipeline.models.teacher import Teacher


@pytest.fixture
def student(student_config) -> UGSepStudent:
    return UGSepStudent(student_config).eval()


def test_missing_slot_is_named_with_its_contract(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    del user["user_age"]
    with pytest.raises(InputError, match=r"user inputs: missing input\(s\) 'user_age': int64\[B\]"):
        student.score(user, candidates)


def test_wrong_dense_width(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    candidates["dense_item"] = torch.rand(4, 3)
    with pytest.raises(InputError, match=r"'dense_item' has shape \(4, 3\); expected float32\[B, 9\]"):
        student.score(user, candidates)


def test_wrong_dtype(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    candidates["item_id"] = candidates["item_id"].float()
    with pytest.raises(InputError, match="'item_id' has dtype float32; expected int64"):
        student.score(user, candidates)


def test_candidate_rows_must_agree(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    candidates["item_category"] = candidates["item_category"][:3]
    with pytest.raises(InputError, match="axis 0 is 3 but B = 4"):
        student.score(user, candidates)


def test_request_user_side_has_one_row(student, student_config, rng):
    user, _ = random_request(student_config, 4, rng)
    candidates = random_inputs(student_config.candidate_inputs(), {"B": 4}, rng)
    two_users = {k: torch.cat([v, v]) for k, v in user.items()}
    with pytest.raises(InputError, match="B = 1"):
        student.score(two_users, candidates)


def test_sequence_longer_than_configured(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng, sequence_length=student_config.sequence_length + 1)
    with pytest.raises(InputError, match="at most 8 is supported"):
        student.score(user, candidates)


def test_sequence_tensors_must_share_length(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    user["seq_action"] = user["seq_action"][:, :5]
    with pytest.raises(InputError, match="'seq_action' has shape"):
        student.score(user, candidates)


def test_ids_outside_hash_buckets(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    candidates["item_id"][0] = student_config.features.hash_buckets
    with pytest.raises(InputError, match=r"'item_id' has values in \[\d+, 16384\]; expected \[0, 16383\]"):
        student.score(user, candidates)


def test_length_beyond_sequence(student, student_config, rng):
    user, candidates = random_request(student_config, 4, rng)
    user["seq_length"][0] = 9
    with pytest.raises(InputError, match="'seq_length' has values in"):
        student.score(user, candidates)


def test_teacher_batch_missing_position(teacher_config, rng):
    batch = random_inputs(teacher_config.inputs(neutral_position=True), {"B": 3, "L": 16}, rng)
    with pytest.raises(InputError, match="teacher batch: missing input.*'position'"):
        Teacher(teacher_config)(batch)


def test_embedding_provider_of_wrong_width(student_config, rng):
    student = UGSepStudent(student_config, embeddings=nn.Embedding(student_config.features.hash_buckets, 5))
    with pytest.raises(ValueError, match=r"Embedding returned shape \(1, 8, 5\).*embedding_dim 8"):
        student.score(*random_request(student_config, 4, rng))
