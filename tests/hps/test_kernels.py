"""The fused kernels: training in place in the memory tier equals training a compact working-set copy."""

from pathlib import Path

import numpy as np
import pytest

from . import worker


def trained(tmp_path: Path, table: str, optimizer: str) -> dict[int, np.ndarray]:
    server, model, dense_optimizer = worker.build(tmp_path / f"ssd-{table}-{optimizer}", working_set_table=table,
                                                  optimizer=optimizer, device="cpu")
    worker.train(server, model, dense_optimizer, 0, 10)
    rows = worker.table(server)
    server.close()
    return rows


@pytest.mark.parametrize("optimizer", ["adagrad", "rowwise_adagrad"])
def test_compact_working_set_table_trains_the_same_rows_as_the_memory_tier_in_place(
        tmp_path: Path, optimizer: str) -> None:
    in_place = trained(tmp_path, "memory_tier", optimizer)
    compact = trained(tmp_path, "compact", optimizer)
    assert sorted(in_place) == sorted(compact) and len(in_place) > 100
    for key, row in in_place.items():
        np.testing.assert_allclose(compact[key], row, rtol=1e-6, atol=1e-7, err_msg=f"row of key {key}")


def test_the_in_place_kernel_updates_the_memory_tiers_own_arrays(tmp_path: Path) -> None:
    server, model, dense_optimizer = worker.build(tmp_path / "ssd", device="cpu")
    shard = server.shards[0]
    table = shard.kernel.table
    assert np.shares_memory(table.weights.detach().numpy(), shard.memory.weights)
    assert np.shares_memory(table.state.detach().numpy(), shard.memory.state)
    worker.train(server, model, dense_optimizer, 0, 3)
    keys, slots = shard.memory.items()
    rows, _ = server.read_rows(keys)
    np.testing.assert_array_equal(rows[:, :worker.DIM], shard.memory.weights[slots])
    assert shard.memory.dirty[slots].any()
    server.close()
