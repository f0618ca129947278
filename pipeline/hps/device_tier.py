"""The device tier: a batch's working set as one contiguous tensor on the training device.

`WorkingSet` is what the embedding modules see: the batch's unique keys (sorted), their weights
as one leaf tensor [n, dim] that collects gradients, and the key → row map of each input.
`DeviceTier` makes it; the rows reach the device through the shards' kernels (`kernels.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class _Bound:
    ids: object
    mask: torch.Tensor | None
    index: torch.Tensor


@dataclass
class WorkingSet:
    """One step's rows on the device and the map from each input's ids to them."""

    step: int
    keys: np.ndarray
    weights: torch.Tensor
    _bound: list[_Bound] = field(default_factory=list)
    _sorted_keys: torch.Tensor | None = None

    def bind(self, ids: object, mask: torch.Tensor | None, index: torch.Tensor) -> None:
        self._bound.append(_Bound(ids, mask, index))

    def index_of(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Row of `weights` for each id (same shape as `ids`); masked-out positions get row 0.

        The ids tensor given to `begin_step` maps with no search; any other must hold only keys of the step.
        """
        for bound in self._bound:
            if bound.ids is ids:
                if mask is not None and bound.mask is not None and bound.mask is not mask \
                        and bool((mask & ~bound.mask).any()):
                    raise ValueError("mask selects ids that were masked out when the step began")
                if bound.mask is None or mask is not None:
                    return bound.index
        return self._search(ids, mask)

    def _search(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self._sorted_keys is None:
            self._sorted_keys = torch.from_numpy(self.keys).to(self.weights.device)
        ids = ids.to(self.weights.device, torch.int64)
        wanted = ids if mask is None else torch.where(mask, ids, self._sorted_keys[:1].expand_as(ids))
        if len(self.keys) == 0:
            raise KeyError(f"id {int(ids.reshape(-1)[0])} is not in step {self.step}'s working set "
                           "(pass every input of the batch to begin_step / pipeline)")
        index = torch.searchsorted(self._sorted_keys, wanted).clamp_(max=len(self.keys) - 1)
        missing = self._sorted_keys[index] != wanted
        if bool(missing.any()):
            raise KeyError(f"id {int(wanted[missing][0])} is not in step {self.step}'s working set "
                           "(pass every input of the batch to begin_step / pipeline)")
        return index


class DeviceTier:
    """Makes a step's weights the leaf the embedding modules read and backward pushes from."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def working_set(self, step: int, keys: np.ndarray, weights: torch.Tensor, train: bool,
                    on_grad: Callable[[torch.Tensor], None]) -> WorkingSet:
        """Make `weights` the step's leaf; when training, its accumulated gradient is handed to `on_grad`."""
        leaf = weights.detach().to(self.device)
        if train:
            leaf.requires_grad_(True)
            leaf.register_post_accumulate_grad_hook(lambda t: on_grad(t.grad))
        return WorkingSet(step=step, keys=keys, weights=leaf)
