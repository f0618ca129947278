"""Torch modules over the parameter server: the model sees embeddings, never tiers.

`PSEmbedding` looks up one id per named slot (`[B, S] -> [B, S, dim]`); `PSEmbeddingBag` pools a
variable-length sequence of ids (`[B, L]` with a mask or lengths `-> [B, dim]`). Both read the
current step's working set, so the ids must have been given to `begin_step` (or come from
`ParameterServer.pipeline`); the gradient flows into the working set, and backward pushes it to
the server. They own no parameters: dense layers around them stay ordinary torch parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.hps.server import ParameterServer


class _GatherRows(torch.autograd.Function):
    """weights[index] whose backward is one index_add_ into the working set.

    Hand-written: F.embedding's CPU backward sorts every id first (~30 ms for a 106K-id batch
    against ~7 ms for index_add_, measured with one thread on this machine).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = weights.shape[0]
        return weights.index_select(0, index.reshape(-1)).view(*index.shape, weights.shape[1])

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        dim = grad.shape[-1]
        weights_grad = torch.zeros((ctx.rows, dim), dtype=grad.dtype, device=grad.device)
        weights_grad.index_add_(0, index.reshape(-1), grad.reshape(-1, dim))
        return weights_grad, None


def _check_ids(ids: torch.Tensor, dims: int, what: str) -> None:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{what}: ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{what}: ids must be int64 or int32, got {ids.dtype}")
    if ids.dim() != dims:
        raise ValueError(f"{what}: ids must have {dims} dimensions, got shape {list(ids.shape)}")


class PSEmbedding(nn.Module):
    """One embedding per named slot: forward(ids [B, S]) -> [B, S, dim], S = len(slots).

    With ``slots=None`` the ids share one hashed key space and any width S is accepted (a model
    whose tokenizer looks up slots and sequences through one provider).
    """

    def __init__(self, server: ParameterServer, slots: Sequence[str] | None) -> None:
        super().__init__()
        if slots is not None and not slots:
            raise ValueError("PSEmbedding needs at least one slot name (or slots=None for a shared key space)")
        self.server = server
        self.slots = list(slots) if slots is not None else None
        self.dim = server.dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _check_ids(ids, 2, "PSEmbedding")
        if self.slots is not None and ids.shape[1] != len(self.slots):
            raise ValueError(f"PSEmbedding: ids have {ids.shape[1]} columns but there are {len(self.slots)} slots "
                             f"{self.slots}")
        working_set = self.server.working_set
        return _GatherRows.apply(working_set.weights, working_set.index_of(ids))

    def extra_repr(self) -> str:
        return f"slots={self.slots}, dim={self.dim}"


class PSEmbeddingBag(nn.Module):
    """A pooled sequence slot: forward(ids [B, L], mask [B, L] or lengths [B]) -> [B, dim]."""

    def __init__(self, server: ParameterServer, slot: str, mode: Literal["sum", "mean"] = "mean") -> None:
        super().__init__()
        if mode not in ("sum", "mean"):
            raise ValueError(f"PSEmbeddingBag: mode must be 'sum' or 'mean', got {mode!r}")
        self.server = server
        self.slot = slot
        self.mode = mode
        self.dim = server.dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        _check_ids(ids, 2, f"PSEmbeddingBag[{self.slot}]")
        mask = self._mask(ids, mask, lengths)
        working_set = self.server.working_set
        index = working_set.index_of(ids, mask)
        weights = None if mask is None else mask.to(working_set.weights.dtype)
        pooled = F.embedding_bag(index, working_set.weights, mode="sum", per_sample_weights=weights)
        if self.mode == "sum":
            return pooled
        count = torch.full((ids.shape[0], 1), ids.shape[1], dtype=pooled.dtype, device=pooled.device) \
            if mask is None else mask.sum(dim=1, keepdim=True).to(pooled.dtype)
        return pooled / count.clamp_(min=1)

    def _mask(self, ids: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor | None:
        what = f"PSEmbeddingBag[{self.slot}]"
        if mask is not None and lengths is not None:
            raise ValueError(f"{what}: give a mask or lengths, not both")
        if lengths is not None:
            if lengths.shape != (ids.shape[0],) or lengths.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"{what}: lengths must be an integer tensor of shape [{ids.shape[0]}], "
                                 f"got {lengths.dtype} {list(lengths.shape)}")
            if bool((lengths < 0).any()) or bool((lengths > ids.shape[1]).any()):
                raise ValueError(f"{what}: lengths must lie in [0, {ids.shape[1]}]")
            return torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None].to(ids.device)
        if mask is not None and (mask.dtype != torch.bool or mask.shape != ids.shape):
            raise ValueError(f"{what}: mask must be bool with the ids' shape {list(ids.shape)}, "
                             f"got {mask.dtype} {list(mask.shape)}")
        return mask

    def extra_repr(self) -> str:
        return f"slot={self.slot!r}, mode={self.mode}, dim={self.dim}"


def bag_keys(ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (ids, mask) step input for a sequence given by lengths, to pass to `begin_step`/`pipeline`."""
    return ids, torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None].to(ids.device)
