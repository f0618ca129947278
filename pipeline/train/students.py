"""Student task steps shared by the CLI and the Airflow DAGs: which teacher, which seeds.

A step takes settings and dates and returns plain values, so an Airflow task can pass them on as
XComs and the CLI can print them.
"""

from __future__ import annotations

from datetime import date

from pipeline.artifacts import StudentKind, latest_teacher, teacher_manifest
from pipeline.config import Settings
from pipeline.train.distill import StudentRun, train_student


def resolve_teacher(settings: Settings, version: str | None = None, data_before: date | None = None) -> str:
    """`version` if it is a finished teacher, else the newest finished one trained only on dates before
    `data_before` (`windows.teacher_data_before`: the students' first day, or the calibration date when
    the teacher learns from their window too); a clear error if none."""
    chosen = version or latest_teacher(settings, data_before=data_before)
    if chosen is None:
        before = f" trained only on dates before {data_before}" if data_before else ""
        raise ValueError(f"no finished teacher{before} yet; run `recdistill teacher train` "
                         f"(or the recdistill_teacher DAG)")
    teacher_manifest(settings, chosen)  # raises, naming the known versions, when unknown
    return chosen


def train_students(settings: Settings, kinds: list[StudentKind], days: list[date], calibration: date,
                   teacher_version: str | None, seeds: list[int] | None = None) -> list[StudentRun]:
    """Every kind × seed (default seeds: `student.seeds`) on the same days; base students need no teacher."""
    runs = []
    for seed in seeds or settings.student.seeds:
        for kind in kinds:
            runs.append(train_student(settings, kind, days, seed, teacher_version if kind != "base" else None,
                                      calibration))
    return runs
