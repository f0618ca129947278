"""Observability: per-tier hit rates, rows and bytes moved, and time per pipeline stage.

`StatsRecorder` is written from the training thread and the prefetch thread; `HPSStats` is the
immutable snapshot that training logs and sends to MLflow (`as_dict`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

COUNTERS = (
    "steps", "keys", "unique_keys",
    "memory_hits", "memory_misses", "ssd_hits", "ssd_misses",
    "rows_admitted", "rows_default", "rows_evicted", "rows_expired",
    "rows_ssd_to_memory", "bytes_ssd_to_memory", "rows_memory_to_ssd", "bytes_memory_to_ssd",
    "rows_memory_to_device", "bytes_memory_to_device", "rows_device_to_memory", "bytes_device_to_memory",
    "bytes_sent", "bytes_received",
)
STAGES = ("dedupe", "route", "resolve", "admit", "gather", "push", "optimize",
          "prefetch", "prefetch_wait", "expire", "checkpoint")


@dataclass(frozen=True)
class HPSStats:
    """Cumulative counts and stage seconds since the server started."""

    counts: dict[str, int]
    seconds: dict[str, float]
    memory_rows: int = 0
    memory_bytes: int = 0
    ssd_rows: int = 0
    ssd_bytes: int = 0

    @property
    def memory_hit_rate(self) -> float:
        return _rate(self.counts["memory_hits"], self.counts["memory_misses"])

    @property
    def ssd_hit_rate(self) -> float:
        """Of the keys the memory tier missed, the share found on SSD (the rest are new keys)."""
        return _rate(self.counts["ssd_hits"], self.counts["ssd_misses"])

    @property
    def prefetch_hidden(self) -> float:
        """Share of background planning time that training did not wait for (1.0: fully overlapped)."""
        planned = self.seconds["prefetch"]
        return max(0.0, 1.0 - self.seconds["prefetch_wait"] / planned) if planned else 0.0

    def summary(self) -> str:
        """One log line: hit rates, traffic and where the time went."""
        busiest = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:4]
        return (f"memory hit {self.memory_hit_rate:.1%}, ssd hit {self.ssd_hit_rate:.1%}, "
                f"{self.counts['rows_ssd_to_memory']} rows in from SSD, {self.counts['rows_memory_to_ssd']} out, "
                f"prefetch hidden {self.prefetch_hidden:.0%}, time " + ", ".join(f"{k} {v:.2f}s" for k, v in busiest))

    def as_dict(self, prefix: str = "hps/") -> dict[str, float]:
        """Flat name → number, ready for `mlflow.log_metrics`."""
        out: dict[str, float] = {f"{prefix}{k}": float(v) for k, v in self.counts.items()}
        out.update({f"{prefix}seconds_{k}": v for k, v in self.seconds.items()})
        out.update({f"{prefix}memory_hit_rate": self.memory_hit_rate, f"{prefix}ssd_hit_rate": self.ssd_hit_rate,
                    f"{prefix}prefetch_hidden": self.prefetch_hidden,
                    f"{prefix}memory_rows": float(self.memory_rows), f"{prefix}memory_bytes": float(self.memory_bytes),
                    f"{prefix}ssd_rows": float(self.ssd_rows), f"{prefix}ssd_bytes": float(self.ssd_bytes)})
        return out


class StatsRecorder:
    """Thread-safe counters and stage timers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._seconds: dict[str, float] = defaultdict(float, dict.fromkeys(STAGES, 0.0))

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += int(value)

    @contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._seconds[stage] += elapsed

    def snapshot(self, sizes: dict[str, int], extra_counts: dict[str, int]) -> HPSStats:
        """Current totals, with counts kept elsewhere (e.g. network bytes) merged in."""
        with self._lock:
            counts = dict(self._counts)
            seconds = dict(self._seconds)
        for name, value in extra_counts.items():
            counts[name] += value
        return HPSStats(counts=counts, seconds=seconds, **sizes)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._seconds = defaultdict(float, dict.fromkeys(STAGES, 0.0))


def _rate(hits: int, misses: int) -> float:
    return hits / (hits + misses) if hits + misses else 0.0
