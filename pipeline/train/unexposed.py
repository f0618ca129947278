"""Unexposed pairs: the teacher's soft labels on items a user was never shown (KD beyond the labels).

For every labelled impression of the students' window, `student.unexposed_per_impression` items are
drawn from the window's catalogue (every item with a sample there, with its latest category and
dense features) and put in place of the shown item, user side and context unchanged. The teacher
scores these pairs into `teacher_logits` (pair_kind `unexposed`); the student rebuilds the same
pairs from its own batches and learns the teacher's soft labels on them. The draw is a hash of the
impression's sample_id, and a pair's id hashes the impression with the drawn item, so a student
whose catalogue differs from the dump's finds no logit for a pair rather than a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow.compute as pc
import torch

from pipeline.config import Settings
from pipeline.models.config import DENSE_ITEM
from pipeline.slots import SPARSE_SLOTS
from pipeline.tables import TRAINING_SAMPLES, read_arrow
from pipeline.train.exposure import mix64
from pipeline.train.loop import Batch

ITEM_SLOTS = ("item_id", "item_category")  # the candidate's sparse slots a pair replaces (position stays)
PAIR_SEED = 97


@dataclass(frozen=True)
class Catalogue:
    """The items of some dates: hashed slot values and dense features, ordered by hashed item id."""

    slots: dict[str, torch.Tensor]  # slot name → [items]
    dense_item: torch.Tensor  # [items, n_dense_item]
    impressions: torch.Tensor  # [items]: the item's labelled rows on those dates

    def __len__(self) -> int:
        return len(self.slots[ITEM_SLOTS[0]])

    def index(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The catalogue positions of hashed `item_ids`, each of which must be in the catalogue."""
        return torch.searchsorted(self.slots[ITEM_SLOTS[0]], item_ids)

    def inverse_propensity(self, power: float, clip: float) -> torch.Tensor:
        """Per item: (even share / the item's share of impressions)^power, clipped to [1/clip, clip], scaled
        so the catalogue's impressions average weight 1 (index it with `index`)."""
        even = self.impressions.sum() / len(self)
        weight = (even / self.impressions.double()).pow(power).clamp(1 / clip, clip)
        return (weight / ((weight * self.impressions).sum() / self.impressions.sum())).float()


def catalogue(settings: Settings, days: list[date]) -> Catalogue:
    """Every item with a sample on `days`, with the features of its latest sample there."""
    columns = {slot.name: slot.column for slot in SPARSE_SLOTS if slot.name in ITEM_SLOTS}
    rows = read_arrow(settings, TRAINING_SAMPLES, days=days,
                      columns=[*columns.values(), "item_dense", "sample_id", "date"])
    if rows.num_rows == 0:
        raise ValueError(f"no training_samples on {[str(d) for d in days]}: no catalogue to draw unexposed items from")
    item = rows.column(columns["item_id"]).to_numpy()
    order = np.lexsort((rows.column("sample_id").to_numpy(), pc.cast(rows.column("date"), "int32").to_numpy(), item))
    ends = np.r_[np.flatnonzero(np.diff(item[order])), len(order) - 1]
    last = order[ends]  # each item's latest sample
    dense = np.stack(rows.column("item_dense").take(last).to_numpy(zero_copy_only=False)).astype(np.float32)
    return Catalogue({name: torch.from_numpy(rows.column(column).to_numpy()[last].astype(np.int64))
                      for name, column in columns.items()}, torch.from_numpy(dense),
                     torch.from_numpy(np.diff(np.r_[-1, ends])))


def unexposed_pairs(batch: Batch, items: Catalogue, per_impression: int) -> Batch:
    """`per_impression` pairs per row of `batch`: its user side and context with a drawn item
    (distinct items per row while the catalogue has that many).

    Labels are absent (`click` is NaN): only the teacher's soft label trains on a pair.
    """
    rows = torch.arange(len(batch["sample_id"])).repeat_interleave(per_impression)
    draw = torch.arange(per_impression).repeat(len(batch["sample_id"]))
    source = batch["sample_id"][rows].numpy()
    # Consecutive catalogue entries from a hashed start: a row's pairs are distinct items (catalogue
    # order is by hashed id, so neighbours are unrelated items).
    start = mix64(source, PAIR_SEED) % np.uint64(len(items))
    pick = torch.from_numpy(((start + draw.numpy().astype(np.uint64)) % np.uint64(len(items))).astype(np.int64))
    pairs = {name: value[rows] for name, value in batch.items()}
    for name in ITEM_SLOTS:
        pairs[name] = items.slots[name][pick]
    pairs[DENSE_ITEM] = items.dense_item[pick]
    pair_id = mix64(source.astype(np.uint64) ^ mix64(pairs[ITEM_SLOTS[0]].numpy(), PAIR_SEED + 1), PAIR_SEED + 2)
    pairs["sample_id"] = torch.from_numpy(pair_id.view(np.int64).copy())
    pairs["click"] = torch.full((len(rows),), float("nan"))
    pairs["conversion"] = torch.full((len(rows),), float("nan"))
    return pairs
