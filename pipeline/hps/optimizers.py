"""Sparse optimizers whose state is stored in the row, next to the weights, in every tier.

A row is ``[weights (dim) | state (state_width)]``. Each update touches only the rows of one
batch, in place:

- ``rowwise_adagrad``: one accumulator per row, G += mean(g²); w -= lr·g/(√G + eps)
  (fbgemm's EXACT_ROWWISE_ADAGRAD, the production choice: 1 float of state instead of dim).
- ``adagrad``: element-wise, exactly `torch.optim.Adagrad` (no lr decay, no weight decay;
  fbgemm's EXACT_ADAGRAD).
- ``adam``: lazy Adam, exactly `torch.optim.SparseAdam`: moments of touched rows only, bias
  correction by the global optimizer step.

Every rule takes an L2 `weight_decay`: a touched row's gradient gets `weight_decay · w` added before
the update (fbgemm's `WeightDecayMode.L2`; torch's coupled `weight_decay`). It shrinks rows that
are trained often towards 0, which is what keeps ids seen through a biased exposure from memorising it.

The first two run as fbgemm's fused backward + update (`kernels.py`, named by `fbgemm_name`);
fbgemm's CPU build has no Adam, so `Adam.step` is the update written in torch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

OptimizerName = Literal["rowwise_adagrad", "adagrad", "adam"]


class SparseOptimizer:
    """Row-wise update rule; subclasses define the state layout and the step."""

    name: OptimizerName
    fbgemm_name: str | None = None  # fbgemm's EmbOptimType value when its fused kernel implements the rule

    def __init__(self, dim: int, lr: float, eps: float, initial_accumulator: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0) -> None:
        self.dim = dim
        self.lr = lr
        self.eps = eps
        self.initial_accumulator = initial_accumulator
        self.betas = betas
        self.weight_decay = weight_decay

    @property
    def state_width(self) -> int:
        raise NotImplementedError

    @property
    def width(self) -> int:
        return self.dim + self.state_width

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros((n, self.state_width), dtype=torch.float32)

    def step(self, rows: torch.Tensor, grads: torch.Tensor, step: int) -> None:
        """Update `rows` [n, width] in place from `grads` [n, dim]; `step` counts updates from 1."""
        raise NotImplementedError


class RowWiseAdagrad(SparseOptimizer):
    name = "rowwise_adagrad"
    fbgemm_name = "exact_row_wise_adagrad"

    @property
    def state_width(self) -> int:
        return 1

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.full((n, 1), self.initial_accumulator, dtype=torch.float32)


class Adagrad(SparseOptimizer):
    name = "adagrad"
    fbgemm_name = "exact_adagrad"

    @property
    def state_width(self) -> int:
        return self.dim

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.full((n, self.dim), self.initial_accumulator, dtype=torch.float32)


class Adam(SparseOptimizer):
    name = "adam"

    @property
    def state_width(self) -> int:
        return 2 * self.dim

    def step(self, rows: torch.Tensor, grads: torch.Tensor, step: int) -> None:
        beta1, beta2 = self.betas
        weights = rows[:, :self.dim]
        exp_avg, exp_avg_sq = rows[:, self.dim:2 * self.dim], rows[:, 2 * self.dim:]
        if self.weight_decay:
            grads = grads.add(weights, alpha=self.weight_decay)
        exp_avg.lerp_(grads, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        step_size = self.lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        weights.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(self.eps), value=-step_size)


OPTIMIZERS: dict[str, type[SparseOptimizer]] = {cls.name: cls for cls in (RowWiseAdagrad, Adagrad, Adam)}


def make_optimizer(name: OptimizerName, dim: int, lr: float, eps: float, initial_accumulator: float,
                   betas: tuple[float, float], weight_decay: float = 0.0) -> SparseOptimizer:
    """The optimizer named in `HPSConfig.optimizer`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown sparse optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](dim=dim, lr=lr, eps=eps, initial_accumulator=initial_accumulator, betas=betas,
                            weight_decay=weight_decay)
