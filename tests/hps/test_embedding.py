"""The torch modules: shapes, pooling, gradients into the server, and clear errors on bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.hps import HPSConfig, ParameterServer, PSEmbedding, PSEmbeddingBag, bag_keys

DIM = 4


@pytest.fixture
def server(tmp_path: Path) -> ParameterServer:
    server = ParameterServer(HPSConfig(dim=DIM, num_keys=1000, init_scale=0.5, lr=0.1, ssd_path=tmp_path / "ssd"))
    yield server
    server.close()


def weights_of(server: ParameterServer, keys: list[int]) -> torch.Tensor:
    rows, found = server.read_rows(np.array(keys))
    assert found.all()
    return torch.from_numpy(rows[:, :DIM])


def test_embedding_returns_one_row_per_slot(server: ParameterServer) -> None:
    embed = PSEmbedding(server, ["user", "item"])
    ids = torch.tensor([[1, 2], [3, 1]])
    server.begin_step(ids)
    out = embed(ids)
    assert out.shape == (2, 2, DIM)
    torch.testing.assert_close(out[0, 0], out[1, 1])
    torch.testing.assert_close(out.detach().reshape(-1, DIM), weights_of(server, [1, 2, 3, 1]))


def test_unnamed_slots_accept_any_width(server: ParameterServer) -> None:
    embed = PSEmbedding(server, slots=None)
    ids = torch.tensor([[1, 2, 3, 4]])
    server.begin_step(ids)
    torch.testing.assert_close(embed(ids).detach()[0], weights_of(server, [1, 2, 3, 4]))


def test_bag_pools_only_the_valid_positions(server: ParameterServer) -> None:
    bag_mean = PSEmbeddingBag(server, "history", mode="mean")
    bag_sum = PSEmbeddingBag(server, "history", mode="sum")
    ids = torch.tensor([[5, 6, 7], [8, 999, 999]])
    lengths = torch.tensor([3, 1])
    server.begin_step(bag_keys(ids, lengths))
    rows = weights_of(server, [5, 6, 7, 8])
    torch.testing.assert_close(bag_mean(ids, lengths=lengths), torch.stack([rows[:3].mean(0), rows[3]]))
    torch.testing.assert_close(bag_sum(ids, mask=torch.tensor([[True, True, True], [True, False, False]])),
                               torch.stack([rows[:3].sum(0), rows[3]]))
    assert not server.read_rows(np.array([999]))[1][0]  # padding never got a row


def test_backward_pushes_gradients_to_the_server(server: ParameterServer) -> None:
    embed = PSEmbedding(server, ["slot"])
    ids = torch.tensor([[4], [4], [9]])
    server.begin_step(ids)
    before = weights_of(server, [4, 9]).clone()
    embed(ids).sum().backward()
    after = weights_of(server, [4, 9])
    # Row-wise Adagrad's first step moves every coordinate by lr (the sign of its gradient).
    torch.testing.assert_close(after - before, torch.full((2, DIM), -0.1))


def test_ids_outside_the_working_set_are_named(server: ParameterServer) -> None:
    embed = PSEmbedding(server, ["slot"])
    server.begin_step(torch.tensor([[1], [2]]))
    with pytest.raises(KeyError, match="id 3 is not in step 1's working set"):
        embed(torch.tensor([[3]]))


def test_a_second_backward_in_one_step_is_refused(server: ParameterServer) -> None:
    embed = PSEmbedding(server, ["slot"])
    ids = torch.tensor([[1]])
    server.begin_step(ids)
    out = embed(ids)
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        out.sum().backward()


@pytest.mark.parametrize(("ids", "error", "message"), [
    (torch.tensor([[1], [-4]]), ValueError, "key -4 at flat position 1 is negative"),
    (torch.tensor([[1], [1000]]), ValueError, r"key 1000 at flat position 1 is outside \[0, 1000\)"),
    (torch.tensor([[1.0]]), TypeError, "ids must be int64 or int32, got float32"),
    ([[1]], TypeError, "expected a torch.Tensor or numpy array"),
])
def test_bad_keys_raise_before_touching_any_tier(server: ParameterServer, ids: object, error: type,
                                                 message: str) -> None:
    with pytest.raises(error, match=message):
        server.begin_step(ids)
    assert server.stats().counts["keys"] == 0


def test_shape_mismatches_are_reported(server: ParameterServer) -> None:
    embed = PSEmbedding(server, ["user", "item"])
    bag = PSEmbeddingBag(server, "history")
    ids = torch.tensor([[1, 2, 3]])
    server.begin_step(ids)
    with pytest.raises(ValueError, match="3 columns but there are 2 slots"):
        embed(ids)
    with pytest.raises(ValueError, match="ids must have 2 dimensions"):
        embed(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="ids must be int64 or int32"):
        embed(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"lengths must be an integer tensor of shape \[1\]"):
        bag(ids, lengths=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="mask must be bool with the ids' shape"):
        bag(ids, mask=torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match=r"mask shape \[1, 2\] != ids shape \[1, 3\]"):
        server.begin_step((ids, torch.tensor([[True, False]])))


def test_load_rows_checks_dtype_and_shape(server: ParameterServer) -> None:
    with pytest.raises(ValueError, match=r"weights must be float32 \[2, 4\], got float64 \[2, 4\]"):
        server.load_rows(np.array([1, 2]), np.zeros((2, DIM)))
    server.load_rows(np.array([1, 2]), np.ones((2, DIM), np.float32))
    torch.testing.assert_close(weights_of(server, [1, 2]), torch.ones(2, DIM))


def test_forward_outside_a_step_says_what_to_call(server: ParameterServer) -> None:
    with pytest.raises(RuntimeError, match="call begin_step"):
        PSEmbedding(server, ["slot"])(torch.tensor([[1]]))
