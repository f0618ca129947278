"""Progress in a log file: a line at the start, at every 10 % and at the end; never a carriage return."""

from __future__ import annotations

import logging

from pipeline.progress import Step, track


def test_a_step_logs_every_tenth_of_its_total_and_its_end(caplog, monkeypatch):
    monkeypatch.setenv("RECDISTILL_PROGRESS", "log")
    with caplog.at_level(logging.INFO, logger="recdistill.progress"):
        assert sum(track(range(1000), "scoring", unit="batch")) == sum(range(1000))
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "scoring: started (1,000 batches)"
    assert [line.split(" (")[0] for line in lines[1:-1]] == [f"scoring: {p}%" for p in range(10, 100, 10)]
    assert lines[-1].startswith("scoring: done, 1,000 batches in ")
    assert not any("\r" in line for line in lines)


def test_a_step_without_a_total_logs_its_start_and_end_only_when_quick(caplog, monkeypatch):
    monkeypatch.setenv("RECDISTILL_PROGRESS", "log")
    with caplog.at_level(logging.INFO, logger="recdistill.progress"), Step("epoch 1", unit="batch") as step:
        for _ in range(500):
            step.advance()
    assert [record.getMessage().split(" in ")[0] for record in caplog.records] == [
        "epoch 1: started", "epoch 1: done, 500 batches"]
