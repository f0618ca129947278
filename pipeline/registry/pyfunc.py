"""The student as an MLflow pyfunc: the exported W8A16 artifact behind the request format.

MLflow loads it as "models from code" (`serving_model.py`), so nothing is pickled into the model,
and with only `SERVING_MODULES` of recdistill copied beside it: serving needs no training code.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.export.loader import load_student_artifact
from pipeline.models.inputs import InputError
from pipeline.registry.request import SCORES, RequestContract, RequestError

ARTIFACT_KEY = "student"

# Every recdistill module the served model imports: this file and its imports, transitively.
SERVING_MODULES = (
    "__init__.py",
    "export/__init__.py", "export/loader.py",
    "models/__init__.py", "models/inputs.py",
    "registry/__init__.py", "registry/pyfunc.py", "registry/request.py",
)


class StudentModel(mlflow.pyfunc.PythonModel):
    """Scores each request row (one user, N candidates) into a list of N serving logits."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.artifact = load_student_artifact(context.artifacts[ARTIFACT_KEY])
        self.contract = RequestContract.from_manifest(self.artifact.manifest)

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """A `scores` column: per request, the logits of its candidates in request order.

        Malformed requests raise INVALID_PARAMETER_VALUE (HTTP 400) naming the request and field.
        """
        scores = []
        for index, row in enumerate(model_input.to_dict("records")):
            try:
                user, candidates = self.contract.to_tensors(row, index)
                scores.append(self.artifact.score(user, candidates).tolist())
            except RequestError as err:
                raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err
            except InputError as err:
                raise MlflowException(f"request {index}: {err}", error_code=INVALID_PARAMETER_VALUE) from err
        return pd.DataFrame({SCORES: scores})
