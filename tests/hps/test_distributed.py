"""Two processes under torchrun (gloo on CPU; nccl where two GPUs exist) train the same tables as one process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from . import worker

STEPS = 10


def merged_tables(folder: Path, ranks: int) -> dict[int, np.ndarray]:
    tables = [np.load(folder / f"table-rank{r}.npz") for r in range(ranks)]
    keys = [set(t["keys"].tolist()) for t in tables]
    assert all(keys) and not set.intersection(*keys), "every rank owns its own, non-empty share of keys"
    return {k: row for t in tables for k, row in zip(t["keys"].tolist(), t["rows"])}


def assert_close_tables(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=f"row of key {key}")


@pytest.mark.parametrize("backend", [
    "gloo",
    pytest.param("nccl", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl needs two GPUs "
                                                  "(benchmarks/hps_gpu.sh runs it on a GPU machine)")),
])
def test_two_processes_equal_one_process_and_restore_onto_one(tmp_path: Path, backend: str) -> None:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(worker.__file__)), "--work", str(tmp_path), "--steps", str(STEPS),
         "--checkpoint", str(tmp_path / "ck"), "--backend", backend],
        capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    two_process = merged_tables(tmp_path, 2)

    server, model, optimizer = worker.build(tmp_path / "ssd-single", device="cpu")
    worker.train(server, model, optimizer, 0, STEPS)
    assert_close_tables(two_process, worker.table(server))
    dense = torch.load(tmp_path / "dense.pt", map_location="cpu")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(dense[name], tensor, rtol=1e-5, atol=1e-6)

    # The two-shard snapshot restores onto one process and training continues as if never split.
    restored, model_r, optimizer_r = worker.build(tmp_path / "ssd-restored", device="cpu")
    start = worker.resume(restored, model_r, optimizer_r, tmp_path / "ck")
    assert start == STEPS and restored.num_shards == 1
    worker.train(restored, model_r, optimizer_r, STEPS, STEPS + 4)
    worker.train(server, model, optimizer, STEPS, STEPS + 4)
    assert_close_tables(worker.table(restored), worker.table(server))
    server.close()
    restored.close()
