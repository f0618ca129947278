"""Progress of long steps: live bars in a terminal, a few plain log lines anywhere else.

A bar redrawn with `\\r` becomes thousands of updates in a log file (an Airflow task log, a
redirected demo), and rich draws nothing there until the step ends. So the mode is chosen once:
stderr a terminal → one shared rich display (nested and concurrent steps share it: rich allows
one live display at a time); otherwise → a log line when a step starts, at every
`LOG_EVERY_PERCENT` of its total (or every `LOG_EVERY_S` seconds when the total is unknown) and
when it ends. `RECDISTILL_PROGRESS=log` forces the log lines in a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("recdistill.progress")

LOG_EVERY_PERCENT = 10
LOG_EVERY_S = 30.0
T = TypeVar("T")


def interactive() -> bool:
    """True when progress should be drawn as live bars (stderr is a terminal and not overridden)."""
    return os.environ.get("RECDISTILL_PROGRESS", "").lower() != "log" and sys.stderr.isatty()


class Step:
    """One step's progress; `advance` it, then `close` it (or use it as a context manager)."""

    def __init__(self, description: str, total: float | None = None, unit: str = "step") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0.0
        self._started = self._logged_at = time.monotonic()
        self._logged_percent = 0
        self._bar = _LIVE.add(description, total) if interactive() else None
        if self._bar is None:
            log.info("%s: started%s", description, f" ({_count(total)} {_plural(unit)})" if total else "")

    def advance(self, amount: float = 1) -> None:
        self.done += amount
        if self._bar is not None:
            _LIVE.update(self._bar, self.done)
            return
        now = time.monotonic()
        if self.total:
            percent = int(100 * self.done / self.total) // LOG_EVERY_PERCENT * LOG_EVERY_PERCENT
            if percent > self._logged_percent and self.done < self.total:
                self._logged_percent = percent
                log.info("%s: %d%% (%s/%s %s, %.0fs)", self.description, percent, _count(self.done),
                         _count(self.total), _plural(self.unit), now - self._started)
        elif now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.info("%s: %s %s (%.0fs)", self.description, _count(self.done), _plural(self.unit), now - self._started)

    def close(self) -> None:
        seconds = time.monotonic() - self._started
        if self._bar is not None:
            _LIVE.remove(self._bar)
        else:
            log.info("%s: done, %s %s in %.1fs", self.description, _count(self.done), _plural(self.unit), seconds)

    def __enter__(self) -> Step:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], description: str, total: float | None = None, unit: str = "step") -> Iterator[T]:
    """`items`, reporting one step each (the total defaults to `len(items)` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Step(description, total, unit) as step:
        for item in items:
            yield item
            step.advance()


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr: through rich in a terminal (so lines print above live bars), plainly elsewhere."""
    if interactive():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=_LIVE.console, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # py4j logs every gateway connection it closes at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


class _LiveBars:
    """The process's one rich display, started with its first bar and stopped with its last."""

    def __init__(self) -> None:
        from rich.console import Console

        self._lock = threading.Lock()
        self._progress = None
        self._open = 0
        self.console = Console(stderr=True)

    def add(self, description: str, total: float | None) -> int:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)

        with self._lock:
            if self._progress is None:
                self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn(),
                                          console=self.console, transient=False)
                self._progress.start()
            self._open += 1
            return self._progress.add_task(description, total=total)

    def update(self, task: int, completed: float) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.update(task, completed=completed)

    def remove(self, task: int) -> None:
        with self._lock:
            if self._progress is None:
                return
            done = next(t for t in self._progress.tasks if t.id == task)
            self._progress.update(task, visible=False)
            self.console.log(f"{done.description}: done ({done.elapsed or 0:.1f}s)")
            self._open -= 1
            if self._open == 0:
                self._progress.stop()
                self._progress = None


_LIVE = _LiveBars()


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "s")) else "s")
