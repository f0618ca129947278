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
