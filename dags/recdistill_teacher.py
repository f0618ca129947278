"""Periodic teacher: wait for the period's samples → train on the parameter server → register → dump logits.

One run per `teacher.period_days` (weekly in prod). The run whose logical date (`ds`) is day P trains
on the period's days but the last, validates on the last, and warm-starts from the previous
period's teacher (a manual run or `airflow dags test recdistill_teacher P` does the
same for the period starting on P); then the validation day gets the new teacher's logits. The
teacher never scores the days it trained on for students: students learn from the logits of a teacher
older than their days, which the distill DAG dumps as those days arrive. Training is resumable from
its epoch snapshots, so a retry continues where it stopped.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from airflow.sdk import DeltaDataIntervalTimetable, dag, task

from pipeline.airflow import assets
from pipeline.airflow.env import TRAINING_POOL
from pipeline.config import load_settings

settings = load_settings()
FIRST_PERIOD = settings.generator.start_date + timedelta(days=1)  # the first day has no history to learn from


@dag(
    schedule=DeltaDataIntervalTimetable(timedelta(days=settings.teacher.period_days)),
    start_date=datetime.combine(FIRST_PERIOD, time(), timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=12)},
    tags=["recdistill", "training"],
    doc_md=__doc__,
)
def recdistill_teacher() -> None:
    @task.sensor(poke_interval=600, timeout=timedelta(hours=24).total_seconds(), mode="reschedule")
    def wait_for_samples(ds: str | None = None) -> bool:
        """True once training_samples holds every day of the period; skipped, with the reason, for days
        without data (none will come)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.readiness import NoData, require_samples_coming
        from pipeline.tables import TRAINING_SAMPLES, dates_present
        from pipeline.train.windows import teacher_period

        train, validation = teacher_period(settings, date.fromisoformat(ds))  # type: ignore[arg-type]
        try:
            require_samples_coming(settings, [*train, validation])
        except NoData as err:
            raise AirflowSkipException(str(err)) from err
        return dates_present(settings, TRAINING_SAMPLES, [*train, validation]) == {*train, validation}

    @task(pool=TRAINING_POOL, outlets=[assets.TEACHER_MODEL])
    def train(ds: str | None = None) -> str:
        from pipeline.train.teacher_search import fit_teacher
        from pipeline.train.windows import teacher_period

        days, validation = teacher_period(settings, date.fromisoformat(ds))  # type: ignore[arg-type]
        return fit_teacher(settings, days, [validation]).version

    @task(outlets=[assets.TEACHER_MODEL])
    def register(version: str) -> str:
        from pipeline.train.release import register_teacher_version

        return register_teacher_version(settings, version)

    @task(outlets=[assets.TEACHER_LOGITS])
    def dump_logits(version: str, ds: str | None = None) -> int:
        """Logits for the period's validation day, the first day the teacher has not trained on."""
        from pipeline.train.logit_dump import dump_logits as dump
        from pipeline.train.windows import teacher_period

        _, validation = teacher_period(settings, date.fromisoformat(ds))  # type: ignore[arg-type]
        return dump(settings, validation, version)

    version = train()
    wait_for_samples() >> version
    register(version)
    dump_logits(version)


recdistill_teacher()
