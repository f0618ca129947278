"""The SIM-style category hard search: counts and shares per action, broadcast over candidates."""

from __future__ import annotations

import math

import torch

from pipeline.models.sequence import CategoryHardSearch
from pipeline.slots import ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION


def _history() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Five real events then padding (category ids are hashed slots; 0 means missing).
    categories = torch.tensor([[5, 5, 7, 5, 9, 5, 0]])
    actions = torch.tensor([[ACTION_CLICK, ACTION_IMPRESSION, ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION,
                             ACTION_CLICK, 0]])
    valid = torch.arange(7).unsqueeze(0) < 5
    return categories, actions, valid


def test_statistics_count_the_candidates_category_per_action_and_ignore_padding():
    search = CategoryHardSearch(n_actions=4, embedding_dim=4, out_dim=3)
    categories, actions, valid = _history()
    stats, same = search.statistics(torch.tensor([5, 8, 0]), categories, actions, valid)

    log = math.log1p
    # Category 5: one impression of two, one click of two, one conversion of one; the 6th event is padding.
    expected_5 = [log(1), 1 / 2, log(1), 1 / 2, log(1), 1.0, log(5)]
    assert torch.allclose(stats[0], torch.tensor(expected_5))
    assert torch.allclose(stats[1], torch.tensor([0.0] * 6 + [log(5)]))  # an unseen category
    assert torch.allclose(stats[2], torch.tensor([0.0] * 6 + [log(5)]))  # a candidate without a category
    assert same[0].tolist() == [True, True, False, True, False, False, False]


def test_one_shared_history_gives_what_per_row_copies_give():
    torch.manual_seed(0)
    search = CategoryHardSearch(n_actions=4, embedding_dim=4, out_dim=3)
    categories, actions, valid = _history()
    events = torch.randn(1, 7, 4) * valid.unsqueeze(-1)
    candidates = torch.tensor([5, 7, 9, 8])
    shared = search(candidates, categories, actions, events, valid)
    copies = search(candidates, categories.expand(4, -1), actions.expand(4, -1), events.expand(4, -1, -1),
                    valid.expand(4, -1))
    assert shared.shape == (4, 3)
    assert torch.allclose(shared, copies)
    assert not torch.allclose(shared[0], shared[1])  # the candidate's category matters
