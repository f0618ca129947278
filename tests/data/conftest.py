"""Small generator configs shared by the data tests."""

from __future__ import annotations

import pytest

from pipeline.config import GeneratorConfig


@pytest.fixture
def small_cfg() -> GeneratorConfig:
    """Big enough for planted structure to show in counts, small enough to build in a blink."""
    return GeneratorConfig(seed=11, n_days=4, n_users=600, n_items=400, n_categories=8,
                           requests_per_user_per_day=3.0, slate_size=6, random_exposure_fraction=0.2)
