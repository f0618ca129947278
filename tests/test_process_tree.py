"""A supervised command's whole tree stops: grandchildren in their own sessions, orphans, SIGTERM-deaf ones."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pipeline.process_tree import stop_tree

# A child that starts, in a session of its own, a grandchild ignoring SIGTERM (as Airflow's task processes
# and its scheduler did), writes the grandchild's pid, then waits.
SPAWNER = """
import subprocess, sys, time
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", deaf], start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def _wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError("the spawner did not start its grandchild")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_tree_kills_a_grandchild_in_another_session_that_ignores_sigterm(tmp_path):
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER, str(tmp_path / "pid")])
    grandchild = _wait_for_pid(tmp_path / "pid")
    assert stop_tree(spawner.pid, grace_s=1) == 2
    spawner.wait(timeout=10)
    assert _gone(grandchild)


def test_a_supervisor_told_to_stop_stops_the_orphans_its_command_left(tmp_path):
    supervise = ("import sys; from pipeline.process_tree import run_supervised; "
                 f"sys.exit(run_supervised([[sys.executable, '-c', {SPAWNER!r}, {str(tmp_path / 'pid')!r}]], {{}}, 1))")
    supervisor = subprocess.Popen([sys.executable, "-c", supervise])
    grandchild = _wait_for_pid(tmp_path / "pid")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 128 + signal.SIGTERM
    assert _gone(grandchild)


def test_a_supervisor_stops_the_other_commands_when_one_exits(tmp_path):
    sleeper = f"import os, time; open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    supervise = ("import sys; from pipeline.process_tree import run_supervised; "
                 f"sys.exit(run_supervised([[sys.executable, '-c', {sleeper!r}], "
                 f"[sys.executable, '-c', 'import time, sys; time.sleep(2); sys.exit(3)']], {{}}, 1))")
    supervisor = subprocess.Popen([sys.executable, "-c", supervise])
    survivor = _wait_for_pid(tmp_path / "pid")
    assert supervisor.wait(timeout=60) == 3  # the code of the command that ended
    assert _gone(survivor)
