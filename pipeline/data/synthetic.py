"""Synthetic impression logs with planted, known structure.

A fixed world (items, users, tastes) is drawn from the seed; each day is drawn from its own RNG
(seed, date, user block), so any date regenerates alone and identically. Planted structure:

- items: Zipf popularity over a random rank order, a category, a latent vector near its category's;
- users: age, gender, segment, a primary device, a heavy-tailed activity level (long histories), a
  stable long-term taste and a current interest that drifts smoothly from day to day;
- exposure: a logging policy fills feed/search slates with popular items and items of the user's
  current interest, ranked best-first; a `random_exposure_fraction` of requests show uniformly
  random items in random order (scenario `random`, the unbiased evaluation slice);
- clicks: P(click) = P(examine | position) × P(relevant | user, item, today's earlier clicks), with
  P(examine) = (1 / (1 + position)) ** position_bias_power; conversion and dwell depend on
  relevance given a click.

The policy knows only the current interest, so the long-term taste shows only in clicks and only
accumulates over a long history: a long behaviour sequence beats a short one by design. The ground
truth (`TRUTH_FIELDS`) comes with every generated frame and never enters landing files.
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.config import GeneratorConfig
from pipeline.data.landing import (LANDING_FIELDS, LandingSummary, event_ids, landing_dir, write_landing,
                                   write_landing_files)
from pipeline.progress import track

TRUTH_FIELDS = ("true_examine_probability", "true_relevance_probability", "true_click_probability")
SEGMENTS = ("student", "professional", "family", "retired", "casual", "enthusiast")
GENDERS = ("F", "M", "U")
DEVICES = ("ios", "android", "web")
SCENARIOS = ("feed", "search", "random")

LATENT_DIM = 16
DRIFT_FREQUENCIES = 4  # sinusoids per user making up the current interest
USERS_PER_BLOCK = 32_768  # fixed: part of each day's RNG stream, so changing it changes the data
CANDIDATES_PER_SLOT = 4  # policy candidates drawn per slate position before de-duplication

# Relevance logit = bias + quality + taste·item + attribute affinities + session momentum.
# Each weight is roughly the standard deviation of its term.
RELEVANCE_BIAS = -3.0
LONG_TERM_WEIGHT = 0.9
CURRENT_WEIGHT = 1.0
SEGMENT_WEIGHT = 0.5
GENDER_WEIGHT = 0.3
SESSION_WEIGHT = 0.6
SESSION_DECAY = 0.7  # per request; the session is the day
POLICY_INTEREST_WEIGHT = 1.5  # how strongly the logging policy follows current interest
SEARCH_SHARE = 0.2  # of non-random requests
PRIMARY_DEVICE_SHARE = 0.85
CONVERSION_BIAS = -2.0
DWELL_MEDIAN_SECONDS = 15.0
# Share of requests per UTC hour: quiet nights, busy evenings.
HOURLY_TRAFFIC = np.array([2, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 6, 5, 5, 5, 5, 6, 7, 8, 8, 7, 5, 3], float)


@dataclass(frozen=True)
class SyntheticWorld:
    """Everything about users and items that does not change from day to day; the click model."""

    cfg: GeneratorConfig
    item_popularity: np.ndarray  # (n_items,) exposure probabilities, Zipf over a random rank order
    popularity_cdf: np.ndarray  # cumulative item_popularity, ending at exactly 1
    item_category: np.ndarray  # (n_items,)
    item_vector: np.ndarray  # (n_items, LATENT_DIM), unit norm
    item_quality: np.ndarray  # (n_items,) logit offset
    category_vector: np.ndarray  # (n_categories, LATENT_DIM)
    category_cdf: np.ndarray  # items sorted by category: category + within-category popularity CDF
    category_order: np.ndarray  # item ids in that order
    user_age: np.ndarray
    user_gender: np.ndarray
    user_segment: np.ndarray
    user_device: np.ndarray
    user_activity: np.ndarray  # mean 1, heavy-tailed
    user_long_term: np.ndarray  # (n_users, LATENT_DIM) stable taste
    user_drift_basis: np.ndarray  # (n_users, DRIFT_FREQUENCIES, 2, LATENT_DIM)
    user_drift_frequency: np.ndarray  # (n_users, DRIFT_FREQUENCIES) radians per day
    segment_affinity: np.ndarray  # (n_segments, n_categories)
    gender_affinity: np.ndarray  # (n_genders, n_categories)

    def current_interest(self, users: np.ndarray, day: date) -> np.ndarray:
        """Users' interest on `day`, computable for any day alone.

        Random Fourier features of an Ornstein–Uhlenbeck process: with Cauchy-distributed
        frequencies the correlation between days Δ apart is (1 − interest_drift) ** Δ on average.
        """
        t = (day - self.cfg.start_date).days
        angle = self.user_drift_frequency[users] * t
        phase = np.stack([np.cos(angle), np.sin(angle)], axis=-1).astype(np.float32)
        interest = np.einsum("ufk,ufkd->ud", phase, self.user_drift_basis[users])
        return interest / np.sqrt(DRIFT_FREQUENCIES, dtype=np.float32)

    def relevance_logit(self, users: np.ndarray, items: np.ndarray, day: date) -> np.ndarray:
        """True relevance logit of each (user, item) pair on `day`, before any same-day clicks."""
        unique_users, row = np.unique(users, return_inverse=True)
        taste = (LONG_TERM_WEIGHT * self.user_long_term[unique_users]
                 + CURRENT_WEIGHT * self.current_interest(unique_users, day))
        category = self.item_category[items]
        return (RELEVANCE_BIAS + self.item_quality[items]
                + np.einsum("ed,ed->e", taste[row], self.item_vector[items])
                + SEGMENT_WEIGHT * self.segment_affinity[self.user_segment[users], category]
                + GENDER_WEIGHT * self.gender_affinity[self.user_gender[users], category])

    def examine_probability(self, position: np.ndarray) -> np.ndarray:
        """Chance a user looks at a slot at all: the position bias."""
        return (1.0 / (1.0 + position)) ** self.cfg.position_bias_power


def build_world(cfg: GeneratorConfig) -> SyntheticWorld:
    """The world for `cfg`; depends on the seed and sizes only, never on dates."""
    if cfg.n_items < max(cfg.slate_size, cfg.n_categories):
        raise ValueError(f"generator.n_items ({cfg.n_items}) must be ≥ generator.slate_size ({cfg.slate_size}) "
                         f"and ≥ generator.n_categories ({cfg.n_categories})")
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    n_items, n_users, n_categories = cfg.n_items, cfg.n_users, cfg.n_categories

    rank = rng.permutation(n_items)
    popularity = 1.0 / (1.0 + rank) ** cfg.zipf_alpha
    popularity /= popularity.sum()
    category = rng.permutation(np.arange(n_items) % n_categories)  # every category has items
    category_vector = _unit(rng.standard_normal((n_categories, LATENT_DIM)))
    item_vector = _unit(0.8 * category_vector[category]
                        + 0.6 * rng.standard_normal((n_items, LATENT_DIM)) / np.sqrt(LATENT_DIM))
    log_popularity = np.log(popularity)
    quality = (0.3 * (log_popularity - log_popularity.mean()) / (log_popularity.std() + 1e-9)
               + 0.4 * rng.standard_normal(n_items))
    order = np.lexsort((-popularity, category))
    sorted_category = category[order]
    within = np.cumsum(popularity[order])
    starts = np.searchsorted(sorted_category, np.arange(n_categories))
    before = np.concatenate([[0.0], within])[starts][sorted_category]
    mass = np.bincount(sorted_category, popularity[order], minlength=n_categories)[sorted_category]
    category_cdf = sorted_category + (within - before) / mass
    category_cdf[np.r_[starts[1:], n_items] - 1] = np.arange(1, n_categories + 1)  # exact ends
    popularity_cdf = np.cumsum(popularity)
    popularity_cdf[-1] = 1.0

    age = np.clip(rng.normal(38, 13, n_users), 16, 80).astype(np.int64)
    segment = rng.integers(0, len(SEGMENTS), n_users)
    segment[(age < 24) & (rng.random(n_users) < 0.6)] = SEGMENTS.index("student")
    segment[(age > 64) & (rng.random(n_users) < 0.7)] = SEGMENTS.index("retired")
    activity = rng.lognormal(0.0, 0.8, n_users)
    decay_per_day = -np.log1p(-min(cfg.interest_drift, 0.99))
    return SyntheticWorld(
        cfg=cfg,
        item_popularity=popularity,
        popularity_cdf=popularity_cdf,
        item_category=category,
        item_vector=item_vector.astype(np.float32),
        item_quality=quality,
        category_vector=category_vector.astype(np.float32),
        category_cdf=category_cdf,
        category_order=order,
        user_age=age,
        user_gender=rng.choice(len(GENDERS), n_users, p=[0.48, 0.48, 0.04]),
        user_segment=segment,
        user_device=rng.choice(len(DEVICES), n_users, p=[0.4, 0.4, 0.2]),
        user_activity=activity / activity.mean(),
        user_long_term=rng.standard_normal((n_users, LATENT_DIM), dtype=np.float32),
        user_drift_basis=rng.standard_normal((n_users, DRIFT_FREQUENCIES, 2, LATENT_DIM), dtype=np.float32),
        user_drift_frequency=decay_per_day * rng.standard_cauchy((n_users, DRIFT_FREQUENCIES)),
        segment_affinity=rng.standard_normal((len(SEGMENTS), n_categories)),
        gender_affinity=rng.standard_normal((len(GENDERS), n_categories)),
    )


def generate_day(cfg: GeneratorConfig, day: date, world: SyntheticWorld | None = None) -> pd.DataFrame:
    """One UTC date of impressions: the landing columns followed by the `TRUTH_FIELDS`.

    Rows are ordered by event time; pass `world` to skip rebuilding it for every date.
    """
    if world is None:
        world = build_world(cfg)
    elif world.cfg != cfg:
        raise ValueError("generate_day got a world built from another GeneratorConfig")
    blocks = [_generate_block(world, day, start)
              for start in range(0, cfg.n_users, USERS_PER_BLOCK)]
    columns = {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}
    order = np.lexsort((columns["position"], columns["user_id"], columns["millis"]))
    columns = {name: values[order] for name, values in columns.items()}
    return _frame(columns, day, world)


def generate(
    cfg: GeneratorConfig,
    landing_root: Path | str,
    source: str = "synthetic",
    truth_root: Path | str | None = None,
    progress: bool = True,
) -> LandingSummary:
    """Write `cfg.n_days` dates of landing files from `cfg.start_date`, one date in memory at a time.

    With `truth_root`, each date's ground truth (event_id + `TRUTH_FIELDS`) goes to parquet files in
    the same layout there, for benchmarks that score against the true click model.
    """
    started = clock.perf_counter()
    world = build_world(cfg)
    summary = LandingSummary(source=source)
    days = [cfg.start_date + timedelta(days=i) for i in range(cfg.n_days)]
    for day in track(days, f"generating {source}", unit="day") if progress else days:
        frame = generate_day(cfg, day, world)
        summary.files += write_landing(frame[list(LANDING_FIELDS)], landing_root, source, day, cfg.landing_format)
        if truth_root is not None:
            truth = pa.Table.from_pandas(frame[["event_id", *TRUTH_FIELDS]], preserve_index=False)
            write_landing_files(truth, landing_dir(truth_root, source, day), "parquet")
        summary.days.append(day)
        summary.events += len(frame)
        summary.clicks += int(frame["click"].sum())
    summary.seconds = clock.perf_counter() - started
    return summary


def _generate_block(world: SyntheticWorld, day: date, first_user: int) -> dict[str, np.ndarray]:
    """Requests, slates and clicks of one block of users on one day, as flat event columns."""
    cfg = world.cfg
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, day.toordinal(), first_user)))
    users = np.arange(first_user, min(first_user + USERS_PER_BLOCK, cfg.n_users))

    counts = rng.poisson(cfg.requests_per_user_per_day * world.user_activity[users])
    request_user = np.repeat(users, counts)
    n_requests = len(request_user)
    hour = rng.choice(24, n_requests, p=HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum())
    millis = hour * 3_600_000 + rng.integers(0, 3_600_000, n_requests)
    order = np.lexsort((millis, request_user))
    request_user, millis = request_user[order], millis[order]
    request_rank = np.arange(n_requests) - np.repeat(np.cumsum(counts) - counts, counts)

    scenario = np.where(rng.random(n_requests) < cfg.random_exposure_fraction, SCENARIOS.index("random"),
                        np.where(rng.random(n_requests) < SEARCH_SHARE, SCENARIOS.index("search"),
                                 SCENARIOS.index("feed")))
    device = np.where(rng.random(n_requests) < PRIMARY_DEVICE_SHARE, world.user_device[request_user],
                      rng.integers(0, len(DEVICES), n_requests))

    interest = world.current_interest(users, day)
    slates = _slates(world, rng, request_user - first_user, scenario, interest)
    k = cfg.slate_size
    event_user = np.repeat(request_user, k)
    position = np.tile(np.arange(k), n_requests)
    item = slates.ravel()

    examine = world.examine_probability(position)
    base_logit = world.relevance_logit(event_user, item, day)
    logit, click = _clicks(world, rng, request_user - first_user, request_rank, item, examine, base_logit)
    relevance = _sigmoid(logit)
    conversion = click & (rng.random(len(item)) < _sigmoid(CONVERSION_BIAS + 0.8 * logit))
    dwell = DWELL_MEDIAN_SECONDS * np.exp(0.3 * logit + 0.5 * rng.standard_normal(len(item)))
    dwell = np.where(click, np.round(dwell, 3), np.nan)
    return {
        "user_id": event_user, "item_id": item, "position": position,
        "request_rank": np.repeat(request_rank, k), "millis": np.repeat(millis, k),
        "scenario": np.repeat(scenario, k), "device": np.repeat(device, k),
        "click": click.astype(np.int8), "conversion": conversion.astype(np.int8), "dwell_seconds": dwell,
        "true_examine_probability": examine, "true_relevance_probability": relevance,
        "true_click_probability": examine * relevance,
    }


def _slates(world: SyntheticWorld, rng: np.random.Generator, request_user: np.ndarray,
            scenario: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """(n_requests, slate_size) distinct items per request, best policy score first.

    Feed candidates are half globally popular, half popular in an intent category drawn from the
    user's current interest; search candidates all come from the intent category; random requests
    draw uniformly and are ranked by a coin.
    """
    cfg = world.cfg
    n_requests, k = len(request_user), cfg.slate_size
    n_candidates = CANDIDATES_PER_SLOT * k
    category_score = POLICY_INTEREST_WEIGHT * interest @ world.category_vector.T
    category_prob = np.exp(category_score - category_score.max(axis=1, keepdims=True))
    category_cdf = np.cumsum(category_prob / category_prob.sum(axis=1, keepdims=True), axis=1)
    category_cdf[:, -1] = 1.0
    # One searchsorted over all users' CDFs laid end to end, each shifted by its row number.
    flat_cdf = (category_cdf + np.arange(len(interest))[:, None]).ravel()
    hit = np.searchsorted(flat_cdf, request_user + rng.random(n_requests), side="right")
    intent = hit - request_user * cfg.n_categories

    uniform = rng.random((n_requests, n_candidates))
    in_intent = world.category_order[np.searchsorted(world.category_cdf, intent[:, None] + uniform, side="right")]
    popular = np.searchsorted(world.popularity_cdf, uniform, side="right")
    anything = rng.integers(0, cfg.n_items, (n_requests, n_candidates))
    half = np.arange(n_candidates) < n_candidates // 2
    is_random = (scenario == SCENARIOS.index("random"))[:, None]
    candidates = np.where(is_random, anything,
                          np.where((scenario == SCENARIOS.index("search"))[:, None] | half, in_intent, popular))
    affinity = np.einsum("rd,rcd->rc", interest[request_user], world.item_vector[candidates])
    policy_score = (np.log(world.item_popularity[candidates]) + POLICY_INTEREST_WEIGHT * affinity
                    + rng.gumbel(size=candidates.shape))
    score = np.where(is_random, rng.random(candidates.shape), policy_score)
    return _top_distinct(rng, candidates, score, k, cfg.n_items)


def _top_distinct(rng: np.random.Generator, candidates: np.ndarray, score: np.ndarray, k: int,
                  n_items: int) -> np.ndarray:
    """The k best-scoring distinct items of each row, best first; short rows are topped up at random."""
    by_score = np.argsort(-score, axis=1)
    items = np.take_along_axis(candidates, by_score, axis=1)
    # A stable sort by item keeps each item's best-scoring copy first; later copies are repeats.
    by_item = np.argsort(items, axis=1, kind="stable")
    sorted_items = np.take_along_axis(items, by_item, axis=1)
    repeat_sorted = np.zeros_like(sorted_items, dtype=bool)
    repeat_sorted[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, by_item, repeat_sorted, axis=1)
    first_distinct = np.argsort(repeat, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(items, first_distinct, axis=1)
    short = (~repeat).sum(axis=1) < k
    if short.any():
        n_short = int(short.sum())
        # Top-ups rank below every real candidate.
        top[short] = _top_distinct(
            rng, np.concatenate([candidates[short], rng.integers(0, n_items, (n_short, 2 * k))], axis=1),
            np.concatenate([score[short], -1e9 + rng.random((n_short, 2 * k))], axis=1), k, n_items)
    return top


def _clicks(world: SyntheticWorld, rng: np.random.Generator, request_user: np.ndarray, request_rank: np.ndarray,
            item: np.ndarray, examine: np.ndarray, base_logit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relevance logits and clicks, request by request in each user's time order.

    Items close to what the user clicked earlier the same day are more relevant (session momentum),
    so each user's n-th requests are resolved together after their (n−1)-th.
    """
    k = world.cfg.slate_size
    session = np.zeros((request_user.max(initial=-1) + 1, LATENT_DIM), np.float32)
    draw = rng.random(len(item))
    logit = np.empty(len(item))
    click = np.zeros(len(item), bool)
    for rank in range(request_rank.max(initial=-1) + 1):
        requests = np.flatnonzero(request_rank == rank)
        users = request_user[requests]
        events = (requests[:, None] * k + np.arange(k)).ravel()
        vectors = world.item_vector[item[events]].reshape(len(requests), k, LATENT_DIM)
        momentum = np.einsum("rd,rkd->rk", session[users], vectors).ravel()
        logit[events] = base_logit[events] + SESSION_WEIGHT * momentum
        click[events] = draw[events] < examine[events] * _sigmoid(logit[events])
        clicked = click[events].reshape(len(requests), k, 1)
        session[users] = SESSION_DECAY * session[users] + (clicked * vectors).sum(axis=1)
    return logit, click


def _frame(columns: dict[str, np.ndarray], day: date, world: SyntheticWorld) -> pd.DataFrame:
    user, item = columns["user_id"], columns["item_id"]
    midnight = pd.Timestamp(datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc))
    frame = pd.DataFrame({
        "event_id": event_ids(f"syn-{day:%Y%m%d}", user, columns["request_rank"], columns["position"]),
        "event_time": midnight + pd.to_timedelta(columns["millis"], unit="ms"),
        "user_id": user,
        "item_id": item,
        "position": columns["position"],
        "scenario": pd.Categorical.from_codes(columns["scenario"], SCENARIOS),
        "device": pd.Categorical.from_codes(columns["device"], DEVICES),
        "click": columns["click"],
        "conversion": columns["conversion"],
        "dwell_seconds": columns["dwell_seconds"],
        "user_age": world.user_age[user],
        "user_gender": pd.Categorical.from_codes(world.user_gender[user], GENDERS),
        "user_segment": pd.Categorical.from_codes(world.user_segment[user], SEGMENTS),
        "item_category": pd.Categorical.from_codes(
            world.item_category[item], [f"cat_{c:03d}" for c in range(world.cfg.n_categories)]),
        **{name: columns[name] for name in TRUTH_FIELDS},
    })
    return frame


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
