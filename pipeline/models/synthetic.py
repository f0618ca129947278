"""Generated tensors for the models: random inputs from a contract, and clicks from a planted model.

The models are independent of the data plane; tests and the benchmark feed them these.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.models.config import (
    DENSE_ITEM,
    DENSE_USER,
    SEQ_ACTION,
    SEQ_ITEM_CATEGORY,
    SEQ_ITEM_ID,
    SEQ_LENGTH,
    SEQ_TIME_GAP,
    FeatureSchema,
    StudentConfig,
)
from pipeline.models.inputs import InputSpec


def hash_ids(values: Tensor, slot: str, hash_buckets: int) -> Tensor:
    """Raw values → ids in [1, hash_buckets), mixed with the slot name like the data plane does (0 = missing)."""
    return 1 + torch.remainder(values * 2_654_435_761 + zlib.crc32(slot.encode()), hash_buckets - 1)


def random_inputs(specs: Sequence[InputSpec], dims: Mapping[str, int], generator: torch.Generator) -> dict[str, Tensor]:
    """Random tensors that satisfy `specs`, with symbols sized by `dims` (e.g. {"B": 4, "L": 8})."""
    inputs: dict[str, Tensor] = {}
    for spec in specs:
        shape = tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)
        if spec.name == SEQ_TIME_GAP:  # seconds, up to ~4 months
            inputs[spec.name] = torch.randint(0, 10_000_000, shape, generator=generator).to(torch.float32)
        elif spec.dtypes[0] == "float32":
            inputs[spec.name] = torch.rand(shape, generator=generator) * 5
        else:
            upper = dims[spec.max_value] if isinstance(spec.max_value, str) else spec.max_value
            inputs[spec.name] = torch.randint(0, upper + 1, shape, generator=generator)
    return inputs


def random_request(config: StudentConfig, n_candidates: int, generator: torch.Generator,
                   sequence_length: int | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One request for the student: user inputs (1 row) and `n_candidates` candidate rows."""
    length = sequence_length or config.sequence_length
    user = random_inputs(config.user_inputs(), {"B": 1, "L": length}, generator)
    return user, random_inputs(config.candidate_inputs(), {"B": n_candidates}, generator)


@dataclass
class PlantedClicks:
    """Requests of `n_candidates` rows each, request-major, with clicks and their true probability."""

    rows: dict[str, Tensor]
    labels: Tensor
    click_probability: Tensor
    n_candidates: int
    user_keys: tuple[str, ...]

    @property
    def n_requests(self) -> int:
        return self.labels.shape[0] // self.n_candidates

    def request(self, index: int) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """(user inputs with 1 row, candidate inputs, labels) of request `index`."""
        rows = slice(index * self.n_candidates, (index + 1) * self.n_candidates)
        user = {k: v[rows.start:rows.start + 1] for k, v in self.rows.items() if k in self.user_keys}
        candidates = {k: v[rows] for k, v in self.rows.items() if k not in self.user_keys}
        return user, candidates, self.labels[rows]

    def requests(self) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor], Tensor]]:
        return (self.request(i) for i in range(self.n_requests))

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
        """Shuffled (rows, labels) mini-batches for training."""
        order = torch.randperm(self.labels.shape[0], generator=generator)
        for start in range(0, order.shape[0], batch_size):
            index = order[start:start + batch_size]
            yield {k: v[index] for k, v in self.rows.items()}, self.labels[index]


class PlantedClickWorld:
    """Users with category tastes, items with categories and quality; clicks follow a known logit.

    logit = -1 + taste_weight · log(C · taste[user, category]) + quality[item] + 0.5 · activity[user]
            + 0.3 · hour_affinity[hour, category]

    The taste term is a user–item interaction: a model must combine user evidence (id, segment,
    the sequence drawn from the taste) with the candidate's category to recover it.
    """

    def __init__(self, schema: FeatureSchema, seed: int = 0, n_users: int = 3000, n_items: int = 2000,
                 n_categories: int = 24, taste_weight: float = 1.0) -> None:
        for slot in ("user_id", "user_age", "user_gender", "user_segment", "device", "hour", "scenario",
                     "item_id", "item_category"):
            if slot not in schema.user_slots + schema.item_slots:
                raise ValueError(f"the planted click world needs slot {slot!r}; the schema has "
                                 f"{schema.user_slots + schema.item_slots}")
        self.schema = schema
        self.n_users, self.n_items, self.n_categories = n_users, n_items, n_categories
        self.taste_weight = taste_weight
        g = torch.Generator().manual_seed(seed)
        self.segment = torch.randint(0, 6, (n_users,), generator=g)
        self.age = torch.randint(0, 8, (n_users,), generator=g)
        self.gender = torch.randint(0, 3, (n_users,), generator=g)
        self.device = torch.randint(0, 3, (n_users,), generator=g)
        segment_preference = torch.randn(6, n_categories, generator=g)
        self.taste = torch.softmax(1.5 * (segment_preference[self.segment]
                                          + 0.8 * torch.randn(n_users, n_categories, generator=g)), dim=-1)
        self.activity = torch.randn(n_users, generator=g)
        self.category = torch.randint(0, n_categories, (n_items,), generator=g)
        self.quality = 0.5 * torch.randn(n_items, generator=g)
        self.hour_affinity = torch.randn(24, n_categories, generator=g)
        self.items_by_category = [torch.nonzero(self.category == c).flatten() for c in range(n_categories)]

    def _sequence(self, users: Tensor, length: int, g: torch.Generator) -> dict[str, Tensor]:
        categories = torch.multinomial(self.taste[users], length, replacement=True, generator=g)
        picks = torch.rand(categories.shape, generator=g)
        items = torch.stack([self.items_by_category[c][int(p * len(self.items_by_category[c]))]
                             for c, p in zip(categories.flatten().tolist(), picks.flatten().tolist())])
        lengths = torch.randint(length // 2, length + 1, (users.shape[0],), generator=g)
        valid = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
        gaps = torch.cumsum(torch.randint(60, 86_400, (users.shape[0], length), generator=g), dim=1)
        item_ids = hash_ids(items.view(categories.shape), self.schema.item_id_slot, self.schema.hash_buckets)
        category_ids = hash_ids(categories, self.schema.item_category_slot, self.schema.hash_buckets)
        return {SEQ_ITEM_ID: item_ids * valid, SEQ_ITEM_CATEGORY: category_ids * valid, SEQ_LENGTH: lengths,
                SEQ_ACTION: torch.randint(0, self.schema.n_actions, categories.shape, generator=g) * valid,
                SEQ_TIME_GAP: (gaps * valid).to(torch.float32)}

    def sample(self, n_requests: int, n_candidates: int, sequence_length: int, seed: int) -> PlantedClicks:
        """Requests with uniformly drawn users and candidates; labels ~ Bernoulli(sigmoid(logit))."""
        g = torch.Generator().manual_seed(seed)
        users = torch.randint(0, self.n_users, (n_requests,), generator=g)
        hour = torch.randint(0, 24, (n_requests,), generator=g)
        user_rows: dict[str, Tensor] = {
            "user_id": users, "user_age": self.age[users], "user_gender": self.gender[users],
            "user_segment": self.segment[users], "device": self.device[users], "hour": hour,
            "scenario": torch.randint(0, 3, (n_requests,), generator=g),
            DENSE_USER: torch.cat([torch.exp(self.activity[users]).unsqueeze(1),
                                   torch.rand(n_requests, self.schema.n_dense_user - 1, generator=g)], dim=1),
            **self._sequence(users, sequence_length, g)}
        items = torch.randint(0, self.n_items, (n_requests, n_candidates), generator=g).flatten()
        repeat = {k: v.repeat_interleave(n_candidates, dim=0) for k, v in user_rows.items()}
        popularity = torch.exp(self.quality[items] + 0.3 * torch.randn(items.shape, generator=g))
        rows = {**repeat, "item_id": items, "item_category": self.category[items],
                DENSE_ITEM: torch.cat([popularity.unsqueeze(1),
                                       torch.rand(items.shape[0], self.schema.n_dense_item - 1, generator=g)], 1)}
        row_users, row_hours, categories = repeat["user_id"], repeat["hour"], rows["item_category"]
        logit = (-1.0 + self.taste_weight * torch.log(self.n_categories * self.taste[row_users, categories])
                 + self.quality[items] + 0.5 * self.activity[row_users]
                 + 0.3 * self.hour_affinity[row_hours, categories])
        probability = torch.sigmoid(logit)
        labels = torch.bernoulli(probability, generator=g)
        for slot in self.schema.user_slots + self.schema.item_slots:
            rows[slot] = hash_ids(rows[slot], slot, self.schema.hash_buckets)
        return PlantedClicks(rows, labels, probability, n_candidates, tuple(user_rows))
