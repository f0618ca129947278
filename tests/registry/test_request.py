"""The request format: rows round-trip to the artifact's inputs, malformed rows name their field,
and a new contract is compatible only if it accepts what callers of the old one send."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.models.config import StudentConfig
from pipeline.models.inputs import InputSpec
from pipeline.models.synthetic import random_request
from pipeline.registry.request import SCORES, RequestContract, RequestError

CONFIG = StudentConfig.preset("tiny")
CONTRACT = RequestContract(tuple(CONFIG.user_inputs()), tuple(CONFIG.candidate_inputs()),
                           max_candidates=64, max_sequence_length=CONFIG.sequence_length)


@pytest.fixture
def row() -> dict:
    user, candidates = random_request(CONFIG, 3, torch.Generator().manual_seed(0), sequence_length=5)
    return CONTRACT.to_row(user, candidates)


def test_row_round_trips_to_the_artifacts_inputs() -> None:
    user, candidates = random_request(CONFIG, 3, torch.Generator().manual_seed(0), sequence_length=5)
    back_user, back_candidates = CONTRACT.to_tensors(CONTRACT.to_row(user, candidates))
    for original, back in ((user, back_user), (candidates, back_candidates)):
        assert sorted(original) == sorted(back)
        for name, tensor in original.items():
            assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_row_holds_the_user_once_and_one_entry_per_candidate(row: dict) -> None:
    assert isinstance(row["user_id"], int)
    assert len(row["seq_item_id"]) == 5
    assert len(row["item_id"]) == 3 and len(row["dense_item"]) == 3
    assert len(row["dense_item"][0]) == CONFIG.features.n_dense_item


def test_signature_names_every_field_and_returns_scores() -> None:
    signature = CONTRACT.signature()
    assert signature.inputs.input_names() == [s.name for s in CONFIG.user_inputs() + CONFIG.candidate_inputs()]
    assert signature.outputs.input_names() == [SCORES]


@pytest.mark.parametrize(("change", "message"), [
    ({"item_id": ["a", 2, 3]},
     "candidate field 'item_id' holds 'a' (str); expected a list of N (one per candidate) integers"),
    ({"user_id": "abc"}, "user field 'user_id' holds 'abc' (str); expected a single integer"),
    ({"item_id": [1.5, 2, 3]}, "candidate field 'item_id' holds 1.5 (float)"),
    ({"item_id": [], "item_category": [], "dense_item": []},
     "'item_id' is empty: a request needs at least one candidate"),
    ({"item_id": 7}, "candidate field 'item_id' has 0 level(s) of lists"),
    ({"dense_item": [[1.0] * 9, [1.0] * 9, [1.0]]}, "candidate field 'dense_item' has lists of different lengths"),
    ({"dense_user": [float("nan")] * 9}, "user field 'dense_user' holds NaN or infinity"),
    ({"seq_item_id": None}, "user field 'seq_item_id' is missing"),
])
def test_malformed_rows_name_the_request_and_field(row: dict, change: dict, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        CONTRACT.to_tensors({**row, **change}, index=4)
    assert str(caught.value).startswith("request 4: ")
    assert message in str(caught.value)


def _spec(contract_specs: tuple[InputSpec, ...], name: str) -> InputSpec:
    return next(s for s in contract_specs if s.name == name)


def test_identical_or_narrower_contract_is_compatible() -> None:
    assert CONTRACT.problems_against(CONTRACT) == []
    dropped = replace(CONTRACT, candidate_inputs=CONTRACT.candidate_inputs[:-1])
    assert dropped.problems_against(CONTRACT) == []  # callers' extra field is ignored


def test_contract_that_rejects_the_champions_requests_is_incompatible() -> None:
    extra = InputSpec("item_brand", ("B",), ("int64",), 99)
    dense = _spec(CONTRACT.candidate_inputs, "dense_item")
    item = _spec(CONTRACT.candidate_inputs, "item_id")
    challenger = replace(CONTRACT, max_candidates=8, candidate_inputs=(
        replace(item, max_value=1023), _spec(CONTRACT.candidate_inputs, "item_category"),
        replace(dense, shape=("B", 5)), extra))
    problems = "\n".join(challenger.problems_against(CONTRACT))
    assert "needs candidate field 'item_brand'" in problems
    assert "'dense_item' has shape ['B', 5]" in problems
    assert "'item_id' takes values up to 1023" in problems
    assert "at most 8 candidates; the champion takes 64" in problems
