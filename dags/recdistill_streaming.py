"""Streaming sidecar (issue #7): fresh events → samples → teacher logits → champion fine-tune → challenger.

Every 15 minutes: a spark-submit of the availableNow stream over the `events` after the champion's
data (checkpointed, inserts by sample_id), then the newest teacher scores the streamed samples it
has not scored, the champion is fine-tuned for one pass over the stream batches no earlier
increment consumed, and the result is registered as `challenger`; only the promotion gate makes it
champion. The last day with samples before the run's date is the gate's held-out day and is never
trained on. Without a champion or a teacher the run is skipped, with the reason, not failed. Each
step is idempotent, so any run can be retried or cleared.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from airflow.sdk import CronTriggerTimetable, dag, task

from pipeline.airflow import assets
from pipeline.airflow.env import TRAINING_POOL
from pipeline.airflow.tasks import spark_job
from pipeline.config import load_settings

settings = load_settings()


def _holdout(ds: str) -> date:
    from pipeline.streaming import gate_day

    return gate_day(settings, before=date.fromisoformat(ds))


@dag(
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime.combine(settings.generator.start_date, time(), timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(minutes=45)},
    tags=["recdistill", "streaming"],
    doc_md=__doc__,
)
def recdistill_streaming() -> None:
    @task
    def stream_start() -> str:
        """The last date of the champion's data: the stream reads only later events. Skipped without a champion."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.streaming import stream_start as start

        after = start(settings)
        if after is None:
            raise AirflowSkipException("no champion of recdistill-student yet: the daily pipeline releases the first one")
        return after.isoformat()

    stream = spark_job(settings, "stream_samples", "stream_samples", [assets.TRAINING_SAMPLES, assets.STREAM_SAMPLES],
                       "--after", "{{ ti.xcom_pull(task_ids='stream_start') }}", dated=False)

    @task(outlets=[assets.TEACHER_LOGITS])
    def score_samples() -> str:
        """The newest teacher's logits for the streamed samples it has not scored; its version."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.streaming import score_stream_samples

        teacher, _ = score_stream_samples(settings)
        if teacher is None:
            raise AirflowSkipException("no finished teacher yet")
        return teacher

    @task(pool=TRAINING_POOL)
    def update_student(teacher: str, ds: str | None = None) -> dict[str, object]:
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.streaming import update_student as update

        result = update(settings, teacher, _holdout(ds))  # type: ignore[arg-type]
        if isinstance(result, str):
            raise AirflowSkipException(result)
        return {**asdict(result), "student_dir": str(result.student_dir)}

    @task(outlets=[assets.STUDENT_MODEL])
    def release(update: dict[str, object], ds: str | None = None) -> str:
        """Register the update as `challenger` with its stream lineage and run the gate; its version."""
        from pathlib import Path

        from pipeline.streaming import StudentUpdate, release_update

        student = StudentUpdate(**{**update, "student_dir": Path(str(update["student_dir"]))})  # type: ignore[arg-type]
        version, _ = release_update(settings, student, _holdout(ds))  # type: ignore[arg-type]
        return version

    teacher = score_samples()
    stream_start() >> stream >> teacher
    release(update_student(teacher))


recdistill_streaming()
