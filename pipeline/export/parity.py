"""Parity of two request scorers on labelled requests: max |Δlogit| and ΔAUC.

Used for W8A16 against fp32 and for an exported artifact against its module; a scorer is anything
callable as ``scorer(user_inputs, candidate_inputs) -> FloatTensor[N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from pipeline.metrics import auc

Scorer = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]


@dataclass(frozen=True)
class ParityReport:
    """How far `candidate` is from `reference` on the same requests."""

    n_requests: int
    n_rows: int
    max_abs_logit_diff: float
    auc_reference: float
    auc_candidate: float

    @property
    def delta_auc(self) -> float:
        return self.auc_candidate - self.auc_reference

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "delta_auc": self.delta_auc}


def parity_report(reference: Scorer, candidate: Scorer,
                  requests: Iterable[tuple[Mapping[str, Tensor], Mapping[str, Tensor], Tensor]]) -> ParityReport:
    """Score every (user, candidates, labels) request with both scorers and compare."""
    reference_logits, candidate_logits, labels = [], [], []
    with torch.inference_mode():
        for user, candidates, request_labels in requests:
            reference_logits.append(reference(user, candidates).float())
            candidate_logits.append(candidate(user, candidates).float())
            labels.append(request_labels)
    if not labels:
        raise ValueError("parity_report needs at least one request")
    ref, cand, y = torch.cat(reference_logits), torch.cat(candidate_logits), torch.cat(labels)
    return ParityReport(n_requests=len(labels), n_rows=y.numel(), max_abs_logit_diff=float((ref - cand).abs().max()),
                        auc_reference=auc(y.numpy(), ref.numpy()), auc_candidate=auc(y.numpy(), cand.numpy()))
