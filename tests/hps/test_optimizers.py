"""Sparse optimizer updates through all three tiers equal a dense torch reference on the rows touched."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.hps import HPSConfig, ParameterServer, PSEmbedding
from pipeline.hps.hashing import initial_rows
from pipeline.hps.memory_tier import SLOT_OVERHEAD_BYTES

NUM_IDS, DIM, STEPS = 60, 4, 8


def batches(all_rows_each_step: bool) -> list[torch.Tensor]:
    rng = np.random.default_rng(3)
    if all_rows_each_step:
        return [torch.from_numpy(rng.permutation(NUM_IDS).reshape(-1, 3)) for _ in range(STEPS)]
    return [torch.from_numpy(rng.integers(0, NUM_IDS // 2, (4, 3)) * 2) for _ in range(STEPS)]


def loss_of(embedded: torch.Tensor, step: int) -> torch.Tensor:
    target = torch.linspace(-1, 1, DIM) * (step + 1)
    return ((embedded * target).sum(-1) - 0.5).square().mean()


def train_server(tmp_path: Path, optimizer: str, data: list[torch.Tensor], memory_rows: int = 24,
                 weight_decay: float = 0.0) -> ParameterServer:
    # 24 rows of memory for 30 keys, two batches of ≤ 12 pinned at a time: rows travel to SSD and back.
    config = HPSConfig(dim=DIM, optimizer=optimizer, lr=0.1, eps=1e-8, init_scale=0.5, betas=(0.8, 0.95),
                       weight_decay=weight_decay,
                       ssd_path=tmp_path / "ssd", memory_capacity_bytes=memory_rows * (4 * (DIM * 3) + SLOT_OVERHEAD_BYTES),
                       evict_fraction=0.1, segment_rows=8)
    server = ParameterServer(config)
    embed = PSEmbedding(server, ["a", "b", "c"])
    for step, ids in enumerate(server.pipeline(data, keys_of=lambda b: [b])):
        loss_of(embed(ids), step).backward()
    return server


def train_reference(optimizer: str, data: list[torch.Tensor], weight_decay: float = 0.0) -> torch.Tensor:
    weight = torch.from_numpy(initial_rows(np.arange(NUM_IDS), DIM, 0.5, 0))
    embed = torch.nn.Embedding(NUM_IDS, DIM, sparse=optimizer == "sparse_adam", _weight=weight.clone())
    make = {"adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-8, weight_decay=weight_decay),
            "sparse_adam": lambda p: torch.optim.SparseAdam(p, lr=0.1, betas=(0.8, 0.95), eps=1e-8),
            "adam": lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.8, 0.95), eps=1e-8,
                                               weight_decay=weight_decay)}[optimizer]
    opt = make(embed.parameters())
    for step, ids in enumerate(data):
        opt.zero_grad()
        loss_of(embed(ids), step).backward()
        opt.step()
    return embed.weight.detach()


def train_rowwise_reference(data: list[torch.Tensor], weight_decay: float = 0.0) -> torch.Tensor:
    """fbgemm's exact row-wise Adagrad (L2 weight decay: g + wd·w) written out on a dense tensor."""
    weight = torch.from_numpy(initial_rows(np.arange(NUM_IDS), DIM, 0.5, 0)).requires_grad_()
    accumulator = torch.zeros(NUM_IDS, 1)
    for step, ids in enumerate(data):
        weight.grad = None
        loss_of(weight[ids], step).backward()
        with torch.no_grad():
            touched = torch.unique(ids)
            grad = weight.grad[touched] + weight_decay * weight[touched]
            accumulator[touched] += grad.square().mean(dim=1, keepdim=True)
            weight[touched] -= 0.1 * grad / (accumulator[touched].sqrt() + 1e-8)
    return weight.detach()


def server_weights(server: ParameterServer) -> tuple[torch.Tensor, np.ndarray]:
    rows, found = server.read_rows(np.arange(NUM_IDS))
    return torch.from_numpy(rows[:, :DIM]), found


@pytest.mark.parametrize(("optimizer", "reference"), [("adagrad", "adagrad"), ("adam", "sparse_adam")])
def test_updates_equal_torch_optimizers_on_the_rows_touched(tmp_path: Path, optimizer: str, reference: str) -> None:
    data = batches(all_rows_each_step=False)
    server = train_server(tmp_path, optimizer, data)
    expected = train_reference(reference, data)
    weights, found = server_weights(server)
    touched = torch.unique(torch.cat([b.reshape(-1) for b in data])).numpy()
    assert found.tolist() == np.isin(np.arange(NUM_IDS), touched).tolist()
    torch.testing.assert_close(weights[touched], expected[touched], rtol=1e-5, atol=1e-6)
    assert server.stats().counts["rows_ssd_to_memory"] > 0
    server.close()


def test_adam_equals_dense_torch_adam_when_every_row_is_touched(tmp_path: Path) -> None:
    data = batches(all_rows_each_step=True)
    server = train_server(tmp_path, "adam", data, memory_rows=2 * NUM_IDS)
    weights, found = server_weights(server)
    assert found.all()
    # torch's Adam adds eps after bias correction, SparseAdam before: they differ by ~5e-5 here too.
    torch.testing.assert_close(weights, train_reference("adam", data), rtol=1e-3, atol=1e-4)
    server.close()


def test_rowwise_adagrad_keeps_one_accumulator_per_row_with_the_row(tmp_path: Path) -> None:
    data = batches(all_rows_each_step=False)
    server = train_server(tmp_path, "rowwise_adagrad", data)
    expected = train_rowwise_reference(data)
    weights, found = server_weights(server)
    torch.testing.assert_close(weights[found], expected[torch.from_numpy(found)], rtol=1e-5, atol=1e-6)
    assert server.optimizer.width == DIM + 1
    server.close()


def test_rowwise_adagrad_is_exact_when_a_step_spans_several_bags_of_every_feature(tmp_path: Path) -> None:
    # 75 ids, ~45 unique per step: the kernel deals them over more than one bag of each of its 32 features.
    rng = np.random.default_rng(5)
    data = [torch.from_numpy(rng.integers(0, NUM_IDS, (25, 3))) for _ in range(STEPS)]
    assert all(32 < len(torch.unique(b)) < 64 for b in data)
    server = train_server(tmp_path, "rowwise_adagrad", data, memory_rows=3 * NUM_IDS)
    weights, found = server_weights(server)
    assert found.all()
    torch.testing.assert_close(weights, train_rowwise_reference(data), rtol=1e-5, atol=1e-6)
    server.close()


@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "adam"])
def test_weight_decay_adds_l2_to_the_gradient(tmp_path: Path, optimizer: str) -> None:
    # Every row touched every step, so the dense torch optimizers (whose decay reaches every row) are exact
    # references.
    data = batches(all_rows_each_step=True)
    decayed, plain = (server_weights(train_server(tmp_path / name, optimizer, data, 2 * NUM_IDS, decay))[0]
                      for name, decay in (("decayed", 0.05), ("plain", 0.0)))
    expected = (train_rowwise_reference(data, weight_decay=0.05) if optimizer == "rowwise_adagrad"
                else train_reference("adam", data, weight_decay=0.05))
    tolerance = {"rtol": 1e-3, "atol": 1e-4} if optimizer == "adam" else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(decayed, expected, **tolerance)
    assert decayed.norm() < plain.norm()


def test_weight_decay_with_elementwise_adagrad_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"weight_decay=0.01 needs optimizer 'rowwise_adagrad' or 'adam'"):
        HPSConfig(optimizer="adagrad", weight_decay=0.01, ssd_path=tmp_path)
