"""The training and scoring loops shared by the teacher and the students."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.progress import track

Batch = dict[str, torch.Tensor]


@dataclass
class Scored:
    """Per-sample predictions with what the metrics need."""

    sample_id: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    users: np.ndarray
    random_exposure: np.ndarray

    def subset(self, mask: np.ndarray) -> Scored:
        return Scored(self.sample_id[mask], self.labels[mask], self.logits[mask], self.users[mask],
                      self.random_exposure[mask])

    def aligned_to(self, sample_id: np.ndarray) -> Scored:
        """The same predictions reordered to `sample_id`'s order (for paired comparisons)."""
        order = np.argsort(self.sample_id)
        where = order[np.searchsorted(self.sample_id, sample_id, sorter=order)]
        return Scored(self.sample_id[where], self.labels[where], self.logits[where], self.users[where],
                      self.random_exposure[where])


def train_epoch(batches: Iterable[Batch], step: Callable[[Batch], torch.Tensor],
                optimizer: torch.optim.Optimizer, description: str) -> float:
    """One pass; `step` returns the loss of a batch. Returns the mean loss."""
    total, count = 0.0, 0
    for batch in track(batches, description, unit="batch"):
        optimizer.zero_grad(set_to_none=True)
        loss = step(batch)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        count += 1
    if count == 0:
        raise ValueError(f"{description}: no training batches (is the date range empty?)")
    return total / count


@torch.no_grad()
def score(batches: Iterable[Batch], logits_of: Callable[[Batch], torch.Tensor], description: str) -> Scored:
    """Logits for every sample of `batches`, with labels, users and the random-exposure flag."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sample_id", "labels", "logits", "users", "random")}
    for batch in track(batches, description, unit="batch"):
        parts["logits"].append(logits_of(batch).float().numpy())
        parts["sample_id"].append(batch["sample_id"].numpy())
        parts["labels"].append(batch["click"].numpy())
        parts["users"].append(batch["request_user"].numpy())
        parts["random"].append(batch["random_exposure"].numpy())
    if not parts["logits"]:
        raise ValueError(f"{description}: no samples to score")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Scored(cat["sample_id"], cat["labels"], cat["logits"], cat["users"], cat["random"])


