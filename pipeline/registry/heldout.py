"""Held-out evaluation for the gate: every model version scores the same stored requests.

Training writes its held-out requests once (`write_heldout`); `HeldoutAUC` is the gate's evaluator
over that file, scoring through the registered pyfunc, i.e. exactly what would be served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from torch import Tensor

from pipeline.metrics import auc
from pipeline.registry.request import SCORES, RequestContract

LABELS = "labels"

Request = tuple[Mapping[str, Tensor], Mapping[str, Tensor], Tensor]


def write_heldout(path: str | Path, contract: RequestContract, requests: Iterable[Request]) -> Path:
    """Store (user, candidates, labels) requests as request rows plus a `labels` list each."""
    rows = [{**contract.to_row(user, candidates), LABELS: labels.tolist()} for user, candidates, labels in requests]
    if not rows:
        raise ValueError(f"write_heldout({path}): no requests given")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


class HeldoutAUC:
    """The gate's evaluator: AUC of the model at a `models:/name/version` URI on the requests in `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.requests = pd.read_parquet(self.path)
        if LABELS not in self.requests.columns:
            raise ValueError(f"{self.path}: held-out requests need a {LABELS!r} column (one list per request); "
                             f"got columns {list(self.requests.columns)}")
        self.labels = np.concatenate(self.requests[LABELS].to_numpy())
        if self.labels.min() == self.labels.max():
            raise ValueError(f"{self.path}: AUC needs clicks and non-clicks; every label is {self.labels[0]:g}")
        self._evaluated: dict[str, float] = {}

    def __call__(self, model_uri: str) -> float:
        if model_uri not in self._evaluated:  # a registered version never changes, nor its AUC here
            model = mlflow.pyfunc.load_model(model_uri)
            scores = model.predict(self.requests.drop(columns=[LABELS]))[SCORES]
            self._evaluated[model_uri] = auc(self.labels, np.concatenate(scores.to_numpy()))
        return self._evaluated[model_uri]
