"""Training batches depend on a table's content, not on its file layout: a date is read in event-id order."""

from datetime import date

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from pipeline.config import load_settings
from pipeline.data.batches import iter_arrow_batches
from pipeline.tables import TRAINING_SAMPLES, table_path

DAYS = [date(2026, 1, 1), date(2026, 1, 2)]
ROWS = 120  # per date: 5 users × 4 requests × a slate of 6, the users' requests interleaved


def _samples() -> pa.Table:
    n = np.arange(2 * ROWS)
    request, position = n // 6, n % 6
    return pa.table({
        "sample_id": (n * 7919 % 1009).astype(np.int64),
        "event_id": [f"e-{i // ROWS}-{r % 5}-{r:03d}-{p}" for i, r, p in zip(n, request, position)],
        "user_id": (request % 5).astype(np.int64),
        "date": pa.array([DAYS[i // ROWS] for i in n], pa.date32()),
    })


def _write(settings, order: np.ndarray, files: int) -> None:
    """`training_samples` holding `_samples()` in `order`, split into `files` appends."""
    rows = _samples().take(order)
    for part in np.array_split(np.arange(rows.num_rows), files):
        write_deltalake(table_path(settings, TRAINING_SAMPLES), rows.take(part), partition_by=["date"], mode="append")


def _batches(settings, seed=None, rank=0, world=1, columns=("sample_id",)) -> list[list[int]]:
    return [b.column(columns[0]).to_pylist()
            for b in iter_arrow_batches(settings, DAYS, list(columns), 16, rank, world, seed)]


def test_batches_follow_the_content_not_the_file_layout(settings, tmp_path):
    other = load_settings("tiny", lakehouse={"root": str(tmp_path / "other")})
    _write(settings, np.arange(2 * ROWS), files=1)
    _write(other, np.random.default_rng(3).permutation(2 * ROWS), files=7)
    assert _batches(settings) == _batches(other)
    assert _batches(settings, seed=5) == _batches(other, seed=5)
    assert _batches(settings, rank=1, world=2) == _batches(other, rank=1, world=2)


def test_a_date_is_read_in_event_id_order_and_a_seed_only_permutes_within_a_batch(settings):
    _write(settings, np.random.default_rng(0).permutation(2 * ROWS), files=3)
    expected = _samples().to_pandas().sort_values(["date", "event_id"])
    plain = _batches(settings)
    assert [len(b) for b in plain] == [16] * 15
    assert sum(plain, []) == expected["sample_id"].tolist()
    # The event ids group each user's slates; only the columns asked for come back.
    assert sum(_batches(settings, columns=("user_id",)), []) == expected["user_id"].tolist()
    assert set(next(iter_arrow_batches(settings, DAYS, ["sample_id"], 16)).schema.names) == {"sample_id"}
    shuffled = _batches(settings, seed=1)
    assert shuffled != plain and [sorted(b) for b in shuffled] == [sorted(b) for b in plain]
    assert shuffled == _batches(settings, seed=1)
    # Ranks share the rows disjointly.
    halves = sum(_batches(settings, rank=0, world=2) + _batches(settings, rank=1, world=2), [])
    assert sorted(halves) == sorted(sum(plain, []))
