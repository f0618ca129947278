"""The file MLflow runs to build the student pyfunc (models from code: no pickled Python object)."""

import mlflow

from pipeline.registry.pyfunc import StudentModel

mlflow.models.set_model(StudentModel())
