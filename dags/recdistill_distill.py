"""Daily students: wait for samples → logits → distill → debias → evaluate → W8A16 export → register → gate.

The run for day D (it starts once D has ended) evaluates on D: students train on the
`student.window_days` days before D − 1 with the logits of the newest teacher that has not trained
on them (days the teacher has not scored yet are dumped first), D − 1 calibrates stale logits, and
the first seed's debiased student is exported, registered as `challenger` and promoted only if the
gate passes.
Every step is idempotent by date, so a run can be cleared and rerun.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from airflow.sdk import CronDataIntervalTimetable, dag, task

from pipeline.airflow import assets
from pipeline.airflow.env import TRAINING_POOL
from pipeline.config import load_settings
from pipeline.train.windows import Windows, first_holdout, windows_for

settings = load_settings()
FIRST_DAY = first_holdout(settings)


def _windows(ds: str) -> Windows:
    return windows_for(settings, date.fromisoformat(ds))


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime.combine(FIRST_DAY, time(), timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "execution_timeout": timedelta(hours=4)},
    tags=["recdistill", "training"],
    doc_md=__doc__,
)
def recdistill_distill() -> None:
    @task.sensor(poke_interval=300, timeout=timedelta(hours=12).total_seconds(), mode="reschedule")
    def wait_for_samples(ds: str | None = None) -> bool:
        """True once training_samples holds D and every day the students train and calibrate on; skipped,
        with the reason, for days without data (none will come)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.readiness import NoData, require_samples_coming
        from pipeline.tables import TRAINING_SAMPLES, dates_present

        windows = _windows(ds)  # type: ignore[arg-type]
        needed = [*windows.train, windows.calibration, windows.holdout]
        try:
            require_samples_coming(settings, needed)
        except NoData as err:
            raise AirflowSkipException(str(err)) from err
        return dates_present(settings, TRAINING_SAMPLES, needed) == set(needed)

    @task
    def teacher(ds: str | None = None) -> str:
        """The newest teacher that has not trained on the students' window (or, with
        `teacher.include_student_window`, on the calibration date); the run is skipped, with the reason,
        until the teacher DAG has made one (the first days after the first period)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.train.students import resolve_teacher
        from pipeline.train.windows import teacher_data_before

        windows = _windows(ds)  # type: ignore[arg-type]
        before = teacher_data_before(settings, windows.train, windows.calibration)
        try:
            return resolve_teacher(settings, data_before=before)
        except ValueError as err:
            raise AirflowSkipException(str(err)) from err

    @task(outlets=[assets.TEACHER_LOGITS])
    def dump_logits(version: str, ds: str | None = None) -> dict[str, int]:
        """Logits of `version` for D and for every window day it has not scored yet, and its unexposed pairs."""
        from pipeline.tables import TEACHER_LOGITS, dates_present
        from pipeline.train.logit_dump import configured_label
        from pipeline.train.logit_dump import dump_logits as dump
        from pipeline.train.logit_dump import dump_unexposed_logits

        windows = _windows(ds)  # type: ignore[arg-type]
        earlier = [*windows.train, windows.calibration]
        label = configured_label(settings, version)
        scored = dates_present(settings, TEACHER_LOGITS, earlier, teacher_version=label, pair_kind="labelled")
        days = [d for d in earlier if d not in scored] + [windows.holdout]
        counts = {str(day): dump(settings, day, version) for day in days}
        paired = dates_present(settings, TEACHER_LOGITS, windows.train, teacher_version=label, pair_kind="unexposed")
        if set(windows.train) - paired:  # the pairs are drawn from the whole window's catalogue: all or none
            counts["unexposed"] = dump_unexposed_logits(settings, windows.train, version)
        return counts

    @task(pool=TRAINING_POOL)
    def distill(version: str, ds: str | None = None) -> list[str]:
        from pipeline.train.students import train_students

        windows = _windows(ds)  # type: ignore[arg-type]
        return [run.name for run in train_students(settings, ["base", "kd"], windows.train, windows.calibration, version)]

    @task(pool=TRAINING_POOL)
    def debias(version: str, ds: str | None = None) -> list[str]:
        from pipeline.train.students import train_students

        windows = _windows(ds)  # type: ignore[arg-type]
        return [run.name for run in train_students(settings, ["debiased"], windows.train, windows.calibration, version)]

    @task(pool=TRAINING_POOL)
    def evaluate(version: str, ds: str | None = None) -> dict[str, object]:
        from pipeline.train.evaluate import evaluate as evaluate_students

        return evaluate_students(settings, date.fromisoformat(ds), version).to_json()  # type: ignore[arg-type]

    @task
    def export(version: str, ds: str | None = None) -> str:
        """The first seed's debiased student, quantized to W8A16 and exported (parity checked)."""
        from pipeline.artifacts import find_student
        from pipeline.train.release import export_release

        day = date.fromisoformat(ds)  # type: ignore[arg-type]
        student = find_student(settings, version, day, "debiased", settings.student.seeds[0])
        export_release(settings, student, day)
        return str(student.directory)

    @task(outlets=[assets.STUDENT_MODEL])
    def register(student_dir: str) -> str:
        from pathlib import Path

        from pipeline.artifacts import StudentFolder
        from pipeline.train.release import register_release

        return register_release(settings, StudentFolder(Path(student_dir)))

    @task(outlets=[assets.STUDENT_MODEL])
    def promote(registry_version: str, ds: str | None = None) -> dict[str, object]:
        """The gate's decision; a refusal is a result (the champion stays), not a task failure."""
        from pipeline.train.release import gate_release

        decision = gate_release(settings, registry_version, date.fromisoformat(ds))  # type: ignore[arg-type]
        return {"version": registry_version, "promoted": decision.promoted, "reasons": decision.reasons}

    version = teacher()
    logits = dump_logits(version)
    students = distill(version)
    debiased = debias(version)
    report = evaluate(version)
    exported = export(version)
    wait_for_samples() >> version
    logits >> students >> debiased >> report >> exported
    promote(register(exported))


recdistill_distill()
