"""The artifact catalog: every model artifact's folder, typed manifest and finder, declared once.

`tables.py` does this for Delta tables; this module does it for what training and release write under
`<lakehouse>/artifacts/`:

    teachers/<version>/          manifest.json, ps/ (every epoch's snapshot), best/ (the published one),
                                 rank<r>/ssd and serve/ssd (the parameter server's SSD tiers: training, scoring)
    students/<name>/             manifest.json, student.pt (weights), checkpoint.pt (resume state)
    stream_students/<name>/      the same, for streaming increments (apart: evaluation finds daily students)
    exports/<student name>/      the W8A16 export (its own format, see `export.artifact`) + release.json
    evaluations/<day>-<teacher>/ report.json, comparison.png
    heldout/<day>.parquet        the gate's held-out requests

No other module builds one of these paths or globs for one. Manifests are written atomically (a crash
leaves the previous file or none), last, once the artifact is complete: a folder without a manifest is
an unfinished artifact and no finder returns it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from pipeline.config import Settings

StudentKind = Literal["base", "kd", "debiased"]
STUDENT_KINDS: tuple[StudentKind, ...] = ("base", "kd", "debiased")
MANIFEST = "manifest.json"
RELEASE_RECORD = "release.json"  # an export folder's manifest.json belongs to the export format
M = TypeVar("M", bound="Manifest")


# --- atomic writes -----------------------------------------------------------------------------------

@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it is fsynced and renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


class Manifest(BaseModel):
    """A typed JSON manifest; unknown keys are refused so a manifest never silently drops a field.

    NaN metrics (e.g. the AUC of a one-class day) are written as NaN, as Python's json does, and read back.
    """

    model_config = {"extra": "forbid", "ser_json_inf_nan": "constants"}

    def write(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(self.model_dump_json(indent=2))

    @classmethod
    def read(cls: type[M], path: Path) -> M:
        return cls.model_validate_json(path.read_text())


# --- manifests ---------------------------------------------------------------------------------------

class TeacherManifest(Manifest):
    """A finished teacher version: its window, lineage, best epoch and where its snapshot is."""

    version: str
    data_dates: list[date] = Field(min_length=1)
    config_hash: str
    code_version: str
    snapshot: str
    warm_start: str | None
    metrics: dict[str, float]
    best_epoch: int
    validation_aucs: list[float]
    run_id: str
    world_size: int
    finished_at: datetime
    registry_version: str | None = None
    # Hash of the model's shape (architecture and table widths): a warm start needs the same one.
    model_hash: str | None = None
    role: Literal["teacher", "search"] = Field("teacher", description="search: a teacher search candidate "
                                                                      "(`pipeline.train.teacher_search`)")


class Platt(BaseModel):
    """A stale-logit adapter's parameters: t' = scale·t + shift."""

    scale: float = 1.0
    shift: float = 0.0


class StudentManifest(Manifest):
    """A trained student: what changes its weights (kind, seed, window, teacher, config) and its lineage."""

    name: str
    kind: StudentKind
    seed: int
    teacher_version: str | None
    data_dates: list[date] = Field(min_length=1)
    calibration_date: date | None
    adapter: Platt
    debias: dict[str, Any]
    config_hash: str
    code_version: str
    student_config: dict[str, Any] = Field(description="`StudentConfig.model_dump(mode='json')`")
    finished_at: datetime
    best_epoch: int | None = None
    validation_aucs: list[float] = Field(default_factory=list)
    run_id: str | None = None
    preset: str | None = Field(None, description="the student size (`student.preset`)")
    kd_lambda: float | None = None
    kd_temperature: float | None = None
    kd_listwise_weight: float = 0.0
    role: Literal["student", "search"] = Field("student", description="search: a λ/T search candidate")
    uniform_share_rows: int = 0


class IncrementManifest(StudentManifest):
    """A streaming increment: a champion fine-tuned on stream batches `first_batch..last_batch`."""

    parent_version: str = Field(description="registry version of the champion it fine-tuned")
    parent_student: str
    first_batch: int
    last_batch: int
    samples: int
    train_loss: float


class ExportManifest(Manifest):
    """The catalog's record of a W8A16 export: which student, its program digest, parity and latency."""

    student: str
    program_sha256: str
    holdout: date
    parity: dict[str, float | int]
    latency: dict[str, float | int]


class EvaluationReport(Manifest):
    """Held-out evaluation of a teacher and its students (the evaluation's manifest, `report.json`)."""

    day: date
    teacher_version: str
    holdout_dates: list[date] = Field(default_factory=list)  # the pooled held-out period, `day` first
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)  # model → metric → value
    # KD/debiased transferability with its interval and the teacher gain's, or a note why not measurable
    transferability: dict[str, Any] = Field(default_factory=dict)
    # debiased − KD paired by seed (same seed, same data), with its interval over seeds and rows
    debiased_vs_kd: dict[str, float] = Field(default_factory=dict)
    preset: str = ""  # the students' size
    exposure: dict[str, Any] = Field(default_factory=dict)  # the random-exposure split's sizes, or why none
    latency: dict[str, Any] = Field(default_factory=dict)  # per-request serving latency of that size

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (an XCom): a metric undefined on this day, such as the AUC of a slice with one class,
        is null rather than NaN, which strict JSON encoders refuse."""
        def strict(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strict(v) for k, v in value.items()}
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return strict(self.model_dump(mode="json"))

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())


# --- folders -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherFolder:
    directory: Path

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    @property
    def snapshots(self) -> Path:
        """Every epoch's parameter-server snapshot: what a killed run resumes from."""
        return self.directory / "ps"

    @property
    def best(self) -> Path:
        """The best epoch's snapshot on the validation days: the teacher that scores, warm-starts, registers."""
        return self.directory / "best"

    @property
    def serving_tier(self) -> Path:
        """The parameter server's SSD tier when the finished teacher scores."""
        return self.directory / "serve" / "ssd"

    def training_tier(self, rank: int) -> Path:
        """Rank `rank`'s parameter-server SSD tier while training."""
        return self.directory / f"rank{rank}" / "ssd"

    def manifest(self) -> TeacherManifest:
        return TeacherManifest.read(self.manifest_path)


@dataclass(frozen=True)
class StudentFolder:
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    @property
    def weights(self) -> Path:
        return self.directory / "student.pt"

    @property
    def resume_state(self) -> Path:
        """Resume state of an unfinished training run (`train.resume`)."""
        return self.directory / "checkpoint.pt"

    def manifest(self) -> StudentManifest:
        payload = json.loads(self.manifest_path.read_text())
        cls = IncrementManifest if "parent_version" in payload else StudentManifest
        return cls.model_validate(payload)


@dataclass(frozen=True)
class ExportFolder:
    directory: Path

    @property
    def record_path(self) -> Path:
        return self.directory / RELEASE_RECORD

    def record(self) -> ExportManifest:
        return ExportManifest.read(self.record_path)


@dataclass(frozen=True)
class EvaluationFolder:
    directory: Path

    @property
    def report(self) -> Path:
        return self.directory / "report.json"

    @property
    def plot(self) -> Path:
        return self.directory / "comparison.png"


def _root(settings: Settings, kind: str) -> Path:
    return settings.lakehouse.artifacts / kind


def teacher_folder(settings: Settings, version: str) -> TeacherFolder:
    return TeacherFolder(_root(settings, "teachers") / version)


def student_folder(settings: Settings, name: str) -> StudentFolder:
    return StudentFolder(_root(settings, "students") / name)


def increment_folder(settings: Settings, name: str) -> StudentFolder:
    """Increments live apart from the daily students, which evaluation picks up by kind and seed."""
    return StudentFolder(_root(settings, "stream_students") / name)


def export_folder(settings: Settings, student_name: str) -> ExportFolder:
    return ExportFolder(_root(settings, "exports") / student_name)


def evaluation_folder(settings: Settings, day: date, teacher_version: str, preset: str = "") -> EvaluationFolder:
    """One evaluation per held-out date, teacher and student size (the preset)."""
    return EvaluationFolder(_root(settings, "evaluations") / f"{day}-{teacher_version}{f'-{preset}' if preset else ''}")


def search_record_path(settings: Settings, name: str) -> Path:
    """A search's recorded choice (`pipeline.train.distill`, `pipeline.train.teacher_search`): one JSON file per
    window, teacher (for students) and config."""
    return _root(settings, "searches") / f"{name}.json"


def recorded_search(settings: Settings, search: str, day: date, key: str,
                    run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record of `search` for `key` (everything its choice depends on) if one exists, else `run()`'s,
    written: a rerun reads the choice instead of scoring every candidate again."""
    path = search_record_path(settings, f"{search}-{day}-{hashlib.sha1(key.encode()).hexdigest()[:12]}")
    if path.exists():
        return json.loads(path.read_text())
    record = run()
    write_json_atomic(path, record)
    return record


def frontier_path(settings: Settings, day: date, teacher_version: str) -> Path:
    """The quality–latency frontier over every student size evaluated on `day` with `teacher_version`."""
    return _root(settings, "evaluations") / f"{day}-{teacher_version}-frontier.png"


def evaluation_reports(settings: Settings, day: date, teacher_version: str) -> list[dict[str, Any]]:
    """Every size's finished evaluation of `day` with `teacher_version`, as its strict-JSON report (nulls
    where a metric is undefined)."""
    return [json.loads(path.read_text()) for path in
            sorted(_root(settings, "evaluations").glob(f"{day}-{teacher_version}*/report.json"))]


def heldout_path(settings: Settings, holdout: date) -> Path:
    """Where the gate's held-out requests of `holdout` live (one file per date, rewritten on rerun)."""
    return _root(settings, "heldout") / f"{holdout}.parquet"


# --- finders -----------------------------------------------------------------------------------------

def _finished(root: Path, manifest: str = MANIFEST) -> list[Path]:
    """The artifact folders under `root` that have a manifest (a folder without one is unfinished)."""
    return sorted(p.parent for p in root.glob(f"*/{manifest}"))


def finished_teachers(settings: Settings) -> list[TeacherManifest]:
    return [TeacherFolder(d).manifest() for d in _finished(_root(settings, "teachers"))]


def teacher_manifest(settings: Settings, version: str) -> TeacherManifest:
    """The manifest of a finished teacher; a clear error for an unknown or unfinished version."""
    folder = teacher_folder(settings, version)
    if not folder.manifest_path.exists():
        known = [m.version for m in finished_teachers(settings)]
        raise ValueError(f"unknown teacher version {version!r}; finished teachers: {known or 'none'}")
    return folder.manifest()


def latest_teacher(settings: Settings, before: str | None = None, data_before: date | None = None,
                   model_hash: str | None = None) -> str | None:
    """The finished teacher with the newest data window, optionally other than the version `before`,
    trained only on dates before `data_before`, and of the model shape `model_hash`; search candidates
    are never it."""
    finished = [(m.data_dates[-1], m.finished_at, m.version) for m in finished_teachers(settings)
                if m.role == "teacher" and m.version != before and (data_before is None or m.data_dates[-1] < data_before)
                and (model_hash is None or m.model_hash == model_hash)]
    return max(finished)[2] if finished else None


def daily_students(settings: Settings) -> list[StudentFolder]:
    return [StudentFolder(d) for d in _finished(_root(settings, "students"))]


def students_for(settings: Settings, teacher_version: str, before: date) -> dict[StudentKind, list[StudentFolder]]:
    """Finished students of the configured size by kind: KD/debiased ones of this teacher, base ones of any;
    trained before `before`; λ/T search candidates left out."""
    found: dict[StudentKind, list[StudentFolder]] = {kind: [] for kind in STUDENT_KINDS}
    for folder in daily_students(settings):
        manifest = folder.manifest()
        if manifest.role != "student" or manifest.preset not in (None, settings.student.preset):
            continue
        if max(manifest.data_dates) < before and (manifest.kind == "base" or manifest.teacher_version == teacher_version):
            found[manifest.kind].append(folder)
    return found


def _newest(manifest: StudentManifest) -> tuple[date, datetime]:
    """Release order among students of one kind and seed: the newest window, then the newest finished."""
    return manifest.data_dates[-1], manifest.finished_at


def find_student(settings: Settings, teacher_version: str, holdout: date, kind: StudentKind, seed: int) -> StudentFolder:
    """The student to release: by its manifest, never by folder order.

    Among the `kind` students of `seed` that learnt from `teacher_version` (base: any teacher), never saw
    `holdout` and were trained with the current settings (same config hash), the one with the newest
    window, and of those the newest finished.
    """
    candidates = [(folder, folder.manifest()) for folder in students_for(settings, teacher_version, holdout)[kind]]
    candidates = [(f, m) for f, m in candidates if m.seed == seed]
    matching = [(f, m) for f, m in candidates if m.config_hash == settings.config_hash()]
    if not matching:
        other = f" ({len(candidates)} trained with other settings: config hashes " \
                f"{sorted({m.config_hash for _, m in candidates})}, now {settings.config_hash()})" if candidates else ""
        raise ValueError(f"no {kind} student with seed {seed} for teacher {teacher_version} trained before {holdout} "
                         f"with the current settings{other}; run `recdistill student distill`/`debias` first")
    return max(matching, key=lambda fm: _newest(fm[1]))[0]


def evaluated_students(settings: Settings, teacher_version: str, before: date) -> dict[StudentKind, list[StudentFolder]]:
    """One student per kind and seed from `students_for`, so an evaluation never mixes two of a seed: one
    trained with the current settings where there is one (as release requires), else any (an evaluation
    setting such as the pooled period changes the hash, not the students); then the newest by `_newest`."""
    current = settings.config_hash()

    def rank(manifest: StudentManifest) -> tuple[bool, date, datetime]:
        return (manifest.config_hash == current, *_newest(manifest))

    chosen: dict[StudentKind, list[StudentFolder]] = {}
    for kind, folders in students_for(settings, teacher_version, before).items():
        by_seed: dict[int, tuple[StudentFolder, StudentManifest]] = {}
        for folder in folders:
            manifest = folder.manifest()
            held = by_seed.get(manifest.seed)
            if held is None or rank(manifest) > rank(held[1]):
                by_seed[manifest.seed] = (folder, manifest)
        chosen[kind] = [by_seed[seed][0] for seed in sorted(by_seed)]
    return chosen


def student_of_export(settings: Settings, program_sha256: str) -> StudentFolder:
    """The fp32 student (daily or increment) whose W8A16 export has this program digest."""
    for directory in _finished(_root(settings, "exports"), RELEASE_RECORD):
        if ExportFolder(directory).record().program_sha256 == program_sha256:
            for folder in (student_folder(settings, directory.name), increment_folder(settings, directory.name)):
                if folder.weights.exists():
                    return folder
    raise FileNotFoundError(f"no fp32 student under {settings.lakehouse.artifacts} has an export with program "
                            f"sha256 {program_sha256}")
