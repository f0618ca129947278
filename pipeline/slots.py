"""The documented feature slots of `training_samples`, shared by the samples job and the models.

Each sparse slot is one hashed id per sample: ``slot_<name> = 1 + pmod(xxhash64(name, value), B - 1)``
with B = `features.hash_buckets`; id 0 means "missing". Behaviour-sequence items are hashed as the
`item_id` slot and their categories as the `item_category` slot, so the candidate and the history
share embedding rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["user", "item"]


@dataclass(frozen=True)
class SparseSlot:
    name: str
    side: Side
    doc: str

    @property
    def column(self) -> str:
        return f"slot_{self.name}"


SPARSE_SLOTS: tuple[SparseSlot, ...] = (
    SparseSlot("user_id", "user", "the user"),
    SparseSlot("user_age", "user", "age in years, bucketed by the source"),
    SparseSlot("user_gender", "user", "gender as given by the source"),
    SparseSlot("user_segment", "user", "segment or occupation"),
    SparseSlot("device", "user", "device of the request (context)"),
    SparseSlot("hour", "user", "UTC hour of the request (context)"),
    SparseSlot("scenario", "user", "surface of the request (context)"),
    SparseSlot("item_id", "item", "the candidate item"),
    SparseSlot("item_category", "item", "the candidate's category"),
    SparseSlot("position", "item", "position shown; a bias feature, neutral id at serving"),
)

# Windows of the point-in-time count/CTR features; part of the feature tables' schema.
FEATURE_WINDOWS_DAYS = (1, 7, 30)
WINDOW_STATS = ("log_impressions", "log_clicks", "ctr")


def dense_names(side: Side) -> list[str]:
    """Names of the `<side>_dense` array's entries, in order."""
    return [f"{side}_{stat}_{w}d" for w in FEATURE_WINDOWS_DAYS for stat in WINDOW_STATS]


ACTION_PADDING = 0
ACTION_IMPRESSION = 1
ACTION_CLICK = 2
ACTION_CONVERSION = 3
