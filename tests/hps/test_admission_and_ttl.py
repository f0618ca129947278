"""Admission (a row only after N sightings) and TTL expiry, observed through the server."""

from pathlib import Path

import numpy as np
import torch

from pipeline.hps import HPSConfig, ParameterServer, PSEmbedding
from pipeline.hps.hashing import initial_rows
from pipeline.hps.memory_tier import SLOT_OVERHEAD_BYTES

DIM = 4


def server_for(tmp_path: Path, **overrides: object) -> tuple[ParameterServer, PSEmbedding]:
    config = HPSConfig(dim=DIM, lr=0.5, init_scale=0.3, ssd_path=tmp_path / "ssd", prefetch=False, **overrides)
    server = ParameterServer(config)
    return server, PSEmbedding(server, ["slot"])


def step(server: ParameterServer, embed: PSEmbedding, keys: list[int]) -> torch.Tensor:
    ids = torch.tensor(keys).reshape(-1, 1)
    server.begin_step(ids)
    out = embed(ids)
    out.sum().backward()
    return out.detach().reshape(len(keys), DIM)


def has_row(server: ParameterServer, key: int) -> bool:
    return bool(server.read_rows(np.array([key]))[1][0])


def test_a_key_gets_a_row_only_after_it_is_seen_admit_after_times(tmp_path: Path) -> None:
    server, embed = server_for(tmp_path, admit_after=3)
    for _ in range(2):
        out = step(server, embed, [7, 8])
        assert out.abs().sum() == 0        # unseen keys read the default (zero) row ...
        assert not has_row(server, 7)      # ... and their gradients are not written
    out = step(server, embed, [7])
    np.testing.assert_array_equal(out.numpy()[0], initial_rows(np.array([7]), DIM, 0.3, 0)[0])
    assert has_row(server, 7) and not has_row(server, 8)
    assert server.stats().counts["rows_admitted"] == 1


def test_occurrences_within_one_batch_count_towards_admission(tmp_path: Path) -> None:
    server, embed = server_for(tmp_path, admit_after=3)
    step(server, embed, [5, 5, 5, 6])
    assert has_row(server, 5) and not has_row(server, 6)


def test_rows_unused_for_the_ttl_expire_from_memory_and_ssd(tmp_path: Path) -> None:
    # Two rows of memory: key 1 is pushed out to SSD before it expires there.
    server, embed = server_for(tmp_path, ttl_steps=3, expire_every=1,
                               memory_capacity_bytes=2 * (4 * (DIM + 1) + SLOT_OVERHEAD_BYTES))
    step(server, embed, [1])
    step(server, embed, [2])
    step(server, embed, [3])
    assert has_row(server, 1) and server.shards[0].ssd.contains(np.array([1]))[0]
    step(server, embed, [3])                                 # step 4: key 1, last used at 1, is kept (4 - 3 = 1)
    assert has_row(server, 1)
    step(server, embed, [3])                                 # step 5: expired everywhere
    assert not has_row(server, 1) and not server.shards[0].ssd.contains(np.array([1]))[0]
    assert has_row(server, 3)
    assert server.stats().counts["rows_expired"] >= 1
    out = step(server, embed, [1])                           # seen again: a new row from its initial value
    np.testing.assert_array_equal(out.numpy()[0], initial_rows(np.array([1]), DIM, 0.3, 0)[0])


def test_expired_keys_forget_their_admission_count(tmp_path: Path) -> None:
    server, embed = server_for(tmp_path, admit_after=2, ttl_steps=2, expire_every=1)
    step(server, embed, [9])
    for _ in range(3):
        step(server, embed, [10])
    step(server, embed, [9])
    assert not has_row(server, 9)
    step(server, embed, [9])
    assert has_row(server, 9)
