"""The streaming increment (issue #7): fresh events → samples → teacher logits → student update → challenger.

Each step is idempotent on its own, so the Airflow DAG can run them as separate tasks and retry any:
the stream is checkpointed and inserts by sample_id, logits are inserted by (sample_id, teacher
version), and the student update trains only on stream batches no registered increment consumed.
The stream starts where the champion's data ends (`stream_start`): its first run does not rebuild the
history the daily jobs already turned into samples, and an increment learns only what came after.
The update fine-tunes the current `champion` for one pass with label + KD loss and registers the
result as `challenger`; only the promotion gate can make it champion. Without a champion (or a
teacher, or fresh samples) the update is skipped with the reason in the report, not an error: the
sidecar runs every few minutes, and the daily pipeline releases the first champion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline.artifacts import IncrementManifest, Platt, StudentFolder, increment_folder, latest_teacher, student_of_export
from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.lineage import Lineage, code_version
from pipeline.mlflow_store import connect
from pipeline.registry.registry import METADATA_KEY, model_uri
from pipeline.tables import STREAM_SAMPLES, TRAINING_SAMPLES, partition_dates, read_arrow, table_exists
from pipeline.train.distill import StaleAdapter, load_student, save_student, student_loss
from pipeline.train.logit_dump import configured_label, dump_stream_logits
from pipeline.train.logit_lookup import LogitLookup
from pipeline.train.loop import Batch, train_epoch
from pipeline.train.release import export_release, gate_release, register_release

log = logging.getLogger(__name__)
STREAM_TAG = "stream."  # registry tags of an increment: parent_version, first_batch, last_batch, samples, after


@dataclass(frozen=True)
class StudentUpdate:
    """A fine-tuned student saved with its lineage, not yet released."""

    student_dir: Path
    parent_version: str
    first_batch: int
    last_batch: int
    samples: int
    after: str  # the last date of the data the increments build on; they train only on later dates
    days: tuple[str, ...] = ()  # the dates of the samples it trained on


@dataclass(frozen=True)
class IncrementReport:
    """What one increment did; `skipped` says why no challenger was registered, if none was."""

    teacher_version: str | None
    logits_written: int
    update: StudentUpdate | None
    challenger_version: str | None
    promoted: bool | None
    skipped: str | None


def stream_samples(settings: Settings, after: date | None) -> None:
    """Run the availableNow stream over `events` after date `after` in this process (the DAG spark-submits it)."""
    from pipeline.spark import get_spark
    from spark_jobs import stream_samples as job

    job.run(get_spark(settings), settings, after)


def stream_start(settings: Settings) -> date | None:
    """Where the sidecar starts: the last date of the champion's data (None without a champion).

    A daily champion's is the end of its training window; an increment keeps the date its chain
    started from, so events arriving later on a streamed day still count as new.
    """
    client = connect(settings)
    try:
        champion = client.get_model_version_by_alias(settings.registry.student_model, settings.registry.champion_alias)
    except mlflow.exceptions.MlflowException:
        return None
    if f"{STREAM_TAG}after" in champion.tags:
        return date.fromisoformat(champion.tags[f"{STREAM_TAG}after"])
    return Lineage.from_tags(champion.tags).data_end


def gate_day(settings: Settings, before: date | None = None) -> date:
    """The increment's held-out day: the last date with samples (before `before`, the run's day, if given)."""
    days = [d for d in partition_dates(settings, TRAINING_SAMPLES) if before is None or d < before]
    if not days:
        raise ValueError(f"no training_samples{f' before {before}' if before else ''} under "
                         f"{settings.lakehouse.tables} to gate an increment on")
    return days[-1]


def score_stream_samples(settings: Settings) -> tuple[str | None, int]:
    """Teacher logits for the streamed samples the newest teacher has not scored; (teacher, rows)."""
    teacher = latest_teacher(settings)
    if teacher is None:
        log.warning("no finished teacher: streamed samples stay without logits")
        return None, 0
    return teacher, dump_stream_logits(settings, teacher)


def champion_student(settings: Settings) -> tuple[str, StudentFolder] | None:
    """(registry version, fp32 student) of the `champion`, or None when there is none.

    The registered version holds the W8A16 export; its program digest names the export, whose record
    names the student.
    """
    config = settings.registry
    client = connect(settings)
    try:
        version = client.get_model_version_by_alias(config.student_model, config.champion_alias).version
    except mlflow.exceptions.MlflowException:
        return None
    metadata = mlflow.models.get_model_info(model_uri(config.student_model, version=str(version))).metadata or {}
    digest = metadata.get(METADATA_KEY, {}).get("program_sha256")
    try:
        return str(version), student_of_export(settings, digest)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{config.student_model}@{config.champion_alias} (version {version}): {err}; "
                                f"the update fine-tunes the fp32 weights, not the export") from err


def consumed_batch(settings: Settings) -> int:
    """The last stream batch a registered increment trained on (-1 if none): registration commits it."""
    client = connect(settings)
    last = [int(v.tags[f"{STREAM_TAG}last_batch"])
            for v in client.search_model_versions(f"name = '{settings.registry.student_model}'")
            if f"{STREAM_TAG}last_batch" in v.tags]
    return max(last, default=-1)


def fresh_samples(settings: Settings, after_batch: int, after: date, holdout: date) -> pa.Table:
    """Streamed samples of batches after `after_batch` and dates after `after`, minus the gate's held-out date."""
    if not table_exists(settings, STREAM_SAMPLES):
        return pa.table({"sample_id": pa.array([], pa.int64()), "batch_id": pa.array([], pa.int64()),
                         "date": pa.array([], pa.date32())})
    streamed = read_arrow(settings, STREAM_SAMPLES)
    dates = streamed.column("date")
    keep = pc.and_(pc.and_(pc.greater(streamed.column("batch_id"), after_batch),
                           pc.greater(dates, pa.scalar(after, pa.date32()))),
                   pc.not_equal(dates, pa.scalar(holdout, pa.date32())))
    return streamed.filter(keep)


def update_student(settings: Settings, teacher_version: str, holdout: date) -> StudentUpdate | str:
    """Fine-tune the champion for one pass over the fresh samples; the update, or why there is none."""
    champion = champion_student(settings)
    if champion is None:
        return "no champion of recdistill-student yet: the daily pipeline releases the first one"
    parent_version, parent_folder = champion
    after = stream_start(settings) or parent_folder.manifest().data_dates[-1]
    fresh = fresh_samples(settings, consumed_batch(settings), after, holdout)
    if fresh.num_rows == 0:
        return f"no fresh streamed samples since the last increment (after {after}, not the gate day {holdout})"
    batch_ids = fresh.column("batch_id")
    first, last = int(pc.min(batch_ids).as_py()), int(pc.max(batch_ids).as_py())
    days = sorted(set(fresh.column("date").to_pylist()))
    parent = parent_folder.manifest()
    label = configured_label(settings, teacher_version)
    lookup = LogitLookup(settings, days, label)
    # The parent's stale-logit adapter was fitted for its own teacher only.
    adapter = StaleAdapter(parent.adapter.scale, parent.adapter.shift) if parent.teacher_version == teacher_version \
        else StaleAdapter()
    model = load_student(parent_folder).train()
    cfg = settings.student
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def step(batch: Batch) -> torch.Tensor:
        return student_loss(model, batch, cfg, lookup, adapter)

    torch.manual_seed(last)
    batches = iter_batches(settings, days, cfg.batch_size, "student", seed=last, sample_ids=fresh.column("sample_id"))
    loss = train_epoch(batches, step, optimizer, f"increment of v{parent_version}")
    name = f"student-stream-v{parent_version}-b{first}-{last}"
    folder = increment_folder(settings, name)
    save_student(model.eval(), folder, IncrementManifest(
        name=name, kind=parent.kind, seed=parent.seed, debias=parent.debias, teacher_version=teacher_version,
        data_dates=days, calibration_date=parent.calibration_date, adapter=Platt(scale=adapter.scale, shift=adapter.shift),
        config_hash=settings.config_hash(), code_version=code_version(), student_config=parent.student_config,
        finished_at=datetime.now(timezone.utc), parent_version=parent_version, parent_student=parent.name,
        first_batch=first, last_batch=last, samples=fresh.num_rows, train_loss=loss))
    log.info("increment %s: %d fresh samples of %s (batches %d..%d), loss %.4f", name, fresh.num_rows,
             [str(d) for d in days], first, last, loss)
    return StudentUpdate(folder.directory, parent_version, first, last, fresh.num_rows, str(after),
                         tuple(str(d) for d in days))


def release_update(settings: Settings, update: StudentUpdate, holdout: date) -> tuple[str, bool]:
    """Export and register the update as `challenger` with its stream lineage, then gate it."""
    student = StudentFolder(update.student_dir)
    export_release(settings, student, holdout)
    version = register_release(settings, student)
    client = connect(settings)
    tags = {"parent_version": update.parent_version, "first_batch": update.first_batch,
            "last_batch": update.last_batch, "samples": update.samples, "after": update.after}
    for key, value in tags.items():
        client.set_model_version_tag(settings.registry.student_model, version, f"{STREAM_TAG}{key}", str(value))
    return version, gate_release(settings, version, holdout).promoted


def run_increment(settings: Settings, holdout: date | None = None, stream: bool = True) -> IncrementReport:
    """Stream → logits → student update → challenger, in this process; `holdout` defaults to the
    last date with samples, which the update never trains on. The stream starts after the champion's data."""
    holdout = holdout or gate_day(settings)
    after = stream_start(settings)
    if stream and after is not None:
        stream_samples(settings, after)
    teacher, written = score_stream_samples(settings)
    if teacher is None:
        return IncrementReport(None, 0, None, None, None, "no finished teacher to score the fresh samples")
    update = update_student(settings, teacher, holdout)
    if isinstance(update, str):
        log.info("student update skipped: %s", update)
        return IncrementReport(teacher, written, None, None, None, update)
    version, promoted = release_update(settings, update, holdout)
    return IncrementReport(teacher, written, update, version, promoted, None)
