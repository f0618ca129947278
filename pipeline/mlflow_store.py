"""The MLflow store every layer logs to: one tracking/registry URI and one experiment per lakehouse.

A base module: training runs and registry versions land in the same experiment, so both import the
connection from here rather than one from the other.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow import MlflowClient

from pipeline.config import Settings


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow (tracking and registry) at `settings.tracking_uri` and return a client."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# Marks the experiment as model training for MLflow clients that read it. MLflow 3.17's UI ignores it:
# it opens every experiment in the view the page's `workflowType` query names, else the one the browser
# last chose with its GenAI / Model training switch, else GenAI (an empty traces page, checked in
# headless Chromium). Links to the UI therefore carry MODEL_TRAINING_VIEW (`experiment_page`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def experiment_id(settings: Settings) -> str:
    """The id of `settings.mlflow.experiment`, created on first use with its artifacts beside a local
    SQLite store (MLflow's default would be `./mlruns` of whichever process came first), and marked
    as model training so the UI opens it on its runs."""
    client = connect(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is None:
        return client.create_experiment(settings.mlflow.experiment, artifact_location=artifact_location(settings),
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag was set
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def artifact_location(settings: Settings) -> str | None:
    """A local SQLite store keeps artifacts beside it, not in the working directory's `mlruns`."""
    if settings.registry.artifact_location is not None:
        return settings.registry.artifact_location
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").resolve().as_uri()
    return None


def experiment_page(settings: Settings, ui_url: str) -> str:
    """The UI address of the experiment's runs, in the Model training view whatever the browser chose before."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id(settings)}?{MODEL_TRAINING_VIEW}"
