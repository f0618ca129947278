"""Stats add up: per-tier hit rates, rows and bytes moved, time per stage, logged and flattened."""

import logging
from pathlib import Path

import pytest

from . import worker


def test_counters_are_consistent_across_tiers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server, model, optimizer = worker.build(tmp_path / "ssd", log_every=5)
    with caplog.at_level(logging.INFO, logger="pipeline.hps.server"):
        worker.train(server, model, optimizer, 0, 12)
    stats = server.stats()
    counts = stats.counts
    row_bytes = server.optimizer.width * 4
    assert counts["steps"] == 12
    assert counts["memory_hits"] + counts["memory_misses"] == counts["unique_keys"]
    assert counts["ssd_hits"] + counts["ssd_misses"] == counts["memory_misses"]
    assert counts["ssd_misses"] == counts["rows_admitted"] + counts["rows_default"]
    assert counts["bytes_ssd_to_memory"] == counts["rows_ssd_to_memory"] * row_bytes > 0
    assert counts["bytes_memory_to_ssd"] == counts["rows_memory_to_ssd"] * row_bytes > 0
    # Rows without a row yet (not admitted) read zeros: only rows that exist reach the working set.
    assert counts["rows_memory_to_device"] == counts["unique_keys"] - counts["rows_default"]
    assert 0 < stats.memory_hit_rate < 1 and 0 < stats.ssd_hit_rate < 1
    assert stats.memory_rows == len(server.shards[0].memory) and stats.ssd_rows == len(server.shards[0].ssd)
    for stage in ("dedupe", "resolve", "admit", "gather", "optimize"):
        assert stats.seconds[stage] > 0, stage
    metrics = stats.as_dict()
    assert metrics["hps/memory_hit_rate"] == stats.memory_hit_rate
    assert metrics["hps/rows_ssd_to_memory"] == counts["rows_ssd_to_memory"]
    assert all(isinstance(v, float) for v in metrics.values())
    assert sum("memory hit" in r.getMessage() for r in caplog.records) == 2
    server.close()
