"""The `recdistill` CLI end to end on the tiny profile: generated logs become every table."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from pipeline.artifacts import daily_students, evaluation_folder, latest_teacher, teacher_manifest
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.data.landing import read_landing
from pipeline.mlflow_store import connect
from pipeline.tables import EVENTS, TEACHER_LOGITS, TRAINING_SAMPLES, USER_FEATURES, read_arrow
from spark_jobs import build_features


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RECDISTILL_LAKEHOUSE_ROOT", str(tmp_path / "lh"))
    return load_settings("tiny")


def test_demo_runs_the_whole_pipeline(spark, tiny_env):
    result = CliRunner().invoke(app, ["demo", "--profile", "tiny"])
    assert result.exit_code == 0, result.output
    gen = tiny_env.generator
    days = [gen.start_date + timedelta(days=i) for i in range(gen.n_days)]
    generated = sum(len(read_landing(tiny_env.lakehouse.landing, "synthetic", day)) for day in days)
    assert read_arrow(tiny_env, EVENTS).num_rows == read_arrow(tiny_env, TRAINING_SAMPLES).num_rows == generated > 0
    assert f"{generated:,}" in result.output
    teacher = latest_teacher(tiny_env)
    assert teacher is not None and teacher_manifest(tiny_env, teacher).registry_version == "1"
    logits = read_arrow(tiny_env, TEACHER_LOGITS).to_pandas()
    assert set(logits.teacher_version) == {teacher} and (logits.pair_kind == "labelled").sum() == generated
    assert (logits.pair_kind == "unexposed").sum() > 0  # the students' window's unexposed pairs
    assert len(daily_students(tiny_env)) == 3 * len(tiny_env.student.seeds)
    assert evaluation_folder(tiny_env, days[-1], teacher, tiny_env.student.preset).report.exists()
    assert "transferability kd" in result.output
    # The summary: quality, transferability, the served path's latency gain, the stream, the champion.
    summary = result.output[result.output.rindex("recdistill demo (tiny profile)"):]
    for line in ("teacher AUC", "base AUC", "kd AUC", "transferability kd", "latency gain", "streaming increment",
                 "champion"):
        assert line in summary, line
    # The first release has no champion to beat: a student whose W8A16 parity holds is promoted.
    assert "recdistill-student version 1: promoted to @champion" in result.output
    aliases = connect(tiny_env).get_registered_model("recdistill-student").aliases
    assert f"v{aliases['champion']}" in summary


def test_bad_flags_get_clear_errors(tiny_env):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "features", "--profile", "tiny", "--date", "2026-13-01"])
    assert result.exit_code == 2 and "is not a date" in result.output
    result = runner.invoke(app, ["data", "features", "--profile", "huge"])
    assert result.exit_code == 2 and "unknown profile 'huge'" in result.output
    result = runner.invoke(app, ["data", "samples", "--profile", "tiny", "--from", "2026-01-05", "--to", "2026-01-01"])
    assert result.exit_code == 2 and "is before --from" in result.output
    result = runner.invoke(app, ["teacher", "train", "--profile", "tiny", "--from", "2030-01-01", "--to", "2030-01-02"])
    assert result.exit_code == 2 and "no training_samples" in result.output
    assert not tiny_env.lakehouse.artifacts.exists()  # no teacher folder, no manifest


def test_jobs_are_spark_submit_entry_points(spark, tiny_env):
    from tests.spark_jobs.events_factory import at, event, ingest

    ingest(spark, tiny_env, [event("a", at(date(2026, 1, 1)), click=1)])
    build_features.main(["--date", "2026-01-02", "--profile", "tiny"])
    users = read_arrow(load_settings("tiny"), USER_FEATURES).to_pandas()
    assert list(users.user_id) == [1] and list(users.clicks_1d) == [1]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """The real entry point in this process: its exit code and stderr."""
    with pytest.raises(SystemExit) as done:
        app(argv)
    return done.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "features", "--profile", "tiny", "--date", "2026-13-01"],
     "Invalid value for --date: '2026-13-01' is not a date (expected YYYY-MM-DD) (see `recdistill data features --help`)"),
    (["data", "ingets"], "No such command 'ingets'. Did you mean 'ingest'?"),
    (["registry", "promote", "--heldout", "/nonexistent.parquet"],
     "Invalid value for '--heldout': file '/nonexistent.parquet' does not exist."),
    (["registry", "serve", "--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
])
def test_usage_errors_are_one_line_and_exit_2(tiny_env, capsys, argv, message):
    """Finding 9: a bad flag is one line naming the flag, exit 2, no traceback."""
    exit_code, err = _run(argv, capsys)
    assert exit_code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_runtime_errors_are_one_line_naming_the_thing_and_the_fix(spark, tiny_env, tmp_path, monkeypatch, capsys):
    """Finding 9: a missing landing day, a lakehouse that is a file or cannot be written: one line, exit 1."""
    code, err = _run(["data", "ingest", "--profile", "tiny", "--date", "2030-01-01"], capsys)
    assert code == 1 and "no landing files for 2030-01-01" in err and "recdistill data generate" in err, err
    assert len(err.strip().splitlines()) == 1

    root_file = tmp_path / "not-a-folder"
    root_file.write_text("")
    monkeypatch.setenv("RECDISTILL_LAKEHOUSE_ROOT", str(root_file))
    code, err = _run(["tables", "--profile", "tiny"], capsys)
    assert code == 1 and f"lakehouse root {root_file} is a file, not a folder; set RECDISTILL_LAKEHOUSE_ROOT" in err

    monkeypatch.setenv("RECDISTILL_LAKEHOUSE_ROOT", "/sys/fs/recdistill-lakehouse")  # a read-only file system
    code, err = _run(["data", "features", "--profile", "tiny", "--date", "2026-01-02"], capsys)
    assert code == 1 and "lakehouse root /sys/fs/recdistill-lakehouse is not writable" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    with pytest.raises(Exception, match="is not writable"):  # --debug: the exception itself, with its traceback
        app(["data", "features", "--profile", "tiny", "--date", "2026-01-02", "--debug"])


def write_coat(folder, seed: int = 3, users: int = 40, items: int = 60) -> None:
    """Coat's two files, made up here: self-selected ratings (user.txt) and ratings of random items (random.txt).

    Ratings follow a planted user-item affinity, so every day has clicks and non-clicks.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    taste, traits = rng.normal(size=(users, 4)), rng.normal(size=(items, 4))
    files = {"user.txt": 14, "random.txt": 4}
    folder.mkdir(parents=True)
    for name, per_user in files.items():
        lines = []
        for user in range(users):
            for item in sorted(rng.choice(items, per_user, replace=False)):
                rating = int(np.clip(np.round(3 + taste[user] @ traits[item] + rng.normal()), 1, 5))
                lines.append(f"{user},{item},{rating}\n")
        (folder / name).write_text("".join(lines))


def test_cli_on_a_converted_data_set_needs_no_date_flags(spark, tiny_env, tmp_path):
    """Coat lands on 2026-01-01 … 2026-01-08 (random exposure on the last day), not on the tiny profile's
    generated days (2026-01-01 … 2026-01-05): every window comes from the dates the data holds."""
    write_coat(tmp_path / "coat")
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, [*args, "--profile", "tiny"])
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.output

    ok("data", "convert", "coat", str(tmp_path / "coat"))
    ok("data", "run")  # the source is the only one there
    assert read_arrow(tiny_env, TRAINING_SAMPLES).num_rows == 40 * (14 + 4)
    ok("teacher", "train")
    teacher = latest_teacher(tiny_env)
    assert [str(d) for d in teacher_manifest(tiny_env, teacher).data_dates] == [f"2026-01-0{d}" for d in range(1, 6)]
    ok("logits", "dump")
    ok("student", "distill", "--seed", "0", "--calibration-date", "2026-01-07")
    ok("student", "debias", "--seed", "0")
    assert "held-out 2026-01-08" in ok("evaluate")
