"""`make airflow` runs a 2-core-sized Airflow on loopback only and stops every process it started on Ctrl+C or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from pipeline.config import PROJECT_ROOT
from tests.network import LOOPBACK, listening_addresses

START_DEADLINE_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/version", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _command(process: psutil.Process) -> str:
    """The command line, or "" for a process that exited since it was listed (start-up spawns short-lived ones)."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return ""


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {_command(process)[:120]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def _started(make: subprocess.Popen, port: int, log: Path) -> list[psutil.Process]:
    """Wait until the UI answers and the scheduler runs its executor's workers; every process of the tree then."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        assert make.poll() is None, f"make airflow exited early:\n{log.read_text()[-4000:]}"
        tree = _tree(make.pid)
        commands = [_command(p) for p in tree]
        components = ("scheduler", "triggerer", "dag-processor", "LocalExecutor")
        if _answers(port) and all(any(name in c for c in commands) for name in components):
            return tree
        time.sleep(2)
    raise AssertionError(f"Airflow did not come up in {START_DEADLINE_S}s:\n{log.read_text()[-4000:]}")


@pytest.mark.parametrize("stop", ["SIGTERM to make", "Ctrl+C in the terminal"])
def test_make_airflow_stops_every_process_it_started(tmp_path, stop):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECDISTILL_"))}
    env.update({"RECDISTILL_PROFILE": "tiny", "RECDISTILL_LAKEHOUSE_ROOT": str(tmp_path / "lakehouse"),
                "RECDISTILL_AIRFLOW__HOME": str(tmp_path / "airflow"), "RECDISTILL_AIRFLOW__PORT": str(port)})
    log = tmp_path / "make.log"
    with log.open("w") as out:
        # `-o setup`: the venv and jars are in place; a terminal's process group, so Ctrl+C can be sent to it.
        make = subprocess.Popen(["make", "-o", "setup", "airflow"], cwd=PROJECT_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        tree = _started(make, port, log)
        workers = [p for p in tree if "LocalExecutor" in _command(p)]
        assert len(workers) <= 2, "LocalExecutor workers are sized by airflow.parallelism (2)"
        time.sleep(5)  # past the components' start-up, where a log server would bind
        assert listening_addresses([make.pid]) <= LOOPBACK  # finding: no log server on every interface
        if stop == "SIGTERM to make":
            make.send_signal(signal.SIGTERM)
        else:
            os.killpg(make.pid, signal.SIGINT)  # what a terminal does on Ctrl+C: the foreground group
        make.wait(timeout=120)
        assert _alive(tree) == [], log.read_text()[-4000:]
        assert not _answers(port)
    finally:
        for process in _tree(make.pid):
            process.kill()
