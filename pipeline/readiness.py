"""Whether a day's inputs exist, so a scheduled run skips a day without data instead of waiting on it.

A daily DAG run for a day nobody will ever land data for (the real yesterday, after unpausing a
DAG on historical data) must end at once with its reason, not wait or block the runs that can
work: Airflow's `depends_on_past` and `max_active_runs=1` turned such a run into a deadlock.
What a day truly needs from earlier days is data (features and sequences read earlier events),
so that is what the DAGs check, here.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from pipeline.config import Settings
from pipeline.data.landing import landing_days, landing_dir, landing_sources
from pipeline.tables import EVENTS, TRAINING_SAMPLES, dates_present


log = logging.getLogger(__name__)


class NoData(LookupError):
    """The day has no input and none is coming: the run for it has nothing to do."""


def require_landing(settings: Settings, day: date) -> None:
    """`NoData` naming what is missing when no source has landing files for `day`."""
    root = settings.lakehouse.landing
    if not any(any(landing_dir(root, source, day).glob("part-*")) for source in landing_sources(root)):
        days = _landed(settings)
        held = f"the landing files hold {days[0]} … {days[-1]}" if days else "there are no landing files"
        raise NoData(f"no landing files for {day} under {root} ({held}); nothing to build for this day")


def history_not_ingested(settings: Settings, day: date) -> list[date]:
    """Earlier landing dates within the lookback that `events` does not hold yet.

    Features and sequences of `day` read every earlier event, so they wait for these; a date with no
    landing files has no events to wait for.
    """
    first = day - timedelta(days=settings.sequences.lookback_days)
    earlier = [d for d in _landed(settings) if first <= d < day]
    ingested = dates_present(settings, EVENTS, earlier)
    waiting = [d for d in earlier if d not in ingested]
    if waiting:
        log.info("%s waits for the events of %s: landed, not ingested yet", day, [str(d) for d in waiting])
    return waiting


def require_samples_coming(settings: Settings, days: list[date]) -> None:
    """`NoData` naming the days of `days` with neither training samples nor landing files: none will come."""
    have_samples = dates_present(settings, TRAINING_SAMPLES, days)
    landed = set(_landed(settings))
    missing = sorted(d for d in days if d not in have_samples and d not in landed)
    if missing:
        raise NoData(f"no training samples and no landing files for {[str(d) for d in missing]} "
                     f"under {settings.lakehouse.root}: nothing will build them")


def _landed(settings: Settings) -> list[date]:
    """Every date any source has landing files for, ascending."""
    root = settings.lakehouse.landing
    return sorted({d for source in landing_sources(root) for d in landing_days(root, source)})
