"""`recdistill …`: a thin command layer over pipeline/ and spark_jobs/."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, load_settings
from pipeline.registry.cli import registry_app
from pipeline.train.windows import Windows, teacher_data_before

class RecdistillApp(typer.Typer):
    """The `recdistill` command. Every error ends it with one line on stderr that names the thing
    and the fix: exit code 2 for a usage error, 1 for a runtime one; `--debug` (anywhere on the
    command line) or RECDISTILL_DEBUG=1 shows the traceback instead."""

    def __call__(self, args: list[str] | None = None, **kwargs: object) -> None:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("RECDISTILL_DEBUG") == "1"
        argv = [arg for arg in argv if arg != "--debug"]
        try:
            result = typer.main.get_command(self).main(args=argv, prog_name="recdistill", standalone_mode=False)
        except TyperException as err:  # typer's (vendored) click errors: usage errors exit 2
            if debug:
                raise
            ctx = getattr(err, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if err.exit_code == 2 and ctx is not None else ""
            _fail(f"{err.format_message()}{hint}", err.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except Exception as err:  # the one place every runtime error becomes one line
            if debug:
                raise
            _fail(describe_error(err), 1)
        sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> None:
    print(f"recdistill: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def describe_error(err: BaseException) -> str:
    """One line for a runtime error: what failed and on what, and how to see more."""
    if isinstance(err, OSError) and err.filename is not None:
        return (f"{err.strerror or type(err).__name__}: {err.filename}; check the path and its permissions "
                f"(rerun with --debug for the traceback)")
    text = str(err).strip()
    java = getattr(err, "java_exception", None)
    if java is not None:  # py4j: the Java exception's own message, not the JVM stack
        text = str(java.getMessage() or java.toString())
    first = text.splitlines()[0] if text else type(err).__name__
    detail = first if isinstance(err, (ValueError, FileNotFoundError, LookupError)) else f"{type(err).__name__}: {first}"
    return f"{detail} (rerun with --debug for the traceback)"


app = RecdistillApp(help="recdistill: distill large recommenders into small, fast serving models. "
                         "Add --debug anywhere for tracebacks.", no_args_is_help=True)
data_app = typer.Typer(help="Data plane: landing files → Delta tables.", no_args_is_help=True)
app.add_typer(data_app, name="data")
teacher_app = typer.Typer(help="The periodic teacher on the parameter server.", no_args_is_help=True)
logits_app = typer.Typer(help="Teacher logits → the teacher_logits Delta table.", no_args_is_help=True)
student_app = typer.Typer(help="Students: baseline, distillation, debiasing.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")
app.add_typer(logits_app, name="logits")
app.add_typer(student_app, name="student")
app.add_typer(registry_app, name="registry")
stream_app = typer.Typer(help="Streaming sidecar: fresh events → samples → logits → challenger.", no_args_is_help=True)
app.add_typer(stream_app, name="stream")
console = Console()

ProfileOpt = Annotated[Optional[str], typer.Option("--profile", help="config profile: tiny, demo, prod")]
DateOpt = Annotated[Optional[str], typer.Option("--date", help="one logical date, YYYY-MM-DD")]
FromOpt = Annotated[Optional[str], typer.Option("--from", help="first date of a range, YYYY-MM-DD")]
ToOpt = Annotated[Optional[str], typer.Option("--to", help="last date of a range, YYYY-MM-DD")]
# Off when the demo calls a command: it prints the tables once, in its closing summary.
SummaryOpt = Annotated[bool, typer.Option(hidden=True)]
CalibrationOpt = Annotated[Optional[str], typer.Option(
    "--calibration-date", help="the fresh day that calibrates stale logits and early-stops students "
                               "(default: the last date with samples before the held-out one)")]


def _settings(profile: str | None, writes: bool = True) -> Settings:
    """The settings of `profile`, after checking its lakehouse can be used (and, if `writes`, written)."""
    from pipeline.progress import configure_logging

    configure_logging()
    try:
        settings = load_settings(profile)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--profile") from err
    check_lakehouse(settings.lakehouse.root, writes)
    return settings


class LakehouseError(RuntimeError):
    """The lakehouse root cannot be used; the message says how to fix it."""


def check_lakehouse(root: Path, writes: bool) -> None:
    """Fail with one clear message if `root` is not a folder, or (if `writes`) not writable."""
    fix = "set RECDISTILL_LAKEHOUSE_ROOT to a writable folder"
    if root.exists() and not root.is_dir():
        raise LakehouseError(f"lakehouse root {root} is a file, not a folder; {fix}")
    if not writes:
        return
    probe = root / f".write-probe-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise LakehouseError(f"lakehouse root {root} is not writable ({err.strerror}); {fix}") from err


def _parse_date(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise typer.BadParameter(f"{text!r} is not a date (expected YYYY-MM-DD)", param_hint=flag) from err


def resolve_dates(day: str | None, start: str | None, end: str | None, present: list[date],
                  what: str = "the data") -> list[date]:
    """`--date` alone, or `--from`/`--to` (an open end is the first or last of `present`); neither: `present`.

    `present` are the dates the step's input holds (landing files, events), so any data set works
    without date flags.
    """
    if day and (start or end):
        raise typer.BadParameter("give either --date or --from/--to, not both", param_hint="--date")
    if day:
        return [_parse_date(day, "--date")]
    if not present and not (start and end):
        raise typer.BadParameter(f"{what} holds no dates; give --date or --from/--to", param_hint="--date")
    first = _parse_date(start, "--from") if start else present[0]
    last = _parse_date(end, "--to") if end else present[-1]
    if last < first:
        raise typer.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    if start or end:
        from pipeline.dates import date_range

        return date_range(first, last)
    return present


def landing_dates(settings: Settings, sources: list[str] | None, day: str | None, start: str | None,
                  end: str | None) -> list[date]:
    """The dates to ingest: as given, else every date with landing files (of `sources`, default every source)."""
    from pipeline.data.landing import landing_days, landing_sources

    root = settings.lakehouse.landing
    present = sorted({d for source in (sources or landing_sources(root)) for d in landing_days(root, source)})
    return resolve_dates(day, start, end, present, f"the landing files under {root}")


def event_dates(settings: Settings, day: str | None, start: str | None, end: str | None) -> list[date]:
    """The dates to build: as given, else every date `events` holds."""
    from pipeline.tables import EVENTS, partition_dates

    return resolve_dates(day, start, end, partition_dates(settings, EVENTS), "the events table")


def print_counts(settings: Settings) -> None:
    """Rows per table: the summary data commands end with."""
    from pipeline.tables import table_counts

    table = Table(title=f"Delta tables in {settings.lakehouse.tables}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in table_counts(settings).items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


def _run_job(job: str, settings: Settings, days: list[date], *, whole_range: bool = False,
             **kwargs: object) -> list[object]:
    """Run a Spark job per date (or, with `whole_range`, once over all `days`), reporting each step."""
    import importlib

    from pipeline.progress import Step
    from pipeline.spark import get_spark

    module = importlib.import_module(f"spark_jobs.{job}")
    spark = get_spark(settings)
    if whole_range:
        with Step(f"{job} {days[0]} … {days[-1]}"):
            return [module.run_range(spark, settings, days[0], days[-1], **kwargs)]
    results = []
    with Step(job, len(days), "day") as step:
        for day in days:
            results.append(module.run(spark, settings, day, **kwargs))
            step.advance()
    return results


@data_app.command("generate")
def generate(profile: ProfileOpt = None,
             source: Annotated[str, typer.Option(help="landing source folder")] = "synthetic") -> None:
    """Write synthetic impression logs (planted click model) as landing files."""
    from pipeline.data.synthetic import generate as generate_logs

    settings = _settings(profile)
    summary = generate_logs(settings.generator, settings.lakehouse.landing, source,
                            truth_root=settings.lakehouse.truth)
    console.print(f"{summary.events:,} events ({summary.clicks:,} clicks) over {len(summary.days)} days "
                  f"→ {settings.lakehouse.landing / source}")


@data_app.command("convert")
def convert(kind: Annotated[str, typer.Argument(help="ml-100k | movielens | coat | yahoo-r3")],
            path: Annotated[Path, typer.Argument(help="folder holding the dataset's files")],
            profile: ProfileOpt = None,
            fmt: Annotated[str, typer.Option("--format", help="jsonl | csv | parquet")] = "parquet") -> None:
    """Convert a public dataset into landing files (ratings ≥ 4 are clicks)."""
    from pipeline.data.converters import convert as convert_dataset

    settings = _settings(profile)
    try:
        summary = convert_dataset(kind, path, settings.lakehouse.landing, fmt)  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err), param_hint="KIND/PATH") from err
    console.print(f"{summary.events:,} events over {len(summary.days)} days "
                  f"({summary.days[0]} … {summary.days[-1]}) → {settings.lakehouse.landing / summary.source}")


SourcesOpt = Annotated[Optional[list[str]], typer.Option(
    "--source", help="only this landing source (repeatable; the day must have no other); default: every source")]
AllRejectedOpt = Annotated[bool, typer.Option(
    "--allow-all-rejected", help="quarantine a landing file whose rows are all rejected instead of failing")]


@data_app.command("ingest")
def ingest(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None,
           source: SourcesOpt = None, allow_all_rejected: AllRejectedOpt = False) -> None:
    """Ingest every source's landing files of each date into `events` (rejected rows → `events_quarantine`).

    Default: every date with landing files (of `--source`, if given).
    """
    settings = _settings(profile)
    for report in _run_job("ingest_events", settings, landing_dates(settings, source, day, start, end), sources=source,
                           allow_all_rejected=allow_all_rejected):
        console.print(report)
    print_counts(settings)


@data_app.command("features")
def features(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None) -> None:
    """Build point-in-time user and item features (default: every date in `events`)."""
    settings = _settings(profile)
    _run_job("build_features", settings, event_dates(settings, day, start, end))
    print_counts(settings)


@data_app.command("sequences")
def sequences(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None) -> None:
    """Build behaviour sequences (teacher length; the student's is its most recent part)."""
    settings = _settings(profile)
    _run_job("build_sequences", settings, event_dates(settings, day, start, end))
    print_counts(settings)


@data_app.command("samples")
def samples(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None) -> None:
    """Build `training_samples`."""
    settings = _settings(profile)
    _run_job("build_samples", settings, event_dates(settings, day, start, end))
    print_counts(settings)


@data_app.command("run")
def run_all(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None,
            source: SourcesOpt = None, allow_all_rejected: AllRejectedOpt = False,
            summary: SummaryOpt = True) -> None:
    """Ingest each date, then features → sequences → samples over the whole range, one job each.

    Default: every date with landing files (of `--source`, if given).
    """
    settings = _settings(profile)
    days = landing_dates(settings, source, day, start, end)
    _run_job("ingest_events", settings, days, sources=source, allow_all_rejected=allow_all_rejected)
    for job in ("build_features", "build_sequences", "build_samples"):
        _run_job(job, settings, days, whole_range=True)
    if summary:
        print_counts(settings)


TeacherOpt = Annotated[Optional[str], typer.Option(
    "--teacher-version",
    help="default: the newest finished teacher (for students: the newest that never saw their days)")]
SeedsOpt = Annotated[Optional[list[int]], typer.Option("--seed", help="repeatable; default: student.seeds")]


def _windows(settings: Settings, holdout: str | None = None, calibration: str | None = None) -> Windows:
    """The training windows over the dates `training_samples` holds, moved by the date flags given."""
    from pipeline.train.windows import default_windows

    try:
        return default_windows(settings, _parse_date(holdout, "--date") if holdout else None,
                               _parse_date(calibration, "--calibration-date") if calibration else None)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--date/--calibration-date") from err


def _train_days(settings: Settings, windows: Windows, start: str | None, end: str | None,
                teacher: bool = False) -> list[date]:
    """`--from`/`--to` if given, else the window's days (the teacher's or the students')."""
    from pipeline.dates import date_range

    if start or end:
        first = _parse_date(start, "--from") if start else (windows.teacher_train if teacher else windows.train)[0]
        last = _parse_date(end, "--to") if end else (windows.teacher_train if teacher else windows.train)[-1]
        if last < first:
            raise typer.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
        return date_range(first, last)
    return windows.teacher_train if teacher else windows.train


def _teacher(settings: Settings, version: str | None, data_before: date | None = None) -> str:
    from pipeline.train.students import resolve_teacher

    try:
        return resolve_teacher(settings, version, data_before)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--teacher-version") from err


@teacher_app.command("train")
def teacher_train(profile: ProfileOpt = None, start: FromOpt = None, end: ToOpt = None,
                  validation: Annotated[Optional[str], typer.Option(
                      "--validation-date", help="default: the students' calibration date")] = None,
                  calibration: CalibrationOpt = None) -> None:
    """Train (or resume) the teacher on a window of dates; works under torchrun too.

    Default window: every date with samples before the students' window (the first date only
    feeds history).
    """
    from pipeline.train.ranks import init_distributed_from_env
    from pipeline.train.teacher_search import fit_teacher

    settings = _settings(profile)
    init_distributed_from_env()
    windows = _windows(settings, calibration=calibration)
    days = _train_days(settings, windows, start, end, teacher=True)
    check = [_parse_date(validation, "--validation-date")] if validation else [windows.calibration]
    try:
        run = fit_teacher(settings, days, check)
    except ValueError as err:  # e.g. a window without training samples: nothing was written
        raise typer.BadParameter(str(err), param_hint="--from/--to") from err
    console.print(f"teacher {run.version}: {run.metrics}")


@teacher_app.command("register")
def teacher_register(profile: ProfileOpt = None, teacher_version: TeacherOpt = None) -> None:
    """Register a finished teacher in MLflow as `recdistill-teacher` (a pointer to its PS snapshot)."""
    from pipeline.train.release import register_teacher_version

    settings = _settings(profile)
    version = _teacher(settings, teacher_version)
    console.print(f"teacher {version} → recdistill-teacher version {register_teacher_version(settings, version)}")


@logits_app.command("dump")
def logits_dump(profile: ProfileOpt = None, day: DateOpt = None, start: FromOpt = None, end: ToOpt = None,
                teacher_version: TeacherOpt = None, summary: SummaryOpt = True,
                unexposed: Annotated[bool, typer.Option(help="also the unexposed pairs of the students' window")]
                = True) -> None:
    """Score samples of each date with a teacher into teacher_logits (idempotent per date and version).

    Default: every date of training_samples, and the unexposed pairs of the students' default window.
    """
    from pipeline.tables import TRAINING_SAMPLES, partition_dates
    from pipeline.train.logit_dump import dump_logits, dump_unexposed_logits
    from pipeline.train.windows import default_windows

    settings = _settings(profile)
    version = _teacher(settings, teacher_version)
    for one in resolve_dates(day, start, end, partition_dates(settings, TRAINING_SAMPLES), "training_samples"):
        console.print(f"{one}: {dump_logits(settings, one, version):,} logits of {version}")
    if unexposed and not (day or start or end):
        window = default_windows(settings).train
        console.print(f"{window[0]}..{window[-1]}: {dump_unexposed_logits(settings, window, version):,} unexposed pairs")
    if summary:
        print_counts(settings)


def _students(kinds: list[str], profile: str | None, start: str | None, end: str | None,
              calibration: str | None, teacher_version: str | None, seeds: list[int] | None) -> None:
    from pipeline.train.students import train_students

    settings = _settings(profile)
    windows = _windows(settings, calibration=calibration)
    days = _train_days(settings, windows, start, end)
    before = teacher_data_before(settings, days, windows.calibration)
    version = _teacher(settings, teacher_version, data_before=before) if kinds != ["base"] else None
    for run in train_students(settings, kinds, days, windows.calibration, version, seeds):  # type: ignore[arg-type]
        console.print(f"{run.kind} student seed {run.seed}: {run.folder.directory}")


@student_app.command("distill")
def student_distill(profile: ProfileOpt = None, start: FromOpt = None, end: ToOpt = None,
                    calibration: CalibrationOpt = None, teacher_version: TeacherOpt = None,
                    seed: SeedsOpt = None) -> None:
    """Train the baseline student (labels only) and the KD student (labels + teacher logits)."""
    _students(["base", "kd"], profile, start, end, calibration, teacher_version, seed)


@student_app.command("debias")
def student_debias(profile: ProfileOpt = None, start: FromOpt = None, end: ToOpt = None,
                   calibration: CalibrationOpt = None, teacher_version: TeacherOpt = None,
                   seed: SeedsOpt = None) -> None:
    """Train the debiased student (auxiliary KD head, stale-logit adapter, neutral-position logits)."""
    _students(["debiased"], profile, start, end, calibration, teacher_version, seed)


@student_app.command("release")
def student_release(profile: ProfileOpt = None, teacher_version: TeacherOpt = None,
                    kind: Annotated[str, typer.Option(help="base | kd | debiased")] = "debiased",
                    seed: Annotated[Optional[int], typer.Option(help="default: the first of student.seeds")] = None,
                    day: DateOpt = None) -> object:
    """W8A16-quantize a student, check parity, export, register it as challenger and run the gate."""
    from pipeline.artifacts import find_student
    from pipeline.train.release import release_student

    settings = _settings(profile)
    holdout = _windows(settings, day).holdout
    version = _teacher(settings, teacher_version)
    wanted = settings.student.seeds[0] if seed is None else seed
    try:
        student = find_student(settings, version, holdout, kind, wanted)  # type: ignore[arg-type]
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--kind") from err
    release = release_student(settings, student, holdout)
    verdict = "promoted to @champion" if release.decision.promoted else "NOT promoted (champion unchanged)"
    console.print(f"recdistill-student version {release.version}: {verdict}")
    for reason in release.decision.reasons:
        console.print(f"  {reason}")
    return release


@app.command("evaluate")
def evaluate_cmd(profile: ProfileOpt = None, day: DateOpt = None, teacher_version: TeacherOpt = None) -> object:
    """Teacher vs students on a held-out date (and its random-exposure slice), with transferability."""
    from pipeline.train.evaluate import evaluate

    settings = _settings(profile)
    holdout = _windows(settings, day).holdout
    report = evaluate(settings, holdout, _teacher(settings, teacher_version))
    print_report(report)
    return report


def print_report(report: object) -> None:
    table = Table(title=f"held-out {report.day}, teacher {report.teacher_version}")  # type: ignore[attr-defined]
    for column in ("model", "AUC", "GAUC", "LogLoss", "random-exposure AUC"):
        table.add_column(column, justify="right")
    for model, m in report.metrics.items():  # type: ignore[attr-defined]
        table.add_row(model, f"{m['auc']:.4f}", f"{m['gauc']:.4f}", f"{m['logloss']:.4f}",
                      f"{m.get('random_auc', float('nan')):.4f}")
    console.print(table)
    for kind in ("kd", "debiased"):
        console.print(f"transferability {kind}: {transfer_text(report.transferability, kind)}")  # type: ignore[attr-defined]


def transfer_text(t: dict[str, object], kind: str) -> str:
    """'0.42 [0.30, 0.55] over 10 seeds', or the reason it is not measurable."""
    if f"{kind}_value" in t:
        return f"{t[f'{kind}_value']:.2f} [{t[f'{kind}_low']:.2f}, {t[f'{kind}_high']:.2f}] over {t[f'{kind}_seeds']} seeds"
    return str(t.get(f"{kind}_note", "no students"))


@app.command("demo")
def demo(profile: ProfileOpt = None) -> None:
    """The main job on embedded defaults: logs → tables → teacher → logits → students → release → stream."""
    import time

    started = time.perf_counter()
    settings = _settings(profile)
    generate(profile=settings.profile)
    run_all(profile=settings.profile, summary=False)
    teacher_train(profile=settings.profile)
    teacher_register(profile=settings.profile)
    logits_dump(profile=settings.profile, summary=False)
    student_distill(profile=settings.profile)
    student_debias(profile=settings.profile)
    report = evaluate_cmd(profile=settings.profile)
    release = student_release(profile=settings.profile)
    increment = stream_run(profile=settings.profile, summary=False)
    print_summary(settings, report, release, increment, time.perf_counter() - started)


def print_summary(settings: Settings, report: object, release: object, increment: object, seconds: float) -> None:
    """What the demo did, in one table: tables, quality, transferability, latency, the champion."""
    from pipeline.mlflow_store import connect

    print_counts(settings)
    metrics, t = report.metrics, report.transferability  # type: ignore[attr-defined]
    table = Table(title=f"recdistill demo ({settings.profile} profile) in {seconds / 60:.1f} min")
    table.add_column("result")
    table.add_column("value", justify="right")
    for model in ("teacher", "base", "kd", "debiased"):
        if model in metrics:
            table.add_row(f"{model} AUC (held-out {report.day})", f"{metrics[model]['auc']:.4f}")  # type: ignore[attr-defined]
    for kind in ("kd", "debiased"):
        table.add_row(f"transferability {kind}", transfer_text(t, kind))
    latency = release.latency  # type: ignore[attr-defined]
    path = "W8A16 + reuse" if latency.served == "w8a16" else "fp32 reuse"
    table.add_row(f"latency gain, served path ({path}) vs naive (N={latency.candidates})",
                  f"{latency.gain:.2f}x ({latency.naive_ms:.2f} → {latency.served_ms:.2f} ms)")
    table.add_row("released student", f"v{release.version}: {'promoted' if release.decision.promoted else 'refused'}")  # type: ignore[attr-defined]
    table.add_row("streaming increment", increment.skipped or  # type: ignore[attr-defined]
                  f"v{increment.challenger_version} ({_increment_text(increment.update)}): "  # type: ignore[attr-defined]
                  f"{'promoted' if increment.promoted else 'refused'}")  # type: ignore[attr-defined]
    registry = settings.registry
    aliases = connect(settings).get_registered_model(registry.student_model).aliases
    table.add_row("champion", f"v{aliases[registry.champion_alias]}" if registry.champion_alias in aliases
                  else "none (the gate refused)")
    console.print(table)


def _increment_text(update: object) -> str:
    """`1,234 samples of 2026-01-11 (after 2026-01-10)`: how much an increment trained on."""
    return (f"{update.samples:,} samples of {', '.join(update.days)} "  # type: ignore[attr-defined]
            f"(after {update.after})")  # type: ignore[attr-defined]


@stream_app.command("run")
def stream_run(profile: ProfileOpt = None,
               holdout: Annotated[Optional[str], typer.Option("--holdout-date", help="gate date, never trained on")] = None,
               summary: SummaryOpt = True) -> object:
    """One increment: stream fresh events, score them with the teacher, fine-tune the champion, gate it."""
    from pipeline.streaming import run_increment

    settings = _settings(profile)
    report = run_increment(settings, _parse_date(holdout, "--holdout-date") if holdout else None)
    console.print(f"teacher {report.teacher_version}: {report.logits_written:,} new logits")
    if report.skipped:
        console.print(f"student update skipped: {report.skipped}")
    else:
        verdict = "promoted to @champion" if report.promoted else "NOT promoted (champion unchanged)"
        console.print(f"recdistill-student version {report.challenger_version} from v{report.update.parent_version}, "
                      f"{_increment_text(report.update)}: {verdict}")
    if summary:
        print_counts(settings)
    return report


tables_app = typer.Typer(help="Lakehouse tables: row counts (no subcommand) and maintenance.")
app.add_typer(tables_app, name="tables")


@tables_app.callback(invoke_without_command=True)
def tables(ctx: typer.Context, profile: ProfileOpt = None) -> None:
    """Row counts of every lakehouse table."""
    if ctx.invoked_subcommand is None:
        print_counts(_settings(profile, writes=False))


@tables_app.command("vacuum")
def tables_vacuum(profile: ProfileOpt = None,
                  retention_hours: Annotated[int, typer.Option(
                      min=0, help="keep unreferenced files younger than this (readers of older versions "
                                  "and running writers need them)")] = 168,
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="list, do not delete")] = False) -> None:
    """Delete files no table version references (replaced or left by killed writes), with Delta's VACUUM."""
    from pipeline.tables import vacuum

    settings = _settings(profile)
    for name, files in vacuum(settings, retention_hours, dry_run).items():
        console.print(f"{name}: {len(files)} unreferenced files {'found' if dry_run else 'removed'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
