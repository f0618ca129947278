"""Serving latency of a released student on real held-out requests: naive vs UG-Sep reuse vs W8A16.

The pipeline's summary reports this gain for the model it just released; `benchmarks/ugsep.py` is
the thorough study (latency curves over N, throughput, FLOPs).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import torch
from torch import Tensor

from pipeline.config import Settings
from pipeline.data.batches import iter_batches
from pipeline.models.student import UGSepStudent

Inputs = dict[str, Tensor]
Request = tuple[Inputs, Inputs, Tensor]


@dataclass(frozen=True)
class LatencyGain:
    candidates: int
    naive_ms: float
    reuse_ms: float
    w8a16_ms: float
    pinned: str | None = None  # `registry.served_path` when it is not "measured"

    @property
    def served(self) -> str:
        """The path a release serves: the pinned one, else reuse with W8A16 where that was measured faster,
        else fp32 reuse."""
        return self.pinned or ("w8a16" if self.w8a16_ms < self.reuse_ms else "reuse")

    @property
    def served_ms(self) -> float:
        return self.w8a16_ms if self.served == "w8a16" else self.reuse_ms

    @property
    def gain(self) -> float:
        """How many times faster the served path is than scoring every row in full."""
        return self.naive_ms / self.served_ms


def requests_of(settings: Settings, day: date, model: UGSepStudent) -> Iterator[Request]:
    """The held-out samples of `day` regrouped into (user inputs, candidate inputs, labels) requests."""
    user_names = [s.name for s in model.user_inputs()]
    candidate_names = [s.name for s in model.candidate_inputs()]
    for batch in iter_batches(settings, [day], settings.student.scoring_batch_size, "student"):
        flat = np.concatenate([batch[n].reshape(len(batch["click"]), -1).double().numpy() for n in user_names], 1)
        _, first, group = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        for g, row in enumerate(first):
            members = torch.from_numpy(np.flatnonzero(group == g))
            user = {n: batch[n][row:row + 1] for n in user_names}
            candidates = {n: batch[n][members] for n in candidate_names}
            yield user, candidates, batch["click"][members]


def ranking_request(requests: Sequence[Request], candidates: int) -> tuple[Inputs, Inputs]:
    """The first request's user with `candidates` candidate rows pooled from the held-out requests.

    Held-out slates are short; a ranking stage scores hundreds of candidates per request.
    """
    pooled: dict[str, list[Tensor]] = {name: [] for name in requests[0][1]}
    rows = 0
    for _, request_candidates, _ in itertools.cycle(requests):
        for name, values in request_candidates.items():
            pooled[name].append(values)
        rows += len(next(iter(request_candidates.values())))
        if rows >= candidates:
            break
    return requests[0][0], {name: torch.cat(parts)[:candidates] for name, parts in pooled.items()}


def measure(model: UGSepStudent, quantized: UGSepStudent, requests: Sequence[Request], candidates: int = 256,
            repeats: int = 30) -> LatencyGain:
    """Median per-request milliseconds of the three paths, interleaved so background load hits all alike."""
    if not requests:
        raise ValueError("latency needs at least one held-out request")
    user, pool = ranking_request(requests, candidates)
    paths: dict[str, Callable[[Inputs, Inputs], Tensor]] = {
        "naive": model.score_naive, "reuse": model.score, "w8a16": quantized.score}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode():
        for score in paths.values():
            score(user, pool)  # warm-up
        for _ in range(repeats):
            for name, score in paths.items():
                started = time.perf_counter()
                score(user, pool)
                samples[name].append((time.perf_counter() - started) * 1000)
    median = {name: statistics.median(values) for name, values in samples.items()}
    return LatencyGain(len(next(iter(pool.values()))), median["naive"], median["reuse"], median["w8a16"])
