"""Features and sequences never see a sample's own future; sequences truncate and handle empty history."""

from __future__ import annotations

from datetime import date, timedelta

from pipeline.tables import ITEM_FEATURES, SEQUENCES, USER_FEATURES, read_arrow
from spark_jobs import build_features, build_sequences
from tests.spark_jobs.events_factory import at, event, ingest

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)


def test_features_use_only_days_before_the_sample_date(spark, settings):
    ingest(spark, settings, [
        event("a", at(D1), user_id=1, item_id=10, click=1),
        event("b", at(D2, 9), user_id=1, item_id=10, click=0),
        event("future", at(D3), user_id=1, item_id=10, click=1),
    ])
    for day in (D1, D2, D3):
        build_features.run(spark, settings, day)
    users = read_arrow(settings, USER_FEATURES).to_pandas().set_index("date")
    assert D1 not in set(users.index)  # nothing happened before the first day
    on_d2 = users.loc[D2]
    assert (on_d2.impressions_1d, on_d2.clicks_1d, on_d2.impressions_30d) == (1, 1, 1)
    on_d3 = users.loc[D3]
    assert (on_d3.impressions_1d, on_d3.clicks_1d, on_d3.impressions_7d, on_d3.clicks_7d) == (1, 0, 2, 1)
    prior, strength = settings.features.ctr_prior, settings.features.ctr_prior_strength
    assert abs(on_d3.ctr_7d - (1 + strength * prior) / (2 + strength)) < 1e-12
    items = read_arrow(settings, ITEM_FEATURES).to_pandas().set_index("date")
    assert items.loc[D3].clicks_30d == 1  # the D3 click itself is not counted on D3


def test_sequences_hold_only_strictly_earlier_events_most_recent_first(spark, settings):
    length = settings.sequences.teacher_length
    history = [event(f"h{i}", at(D1) + timedelta(minutes=i), user_id=7, item_id=1000 + i, click=i % 2,
                     item_category=f"k{i}")
               for i in range(length + 5)]
    same_day = [
        event("s1", at(D2, 8), user_id=7, item_id=1, click=1, conversion=1),
        event("s2", at(D2, 9), user_id=7, item_id=2),
        event("tie", at(D2, 9), user_id=7, item_id=3),
        event("future", at(D3, 1), user_id=7, item_id=4),
        event("newcomer", at(D2, 10), user_id=99, item_id=5),
    ]
    ingest(spark, settings, history + same_day)
    build_sequences.run(spark, settings, D2)
    seqs = read_arrow(settings, SEQUENCES).to_pandas().set_index("event_id")

    assert set(seqs.index) == {"s1", "s2", "tie", "newcomer"}
    first = seqs.loc["s1"]
    assert len(first.history_items) == length  # truncated to L_teacher
    assert list(first.history_items[:3]) == [1000 + length + 4, 1000 + length + 3, 1000 + length + 2]
    assert list(first.history_categories[:3]) == [f"k{length + 4}", f"k{length + 3}", f"k{length + 2}"]
    assert all(gap > 0 for gap in first.history_gaps)
    assert list(first.history_gaps) == sorted(first.history_gaps)  # most recent first
    second = seqs.loc["s2"]
    assert second.history_items[0] == 1 and second.history_actions[0] == 3  # same-day click + conversion
    assert second.history_gaps[0] == 3600
    # Events at the very same timestamp are not "before" each other.
    assert 3 not in list(second.history_items) and 2 not in list(seqs.loc["tie"].history_items)
    assert 4 not in {item for items in seqs.history_items for item in items}  # the planted future event
    assert len(seqs.loc["newcomer"].history_items) == 0  # no history → empty sequence
