"""Config validation: inconsistent models are refused with messages that say what to change."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config import STUDENT_SIZES, load_settings
from pipeline.models.config import (
    DENSE_ITEM,
    SEQUENCE_SUMMARY,
    TARGET_ATTENTION,
    FeatureSchema,
    StudentConfig,
    TeacherConfig,
    TokenGroup,
)
from pipeline.models.student import UGSepStudent


def test_presets_build_and_satisfy_mixing_width():
    for name in ("tiny", "small", "large"):
        config = TeacherConfig.preset(name)
        assert config.token_dim % config.n_tokens == 0
    default = StudentConfig()
    assert (default.n_user_tokens, default.n_group_tokens, default.token_dim) == (12, 4, 256)


def test_student_sizes_grow_with_the_budget():
    sizes = [StudentConfig.preset(name) for name in STUDENT_SIZES]
    assert STUDENT_SIZES == ("xs", "s", "m")
    assert [sum(p.numel() for p in UGSepStudent(config).parameters()) for config in sizes] == sorted(
        sum(p.numel() for p in UGSepStudent(config).parameters()) for config in sizes)
    assert [(c.token_dim, c.n_tokens, c.n_layers, c.embedding_dim) for c in sizes] == [
        (16, 8, 1, 8), (32, 8, 2, 8), (64, 16, 2, 16)]


def test_unknown_student_preset_lists_the_presets():
    with pytest.raises(ValueError, match=r"unknown student preset 'xl'; expected one of \['xs', 's', 'm', "):
        StudentConfig.preset("xl")
    with pytest.raises(ValueError, match=r"student.preset 'xl' \(RECDISTILL_STUDENT__PRESET\) is not a student "
                                         r"preset; expected one of \['xs', 's', 'm'"):
        load_settings("tiny", student={"preset": "xl"})


def test_token_dim_must_divide_by_token_count():
    with pytest.raises(ValidationError, match="token_dim 30 must be divisible by the number of tokens 8"):
        StudentConfig.preset("tiny", token_dim=30)


def test_user_tokens_cannot_read_item_features():
    groups = [TokenGroup(name="leaky", features=["user_id", "item_id"])]
    with pytest.raises(ValidationError, match="token group 'leaky' has item-side feature 'item_id'"):
        StudentConfig.preset("tiny", user_token_groups=groups)


def test_group_tokens_cannot_read_user_features():
    groups = [TokenGroup(name="item", features=["item_id", "user_age"], n_tokens=2)]
    with pytest.raises(ValidationError, match="has user-side feature 'user_age'"):
        StudentConfig.preset("tiny", group_token_groups=groups)


def test_unknown_feature_is_named():
    groups = [TokenGroup(name="item", features=["item_colour", DENSE_ITEM, TARGET_ATTENTION], n_tokens=2)]
    with pytest.raises(ValidationError, match="unknown feature 'item_colour'"):
        StudentConfig.preset("tiny", group_token_groups=groups)


def test_teacher_encodes_the_sequence_itself():
    groups = [TokenGroup(name="seq", features=[SEQUENCE_SUMMARY], n_tokens=6)]
    with pytest.raises(ValidationError, match="long-sequence encoder"):
        TeacherConfig.preset("tiny", token_groups=groups)


def test_slot_names_must_be_distinct_and_unreserved():
    with pytest.raises(ValidationError, match="clashing"):
        FeatureSchema(user_slots=["user_id", "dense_user"])


def test_student_inputs_split_user_and_candidate_sides(student_config):
    user = {s.name for s in student_config.user_inputs()}
    candidates = {s.name for s in student_config.candidate_inputs()}
    assert {"user_id", "hour", "dense_user", "seq_item_id", "seq_length"} <= user
    assert candidates == {"item_id", "item_category", "dense_item"}
    assert not user & candidates


def test_teacher_needs_position_unless_neutral(teacher_config):
    assert "position" in {s.name for s in teacher_config.inputs()}
    assert "position" not in {s.name for s in teacher_config.inputs(neutral_position=True)}
