"""Shared fixtures: one real local Spark session (with Delta) and a temporary lakehouse per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Tiny-profile settings whose lakehouse lives in the test's temporary folder."""
    return load_settings("tiny", lakehouse={"root": str(tmp_path / "lakehouse")})


@pytest.fixture(scope="session")
def spark():
    """A real Spark + Delta session shared by the whole test run (starting one takes seconds)."""
    from pipeline.spark import get_spark

    session = get_spark(load_settings("tiny"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_samples(spark, tmp_path_factory) -> Path:
    """A tiny-profile lakehouse with `training_samples` for every generated day, built once by Spark."""
    from datetime import timedelta

    from pipeline.data.synthetic import generate
    from spark_jobs import build_features, build_samples, build_sequences, ingest_events

    root = tmp_path_factory.mktemp("tiny_samples") / "lakehouse"
    settings = load_settings("tiny", lakehouse={"root": str(root)})
    generate(settings.generator, settings.lakehouse.landing, progress=False)
    days = [settings.generator.start_date + timedelta(days=i) for i in range(settings.generator.n_days)]
    for job in (ingest_events, build_features, build_sequences, build_samples):
        for day in days:
            job.run(spark, settings, day)
    return root


@pytest.fixture(scope="module")
def trained_lakehouse(tiny_samples: Path, tmp_path_factory) -> Settings:
    """A private copy of the tiny lakehouse (tables only) for a test module that trains and writes."""
    import shutil

    root = tmp_path_factory.mktemp("trained") / "lakehouse"
    shutil.copytree(tiny_samples / "tables", root / "tables")
    return load_settings("tiny", lakehouse={"root": str(root)})
