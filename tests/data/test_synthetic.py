"""The synthetic generator: deterministic by seed and date, with its planted structure really there."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline.config import GeneratorConfig
from pipeline.data.landing import LANDING_FIELDS, landing_dir, read_landing, write_landing
from pipeline.data.synthetic import TRUTH_FIELDS, build_world, generate, generate_day


def days_of(cfg: GeneratorConfig) -> list[date]:
    return [cfg.start_date + timedelta(days=i) for i in range(cfg.n_days)]


def all_days(cfg: GeneratorConfig) -> pd.DataFrame:
    world = build_world(cfg)
    return pd.concat([generate_day(cfg, day, world) for day in days_of(cfg)], ignore_index=True)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = pd.Series(scores).rank().to_numpy()
    positives = labels.sum()
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives)))


def test_same_seed_gives_identical_frames_and_another_seed_does_not(small_cfg: GeneratorConfig) -> None:
    day = small_cfg.start_date
    first = generate_day(small_cfg, day)
    pd.testing.assert_frame_equal(first, generate_day(small_cfg, day))
    other = generate_day(small_cfg.model_copy(update={"seed": small_cfg.seed + 1}), day)
    assert not first["item_id"].equals(other["item_id"])


def test_any_date_regenerates_alone_identically(tmp_path: Path, small_cfg: GeneratorConfig) -> None:
    in_sequence = generate(small_cfg, tmp_path / "all", progress=False).files
    third = small_cfg.start_date + timedelta(days=2)
    alone = generate_day(small_cfg, third)  # a fresh world, no earlier dates generated
    [rewritten] = write_landing(alone[list(LANDING_FIELDS)], tmp_path / "alone", "synthetic", third, "parquet")
    [original] = [path for path in in_sequence if path.parent.name == f"date={third}"]
    assert rewritten.read_bytes() == original.read_bytes()


def test_frames_hold_the_landing_fields_then_the_truth(small_cfg: GeneratorConfig) -> None:
    frame = generate_day(small_cfg, small_cfg.start_date)
    assert list(frame.columns) == [*LANDING_FIELDS, *TRUTH_FIELDS]
    assert frame["event_id"].is_unique
    assert frame["event_time"].is_monotonic_increasing


def test_every_event_time_falls_on_its_date(small_cfg: GeneratorConfig) -> None:
    for day in days_of(small_cfg):
        times = generate_day(small_cfg, day)["event_time"]
        assert (times.dt.tz_convert("UTC").dt.date == day).all()
        assert times.dt.hour.nunique() > 12  # spread over the day


def test_slates_are_distinct_items_at_positions_0_to_k(small_cfg: GeneratorConfig) -> None:
    frame = generate_day(small_cfg, small_cfg.start_date)
    request = frame["event_id"].str.rsplit("-", n=1).str[0]
    slates = frame.groupby(request)
    assert (slates["item_id"].nunique() == small_cfg.slate_size).all()
    assert (slates["position"].apply(sorted).map(tuple) == tuple(range(small_cfg.slate_size))).all()
    assert (slates["event_time"].nunique() == 1).all() and (slates["scenario"].nunique() == 1).all()


def test_exposure_follows_zipf_popularity(small_cfg: GeneratorConfig) -> None:
    world = build_world(small_cfg)
    frame = all_days(small_cfg)
    feed = frame[frame["scenario"] != "random"]
    shown = np.bincount(feed["item_id"], minlength=small_cfg.n_items)
    assert spearmanr(shown, world.item_popularity).statistic > 0.6
    top_tenth = np.argsort(-world.item_popularity)[: small_cfg.n_items // 10]
    assert shown[top_tenth].sum() > 0.4 * shown.sum()
    random_shown = np.bincount(frame.loc[frame["scenario"] == "random", "item_id"], minlength=small_cfg.n_items)
    assert random_shown[top_tenth].sum() < 0.2 * random_shown.sum()


def test_click_rate_falls_with_position(small_cfg: GeneratorConfig) -> None:
    frame = all_days(small_cfg)
    ctr = frame.groupby("position")["click"].mean()
    assert spearmanr(ctr.index, ctr.to_numpy()).statistic < -0.9
    unbiased = frame[frame["scenario"] == "random"]
    top, bottom = unbiased[unbiased["position"] < 2], unbiased[unbiased["position"] >= 4]
    assert top["click"].mean() > 1.5 * bottom["click"].mean()


def test_random_scenario_share_matches_config_and_logging_policy_is_biased(small_cfg: GeneratorConfig) -> None:
    frame = all_days(small_cfg)
    share = (frame["scenario"] == "random").mean()
    assert share == pytest.approx(small_cfg.random_exposure_fraction, abs=0.02)
    relevance = frame.groupby("scenario", observed=True)["true_relevance_probability"].mean()
    assert relevance["feed"] > 1.5 * relevance["random"]  # the policy shows what users like


def test_interest_drift_changes_users_category_mix(small_cfg: GeneratorConfig) -> None:
    def mix_change(drift: float) -> float:
        cfg = small_cfg.model_copy(update={"interest_drift": drift, "requests_per_user_per_day": 20.0,
                                           "n_users": 150, "n_days": 6})
        world = build_world(cfg)
        first, last = (generate_day(cfg, day, world) for day in (days_of(cfg)[0], days_of(cfg)[-1]))
        mixes = [pd.crosstab(f["user_id"], f["item_category"], normalize="index") for f in (first, last)]
        users = mixes[0].index.intersection(mixes[1].index)
        return float((mixes[0].loc[users] - mixes[1].loc[users]).abs().sum(axis=1).mean() / 2)

    assert mix_change(0.6) > 1.5 * mix_change(0.0)


def test_interest_correlation_decays_as_configured(small_cfg: GeneratorConfig) -> None:
    world = build_world(small_cfg.model_copy(update={"n_users": 4000, "interest_drift": 0.2}))
    users = np.arange(4000)
    start = world.current_interest(users, small_cfg.start_date)
    for lag in (1, 3):
        later = world.current_interest(users, small_cfg.start_date + timedelta(days=lag))
        cosine = (start * later).sum(1) / np.linalg.norm(start, axis=1) / np.linalg.norm(later, axis=1)
        assert cosine.mean() == pytest.approx(0.8**lag, abs=0.05)


def test_true_click_probability_is_calibrated_and_predicts_clicks(small_cfg: GeneratorConfig) -> None:
    frame = all_days(small_cfg)
    p = frame["true_click_probability"].to_numpy()
    assert np.allclose(p, frame["true_examine_probability"] * frame["true_relevance_probability"])
    assert abs(frame["click"].sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    assert auc(frame["click"].to_numpy(), p) > 0.75
    assert (frame.loc[frame["click"] == 0, ["conversion"]] == 0).all().all()
    assert frame.loc[frame["click"] == 0, "dwell_seconds"].isna().all()
    assert (frame.loc[frame["click"] == 1, "dwell_seconds"] > 0).all()


def test_same_day_clicks_raise_relevance_of_similar_items(small_cfg: GeneratorConfig) -> None:
    world = build_world(small_cfg)
    day = small_cfg.start_date
    frame = generate_day(small_cfg, day, world)
    relevance = frame["true_relevance_probability"].to_numpy()
    momentum = (np.log(relevance / (1 - relevance))
                - world.relevance_logit(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), day))
    first_request = frame["event_id"].str.split("-").str[3] == "0"
    assert np.allclose(momentum[first_request], 0)
    # Clicks the user made on the item's category in earlier requests of the day.
    keys = ["user_id", "item_category", "event_time"]
    clicks = frame.groupby(keys, observed=True)["click"].sum()
    earlier = (clicks.groupby(level=[0, 1], observed=True).cumsum() - clicks).rename("earlier")
    clicked_before = frame.join(earlier, on=keys)["earlier"].to_numpy() > 0
    assert momentum[clicked_before].mean() > momentum[~clicked_before & ~first_request].mean() + 0.2


def test_long_history_reveals_the_long_term_taste_a_short_one_misses(small_cfg: GeneratorConfig) -> None:
    cfg = small_cfg.model_copy(update={"n_days": 10, "n_users": 300, "requests_per_user_per_day": 4.0})
    world = build_world(cfg)
    frame = all_days(cfg).sort_values(["event_time", "position"])
    surprise = frame["click"] - frame.groupby("position")["click"].transform("mean")

    def taste_estimate(window: int) -> np.ndarray:
        recent = frame.assign(surprise=surprise).groupby("user_id").tail(window)
        estimate = np.zeros((cfg.n_users, world.item_vector.shape[1]))
        np.add.at(estimate, recent["user_id"].to_numpy(),
                  world.item_vector[recent["item_id"].to_numpy()] * recent["surprise"].to_numpy()[:, None])
        return np.mean([np.corrcoef(estimate[:, d], world.user_long_term[:, d])[0, 1]
                        for d in range(estimate.shape[1])])

    assert taste_estimate(window=10_000) > taste_estimate(window=30) + 0.05


def test_generate_writes_every_date_and_keeps_truth_apart(tmp_path: Path, small_cfg: GeneratorConfig) -> None:
    summary = generate(small_cfg, tmp_path / "landing", truth_root=tmp_path / "truth", progress=False)
    assert summary.days == days_of(small_cfg)
    landing_dirs = [landing_dir(tmp_path / "landing", "synthetic", day) for day in summary.days]
    assert [path.parent for path in summary.files] == landing_dirs
    assert summary.events > 0 and 0 < summary.clicks < summary.events
    for day in summary.days:
        landing = read_landing(tmp_path / "landing", "synthetic", day)
        truth = pd.read_parquet(landing_dir(tmp_path / "truth", "synthetic", day))
        assert list(landing.columns) == list(LANDING_FIELDS)
        assert list(truth.columns) == ["event_id", *TRUTH_FIELDS]
        assert truth["event_id"].tolist() == landing["event_id"].tolist()


def test_too_few_items_for_a_slate_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"n_items \(5\) must be ≥ generator.slate_size \(10\)"):
        build_world(GeneratorConfig(n_items=5, slate_size=10, n_categories=2))
