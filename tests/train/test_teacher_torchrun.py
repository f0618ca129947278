"""The teacher under torchrun: two gloo ranks train one teacher version that one process can serve."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import mlflow
import pytest

from pipeline.artifacts import latest_teacher, teacher_manifest
from pipeline.config import load_settings
from pipeline.train.teacher_model import open_teacher
from pipeline.train.teacher_scoring import evaluate_scored, score_teacher
from pipeline.train.windows import default_windows


def test_two_ranks_train_one_teacher_that_one_process_restores(tiny_samples, tmp_path):
    root = tmp_path / "lakehouse"
    shutil.copytree(tiny_samples / "tables", root / "tables")
    settings = load_settings("tiny", lakehouse={"root": str(root)})
    env = {**os.environ, "RECDISTILL_PROFILE": "tiny", "RECDISTILL_LAKEHOUSE_ROOT": str(root),
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "pipeline.cli", "teacher", "train"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    version = latest_teacher(settings)
    manifest = teacher_manifest(settings, version)
    assert manifest.world_size == 2
    assert manifest.data_dates == default_windows(settings).teacher_train
    # Rank 0 alone reported to MLflow: one run, with every epoch.
    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.`recdistill.teacher_version` = '{version}'")
    assert len(runs) == 1
    history = mlflow.MlflowClient().get_metric_history(manifest.run_id, "val_auc")
    assert [m.step for m in history] == list(range(1, settings.teacher.epochs + 1))

    # The sharded snapshot restores onto one process, which scores the validation day as the two ranks did together.
    net = open_teacher(settings, version)
    try:
        scored = score_teacher(net, settings, [default_windows(settings).calibration], neutral_position=False)
    finally:
        net.server.close()
    assert evaluate_scored(scored, "val_")["val_auc"] == pytest.approx(manifest.metrics["val_auc"], abs=1e-6)
