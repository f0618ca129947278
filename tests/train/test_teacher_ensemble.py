"""An ensemble teacher (`teacher.members`) on the parameter server: one version whose logits are its members' mean."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.artifacts import teacher_manifest
from pipeline.data.batches import iter_batches
from pipeline.models.teacher import TeacherEnsemble
from pipeline.tables import TEACHER_LOGITS, read_arrow
from pipeline.train.logit_dump import dump_logits
from pipeline.train.model_configs import teacher_model_hash
from pipeline.train.teacher import train_teacher
from pipeline.train.teacher_model import open_teacher
from pipeline.train.windows import default_windows


def test_an_ensemble_teacher_trains_on_one_server_and_dumps_its_members_mean_logit(trained_lakehouse):
    base = trained_lakehouse
    settings = base.model_copy(update={"teacher": base.teacher.model_copy(update={"members": 2, "epochs": 2})})
    windows = default_windows(settings)
    run = train_teacher(settings, windows.teacher_train, [windows.calibration])
    manifest = teacher_manifest(settings, run.version)
    assert manifest.model_hash == teacher_model_hash(settings) != teacher_model_hash(base)  # no warm start across
    assert len(manifest.validation_aucs) == 2 and 0 < manifest.metrics["val_auc"] <= 1
    dump_logits(settings, windows.holdout, run.version)

    net = open_teacher(settings, run.version)
    try:
        assert isinstance(net.model, TeacherEnsemble) and net.server.dim == 2 * settings.teacher.embedding_dim
        ids, members = [], []
        with torch.no_grad():
            for batch in net.server.pipeline(iter_batches(settings, [windows.holdout], 4096, "teacher"), net.ids_of,
                                             train=False):
                ids.append(batch["sample_id"].numpy())
                members.append(np.stack([m["click"].numpy()
                                         for m in net.model(batch, neutral_position=True, per_member=True)]))
    finally:
        net.server.close()
    members_logits = np.concatenate(members, axis=1)
    assert not np.allclose(members_logits[0], members_logits[1])  # two members, not one model twice
    dumped = read_arrow(settings, TEACHER_LOGITS, days=[windows.holdout]).to_pandas().set_index("sample_id")
    np.testing.assert_allclose(dumped.loc[np.concatenate(ids), "logit_click"].to_numpy(),
                               members_logits.mean(axis=0), rtol=1e-5, atol=1e-5)
