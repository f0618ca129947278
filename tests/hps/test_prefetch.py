"""Prefetching the next batch in the background gives exactly the results of not prefetching."""

from pathlib import Path

import numpy as np
import torch

from . import worker


def run(tmp_path: Path, prefetch: bool) -> tuple[dict[int, np.ndarray], dict[str, torch.Tensor], object]:
    server, model, optimizer = worker.build(tmp_path / f"ssd-{prefetch}", prefetch=prefetch)
    worker.train(server, model, optimizer, 0, 14)
    result = worker.table(server), model.state_dict(), server.stats()
    server.close()
    return result


def test_prefetch_gives_identical_tables_and_dense_weights(tmp_path: Path) -> None:
    with_prefetch, dense_a, stats = run(tmp_path, prefetch=True)
    without, dense_b, _ = run(tmp_path, prefetch=False)
    assert sorted(with_prefetch) == sorted(without)
    for key, row in without.items():
        np.testing.assert_array_equal(with_prefetch[key], row)
    for name, tensor in dense_b.items():
        torch.testing.assert_close(dense_a[name], tensor, rtol=0, atol=0)
    # Rows really moved between tiers while batches overlapped.
    assert stats.counts["rows_ssd_to_memory"] > 0 and stats.counts["rows_memory_to_ssd"] > 0
    assert stats.seconds["prefetch"] > 0 and 0.0 <= stats.prefetch_hidden <= 1.0
