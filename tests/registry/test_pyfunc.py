"""The registered student as a pyfunc: the exported artifact's scores, and clear 400s for bad requests."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from pipeline.export.loader import load_student_artifact
from pipeline.registry.registry import model_uri
from pipeline.registry.request import SCORES
from tests.registry.conftest import Served, Students


@pytest.fixture(scope="module")
def champion(served: Served) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(model_uri(served.config.student_model, alias=served.config.champion_alias))


def test_pyfunc_scores_equal_the_exported_artifact(champion: mlflow.pyfunc.PyFuncModel, students: Students) -> None:
    artifact = load_student_artifact(students.good)
    rows = pd.DataFrame([students.contract.to_row(user, candidates) for user, candidates, _ in students.requests])
    predicted = champion.predict(rows)[SCORES]
    assert len(predicted) == len(students.requests)
    for scores, (user, candidates, _) in zip(predicted, students.requests):
        expected = artifact.score(user, candidates)
        assert torch.equal(torch.tensor(scores, dtype=torch.float32), expected)


def test_pyfunc_signature_and_input_example_describe_a_request(champion: mlflow.pyfunc.PyFuncModel) -> None:
    example, signature = champion.input_example, champion.metadata.signature
    assert list(example.columns) == signature.inputs.input_names()
    assert len(example["item_id"][0]) == len(example["dense_item"][0]) == 2
    assert signature.outputs.input_names() == [SCORES]
    assert len(champion.predict(example)[SCORES][0]) == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"item_id": ["x", 1, 2, 3, 4, 5, 6, 7]}, "candidate field 'item_id' holds 'x'"),
    ({"item_category": [1, 2]}, "input 'item_category' has shape (2,), axis 0 is 2 but B = 8"),
    ({"seq_action": [1]}, "input 'seq_action' has shape (1, 1), axis 1 is 1 but L = 8"),
    ({"item_id": [], "item_category": [], "dense_item": []}, "'item_id' is empty"),
])
def test_pyfunc_rejects_malformed_requests_naming_the_field(champion: mlflow.pyfunc.PyFuncModel, students: Students,
                                                            change: dict, field: str) -> None:
    user, candidates, _ = students.requests[0]
    good = students.contract.to_row(user, candidates)
    with pytest.raises(MlflowException) as caught:
        champion.predict(pd.DataFrame([good, {**good, **change}]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "request 1: " in caught.value.message and field in caught.value.message
