"""The student's request format for MLflow: one row per request, N candidates → N scores.

A row holds the user side once and the candidate side as lists: user fields with one value per
request (``user_id``, ``seq_length``) are numbers, the dense vector and the sequence are lists, and
every candidate field is a list with one entry per candidate (``dense_item``: a list of lists).
`RequestContract` is built from the artifact's manifest; it gives the MLflow signature, turns rows
into the artifact's tensors with errors that name the request and the field, and says whether a new
model accepts what callers of the current one send.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, Schema
from torch import Tensor

from pipeline.export.loader import MANIFEST_FILE
from pipeline.models.inputs import InputSpec

SCORES = "scores"


class RequestError(ValueError):
    """A request row does not match the contract."""


def _is_scalar(spec: InputSpec) -> bool:
    return tuple(spec.shape) == ("B",)


def _number_kind(spec: InputSpec) -> str:
    return "numbers" if "float32" in spec.dtypes else "integers"


@dataclass(frozen=True)
class RequestContract:
    """The inputs of one request and the limits the artifact was exported with."""

    user_inputs: tuple[InputSpec, ...]
    candidate_inputs: tuple[InputSpec, ...]
    max_candidates: int
    max_sequence_length: int

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> RequestContract:
        """The contract of an exported artifact (its `manifest.json`) or of `to_dict`'s output."""
        return cls(user_inputs=tuple(InputSpec.from_dict(s) for s in manifest["user_inputs"]),
                   candidate_inputs=tuple(InputSpec.from_dict(s) for s in manifest["candidate_inputs"]),
                   max_candidates=int(manifest["max_candidates"]),
                   max_sequence_length=int(manifest["max_sequence_length"]))

    @classmethod
    def of_artifact(cls, artifact_dir: str | Path) -> RequestContract:
        """The contract of the exported artifact in `artifact_dir` (reads only its manifest)."""
        return cls.from_manifest(json.loads((Path(artifact_dir) / MANIFEST_FILE).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return {"user_inputs": [s.to_dict() for s in self.user_inputs],
                "candidate_inputs": [s.to_dict() for s in self.candidate_inputs],
                "max_candidates": self.max_candidates, "max_sequence_length": self.max_sequence_length}

    def signature(self) -> ModelSignature:
        """Every field by name, typed `Any`: MLflow's own type enforcement reports bad list elements
        without naming the field, so `to_tensors` types them (the contract is in the model's metadata)."""
        columns = [ColSpec(AnyType(), spec.name) for spec in (*self.user_inputs, *self.candidate_inputs)]
        return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec(Array("double"), SCORES)]))

    def to_row(self, user: Mapping[str, Tensor], candidates: Mapping[str, Tensor]) -> dict[str, Any]:
        """One request row from the artifact's inputs (user tensors have one row)."""
        row: dict[str, Any] = {}
        for spec in self.user_inputs:
            value = user[spec.name][0]
            row[spec.name] = value.item() if _is_scalar(spec) else value.tolist()
        for spec in self.candidate_inputs:
            row[spec.name] = candidates[spec.name].tolist()
        return row

    def to_tensors(self, row: Mapping[str, Any], index: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The artifact's (user, candidates) inputs of request `index`; raises `RequestError`."""
        user = {s.name: _tensor(row.get(s.name), s, f"request {index}: user field {s.name!r}", per_request=True)
                for s in self.user_inputs}
        candidates = {s.name: _tensor(row.get(s.name), s, f"request {index}: candidate field {s.name!r}",
                                      per_request=False)
                      for s in self.candidate_inputs}
        return user, candidates

    def problems_against(self, champion: RequestContract) -> list[str]:
        """Why this (challenger) contract would reject requests the champion's callers send; [] if none."""
        problems = []
        for side, mine, theirs in (("user", self.user_inputs, champion.user_inputs),
                                   ("candidate", self.candidate_inputs, champion.candidate_inputs)):
            sent = {s.name: s for s in theirs}
            for spec in mine:
                old = sent.get(spec.name)
                if old is None:
                    problems.append(f"needs {side} field {spec.name!r}, which the champion's callers do not send")
                    continue
                if tuple(old.shape) != tuple(spec.shape):
                    problems.append(f"{side} field {spec.name!r} has shape {list(spec.shape)}; "
                                    f"the champion's is {list(old.shape)}")
                if not set(old.dtypes) <= set(spec.dtypes):
                    problems.append(f"{side} field {spec.name!r} accepts {list(spec.dtypes)}; "
                                    f"the champion accepts {list(old.dtypes)}")
                if old.max_value != spec.max_value:
                    problems.append(f"{side} field {spec.name!r} takes values up to {spec.max_value}; the "
                                    f"champion's up to {old.max_value} (ids hashed differently)")
        if self.max_candidates < champion.max_candidates:
            problems.append(f"at most {self.max_candidates} candidates; the champion takes {champion.max_candidates}")
        if self.max_sequence_length < champion.max_sequence_length:
            problems.append(f"sequences of at most {self.max_sequence_length}; the champion takes "
                            f"{champion.max_sequence_length}")
        return problems


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_COUNTS = {"B": "N (one per candidate)", "L": "L (one per sequence event)"}


def _expected(spec: InputSpec, per_request: bool) -> str:
    """What a field must hold, in words: 'a list of N (one per candidate) lists of 9 numbers'."""
    dims = list(spec.shape[1:] if per_request else spec.shape)
    kind = _number_kind(spec)
    if not dims:
        return f"a single {kind[:-1]}"
    words = [_COUNTS.get(d, str(d)) if isinstance(d, str) else str(d) for d in dims]
    return "a list of " + " lists of ".join(words) + f" {kind}"


def _offending(value: Any, allow_float: bool) -> Any:
    """The first element that is not an allowed number (for the error message), else None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return next((bad for v in value if (bad := _offending(v, allow_float)) is not None), None)
    number = (int, np.integer, float, np.floating) if allow_float else (int, np.integer)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, number):
        return value
    return value if isinstance(value, (int, np.integer)) and not _INT64_MIN <= value <= _INT64_MAX else None


def _tensor(value: Any, spec: InputSpec, where: str, *, per_request: bool) -> Tensor:
    """`value` as the artifact's tensor for `spec` (with a leading row for per-request fields)."""
    expected = _expected(spec, per_request)
    if value is None:
        raise RequestError(f"{where} is missing; expected {expected}")
    try:
        array = np.asarray(value.tolist() if isinstance(value, np.ndarray) else value)
    except ValueError as err:  # numpy refuses ragged nesting
        raise RequestError(f"{where} has lists of different lengths; expected {expected}") from err
    if array.size == 0:
        raise RequestError(f"{where} is empty: a request needs at least one candidate" if not per_request
                           else f"{where} is empty; expected {expected}")
    allow_float = "float32" in spec.dtypes
    out_of_range = array.dtype.kind == "u" and array.max() > _INT64_MAX  # numpy reads 2**63 as uint64
    if array.dtype.kind not in ("iuf" if allow_float else "iu") or out_of_range:
        bad = _offending(value, allow_float)
        if isinstance(bad, (int, np.integer)) and not isinstance(bad, (bool, np.bool_)):
            raise RequestError(f"{where} holds {bad}, outside the 64-bit integer range; expected {expected}")
        raise RequestError(f"{where} holds {bad!r} ({type(bad).__name__}); expected {expected}")
    rank = len(spec.shape) - (1 if per_request else 0)
    if array.ndim != rank:
        raise RequestError(f"{where} has {array.ndim} level(s) of lists; expected {expected}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise RequestError(f"{where} holds NaN or infinity; expected finite {_number_kind(spec)}")
    # The spec's first dtype is the canonical one, what the exported program takes.
    tensor = torch.from_numpy(array.astype(np.dtype(spec.dtypes[0])))
    return tensor.unsqueeze(0) if per_request else tensor
