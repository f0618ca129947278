"""Daily data plane: landing files → events → user/item features → sequences → training samples.

Each Spark task is one spark-submit of a `spark_jobs` module for the run's logical date; every job
replaces exactly its date's partitions, so any run can be retried or cleared and rerun.
A day without landing files is skipped with the reason (the run for the real yesterday, say, when
the data is historical), and features and sequences of a day wait only for what they read: the
earlier days' events. No run depends on another run's state, so none can block another; several
days may run at once (the `spark` pool still runs one Spark job at a time), and a backfill
(`airflow backfill create --dag-id recdistill_features --from-date A --to-date B`) builds any range.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from airflow.sdk import CronDataIntervalTimetable, dag, task

from pipeline.airflow import assets
from pipeline.airflow.tasks import spark_job
from pipeline.config import load_settings

settings = load_settings()


@dag(
    # The run for day D starts once D has ended, and its logical date (`ds`) is D.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime.combine(settings.generator.start_date, time(), timezone.utc),
    catchup=False,
    max_active_runs=settings.airflow.max_active_runs,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "execution_timeout": timedelta(hours=2)},
    tags=["recdistill", "data"],
    doc_md=__doc__,
)
def recdistill_features() -> None:
    @task
    def landing_files(ds: str | None = None) -> None:
        """Skipped, with the reason, when no source has landing files for D: nothing to build that day."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.readiness import NoData, require_landing

        try:
            require_landing(settings, date.fromisoformat(ds))  # type: ignore[arg-type]
        except NoData as err:
            raise AirflowSkipException(str(err)) from err

    @task.sensor(poke_interval=120, timeout=timedelta(hours=6).total_seconds(), mode="reschedule")
    def earlier_events(ds: str | None = None) -> bool:
        """True once `events` holds every earlier landing day (features and sequences of D read them)."""
        from pipeline.readiness import history_not_ingested

        return not history_not_ingested(settings, date.fromisoformat(ds))  # type: ignore[arg-type]

    landed = landing_files()
    # Every landing source of the day: its events are their union.
    ingest = spark_job(settings, "ingest", "ingest_events", [assets.EVENTS, assets.EVENTS_QUARANTINE])
    features = spark_job(settings, "features", "build_features", [assets.USER_FEATURES, assets.ITEM_FEATURES])
    sequences = spark_job(settings, "sequences", "build_sequences", [assets.SEQUENCES])
    samples = spark_job(settings, "samples", "build_samples", [assets.TRAINING_SAMPLES])
    history = earlier_events()
    landed >> [ingest, history]
    [ingest, history] >> features >> sequences >> samples


recdistill_features()
