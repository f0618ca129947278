"""Daily data plane: landing files → events → user/item features → sequences → training samples.

Each task is one spark-submit of a `spark_jobs` module for the run's logical date; every job
replaces exactly its date's partitions, so any run can be retried or cleared and rerun.
Features and sequences of a date read earlier dates' events, hence `depends_on_past`: a backfill
(which ignores `max_active_runs`) still builds the days in order. Airflow then asks backfills to
say what to rerun: `airflow backfill create --dag-id recdistill_features --from-date A --to-date B
--reprocess-behavior failed` (or `completed` to rebuild days that succeeded).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from airflow.sdk import CronDataIntervalTimetable, dag

from pipeline.airflow import assets
from pipeline.airflow.tasks import spark_job
from pipeline.config import load_settings

settings = load_settings()


@dag(
    # The run for day D starts once D has ended, and its logical date (`ds`) is D.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime.combine(settings.generator.start_date, time(), timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "depends_on_past": True,
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
    },
    tags=["recdistill", "data"],
    doc_md=__doc__,
)
def recdistill_features() -> None:
    # Every landing source of the day: its events are their union.
    ingest = spark_job(settings, "ingest", "ingest_events", [assets.EVENTS, assets.EVENTS_QUARANTINE])
    features = spark_job(settings, "features", "build_features", [assets.USER_FEATURES, assets.ITEM_FEATURES])
    sequences = spark_job(settings, "sequences", "build_sequences", [assets.SEQUENCES])
    samples = spark_job(settings, "samples", "build_samples", [assets.TRAINING_SAMPLES])
    ingest >> features >> sequences >> samples


recdistill_features()
