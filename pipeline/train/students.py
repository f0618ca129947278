"""Student task steps shared by the CLI and the Airflow DAGs: which teacher, which seeds, which student.

A step takes settings and dates and returns plain values, so an Airflow task can pass them on as
XComs and the CLI can print them.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from pipeline.config import Settings
from pipeline.train.distill import StudentKind, StudentRun, train_student
from pipeline.train.evaluate import students_for
from pipeline.train.teacher import latest_teacher, teacher_manifest


def resolve_teacher(settings: Settings, version: str | None = None, data_before: date | None = None) -> str:
    """`version` if it is a finished teacher, else the newest finished one trained only on dates before
    `data_before` (students pass their first day: logits of a teacher that saw their days are not
    predictions); a clear error if none."""
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


def find_student(settings: Settings, teacher_version: str, holdout: date, kind: str, seed: int) -> Path:
    """The newest trained `kind` student of `seed` for `teacher_version` that never saw `holdout`."""
    matches = [d for d in students_for(settings, teacher_version, before=holdout).get(kind, [])
               if json.loads((d / "manifest.json").read_text())["seed"] == seed]
    if not matches:
        raise ValueError(f"no {kind} student with seed {seed} for teacher {teacher_version} trained before {holdout}; "
                         f"run `recdistill student distill`/`debias` first")
    return matches[-1]
