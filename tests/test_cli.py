"""The `recdistill` CLI end to end on the tiny profile: generated logs become every table."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.data.landing import read_landing
from pipeline.tables import EVENTS, TRAINING_SAMPLES, USER_FEATURES, read_arrow
from spark_jobs import build_features


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RECDISTILL_LAKEHOUSE_ROOT", str(tmp_path / "lh"))
    monkeypatch.setenv("RECDISTILL_GENERATOR__N_DAYS", "2")
    return load_settings("tiny")


def test_demo_turns_generated_logs_into_samples(spark, tiny_env):
    result = CliRunner().invoke(app, ["demo", "--profile", "tiny"])
    assert result.exit_code == 0, result.output
    generated = sum(len(read_landing(tiny_env.lakehouse.landing, "synthetic", day))
                    for day in (date(2026, 1, 1), date(2026, 1, 2)))
    assert read_arrow(tiny_env, EVENTS).num_rows == generated > 0
    assert read_arrow(tiny_env, TRAINING_SAMPLES).num_rows == generated
    assert "training_samples" in result.output and f"{generated:,}" in result.output


def test_bad_flags_get_clear_errors(tiny_env):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "features", "--profile", "tiny", "--date", "2026-13-01"])
    assert result.exit_code == 2 and "is not a date" in result.output
    result = runner.invoke(app, ["data", "features", "--profile", "huge"])
    assert result.exit_code == 2 and "unknown profile 'huge'" in result.output
    result = runner.invoke(app, ["data", "samples", "--profile", "tiny", "--from", "2026-01-05", "--to", "2026-01-01"])
    assert result.exit_code == 2 and "is before --from" in result.output


def test_jobs_are_spark_submit_entry_points(spark, tiny_env):
    from tests.spark_jobs.events_factory import at, event, ingest

    ingest(spark, tiny_env, [event("a", at(date(2026, 1, 1)), click=1)])
    build_features.main(["--date", "2026-01-02", "--profile", "tiny"])
    users = read_arrow(load_settings("tiny"), USER_FEATURES).to_pandas()
    assert list(users.user_id) == [1] and list(users.clicks_1d) == [1]
