"""MLflow logging for training tasks: one run per task, params, metrics, curves as pictures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow

from pipeline.config import Settings
from pipeline.lineage import code_version
from pipeline.mlflow_store import experiment_id


@contextmanager
def training_run(settings: Settings, name: str, tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run in the configured store, tagged with code and config versions."""
    settings.lakehouse.root.mkdir(parents=True, exist_ok=True)
    # One experiment for training and registry, its artifacts beside the store (not ./mlruns).
    mlflow.set_experiment(experiment_id=experiment_id(settings))
    base_tags = {"recdistill.code_version": code_version(), "recdistill.config_hash": settings.config_hash(),
                 "recdistill.profile": settings.profile}
    with mlflow.start_run(run_name=name, tags={**base_tags, **(tags or {})}) as run:
        yield run


def log_curves(curves: dict[str, list[float]], title: str, filename: str) -> None:
    """Plot named per-step series into one figure and log it to the active run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, filename)
    plt.close(fig)


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
