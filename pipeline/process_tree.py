"""Run commands side by side and, when one ends or this process is told to stop, stop every process they started.

`airflow standalone` does not do this itself: on SIGTERM it left its scheduler and LocalExecutor
workers running, and Airflow 3 puts each task process (and the spark-submit it starts) in a
process group of its own, so signalling one process group misses them. Here this process becomes
the Linux child subreaper of the whole tree, so a descendant whose parent died is reparented to it
and still found, and stopping walks the tree: SIGTERM to all, then SIGKILL to what is left.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

import psutil

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36  # prctl option, from <linux/prctl.h>
STOP_GRACE_S = 20.0


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so a tree whose middle process died can still be stopped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def stop_descendants(grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM every descendant of this process, SIGKILL those alive after `grace_s`; how many were stopped."""
    me = psutil.Process()

    def adopted() -> list[psutil.Process]:
        _reap()  # orphans adopted by this subreaper are its children: collect the ones that exited
        return me.children(recursive=True)

    return _stop_until_gone(adopted, grace_s)


def stop_tree(pid: int, grace_s: float = STOP_GRACE_S) -> int:
    """Stop process `pid` and every descendant it has now (those in other process groups too)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    return _stop_until_gone(lambda: tree, grace_s)


def _stop_until_gone(processes: Callable[[], list[psutil.Process]], grace_s: float) -> int:
    """SIGTERM each process `processes()` lists, again until none runs; SIGKILL the rest after `grace_s`."""
    stopped: set[int] = set()
    deadline = time.monotonic() + grace_s
    while True:
        alive = [p for p in processes() if _running(p)]
        if not alive:
            return len(stopped)
        kill = time.monotonic() >= deadline
        for process in alive:
            if process.pid not in stopped or kill:
                _signal(process, signal.SIGKILL if kill else signal.SIGTERM)
                stopped.add(process.pid)
        time.sleep(0.2)


def run_supervised(commands: Sequence[Sequence[str]], env: Mapping[str, str], grace_s: float = STOP_GRACE_S) -> int:
    """Run `commands` side by side until one exits or this process gets SIGINT/SIGTERM; then stop all they
    started. The exit code of the first to exit (128 + the signal when told to stop).

    Each command runs in a session of its own so that a terminal's Ctrl+C reaches only this
    process, which then stops the tree in order instead of every process at once.
    """
    become_subreaper()
    processes = [subprocess.Popen(list(command), env=dict(env), start_new_session=True) for command in commands]
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    ended: list[tuple[Sequence[str], int]] = []
    try:
        while not ended and not received:
            ended = [(c, p.returncode) for c, p in zip(commands, processes) if p.poll() is not None]
            time.sleep(0.5)
    finally:
        if received:
            log.warning("%s received: stopping every process started", signal.Signals(received[0]).name)
        elif ended:
            log.warning("`%s` exited with %s: stopping the others", " ".join(ended[0][0]), ended[0][1])
        stopped = stop_descendants(grace_s)
        log.info("stopped %d processes", stopped)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else int(ended[0][1] or 0)


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(process: psutil.Process, sig: int) -> None:
    try:
        process.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


def _reap() -> None:
    """Collect exit statuses of adopted children, so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
