"""Public recommendation datasets → landing files, so real data runs through the same pipeline.

Every converter writes the landing layout under its source name (`ml-100k`, `movielens`, `coat`,
`yahoo-r3`): a rating ≥ 4 is a click, rows from random exposure get scenario `random` and all
others `feed`. Real timestamps are kept where the data has them, and every day between the first and
the last rating gets a landing folder (empty on a day without ratings), so a multi-year file with
gaps ingests day by day. Item side information becomes `item_category` (MovieLens: the first genre;
Coat: the jacket type) and user side information the user slots where the data has them. Inputs
are read with pyarrow; when that fails, the file is scanned line by line so the error names the
file, line and field.
"""

from __future__ import annotations

import csv
import io
import re
import time as clock
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from pipeline.data.landing import LandingFormat, LandingSummary, event_ids, write_empty_landing, write_landing

ColumnKind = Literal["id", "number", "text"]

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
CLICK_MIN_RATING = 4.0
TRIPLES_START = date(2026, 1, 1)
TRIPLES_BIASED_DAYS = 7
YAHOO_R3_FILES = ("ydata-ymusic-rating-study-v1-0-train.txt", "ydata-ymusic-rating-study-v1-0-test.txt")
TRIPLES_FILES = ("user.txt", "random.txt")  # the names Coat and common Yahoo! R3 copies use
COAT_FEATURES = "user_item_features"
DAY_SPREAD_SEED = 20_260_101
_ARROW_TYPES = {"id": pa.int64(), "number": pa.float64(), "text": pa.string()}


class MalformedInputError(ValueError):
    """An input file that does not parse; the message names the file and line."""


def convert_ml100k(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                   source: str = "ml-100k") -> LandingSummary:
    """MovieLens 100K (`u.data`, `u.user`, `u.item`) with user age, gender, occupation and genre."""
    started = clock.perf_counter()
    src = Path(src)
    ratings = _read_rows(src / "u.data", {"user_id": "id", "item_id": "id", "rating": "number", "timestamp": "id"},
                         delimiter="\t")
    users = _read_rows(src / "u.user", {"user_id": "id", "user_age": "id", "user_gender": "text",
                                        "user_segment": "text", "zip": "text"}, delimiter="|")
    genre_flags = {f"genre_{i}": "id" for i in range(len(ML100K_GENRES))}
    items = _read_rows(src / "u.item", {"item_id": "id", "title": "text", "release_date": "text",
                                        "video_release_date": "text", "url": "text", **genre_flags},
                       delimiter="|", encoding="latin-1")
    flags = items[list(genre_flags)].to_numpy() > 0
    items["item_category"] = np.where(flags.any(axis=1), np.array(ML100K_GENRES, dtype=object)[flags.argmax(axis=1)],
                                      None)
    events = _rating_events(ratings, source)
    events = events.merge(users[["user_id", "user_age", "user_gender", "user_segment"]], on="user_id", how="left")
    events = events.merge(items[["item_id", "item_category"]], on="item_id", how="left")
    return _write_by_date(events, landing_root, source, fmt, started)


def convert_movielens(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                      source: str = "movielens") -> LandingSummary:
    """A later MovieLens release (`ratings.csv`, `movies.csv`); item category is the first genre."""
    started = clock.perf_counter()
    src = Path(src)
    ratings = _read_rows(src / "ratings.csv", {"userId": "id", "movieId": "id", "rating": "number", "timestamp": "id"},
                         delimiter=",", header=True)
    movies = _read_rows(src / "movies.csv", {"movieId": "id", "title": "text", "genres": "text"},
                        delimiter=",", header=True, quoted=True)
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    first_genre = movies["genres"].str.split("|").str[0]
    movies["item_category"] = first_genre.where(first_genre != "(no genres listed)")
    events = _rating_events(ratings, source)
    events = events.merge(movies.rename(columns={"movieId": "item_id"})[["item_id", "item_category"]],
                          on="item_id", how="left")
    return _write_by_date(events, landing_root, source, fmt, started)


def convert_rating_triples(biased_path: Path | str, random_path: Path | str, landing_root: Path | str, source: str,
                           fmt: LandingFormat = "parquet", start: date = TRIPLES_START,
                           biased_days: int = TRIPLES_BIASED_DAYS, seed: int = DAY_SPREAD_SEED,
                           users: pd.DataFrame | None = None, items: pd.DataFrame | None = None) -> LandingSummary:
    """A biased and a random-exposure set of `user item rating` lines (comma, tab or space separated).

    These sets carry no times, so times are made up, deterministically, to keep the random slice a
    held-out later date: each user's biased rows are spread evenly over the `biased_days` days from
    `start` in a seeded random order (`spread_over_days`), never in file order — rating dumps are
    often sorted by item within a user, and file order would make each day an item-id band. All
    random rows fall on the day after. `users`/`items` (keyed by user_id/item_id) add side columns.
    """
    started = clock.perf_counter()
    if biased_days < 1:
        raise ValueError(f"biased_days must be ≥ 1, got {biased_days}")
    parts = []
    for path, scenario in ((Path(biased_path), "feed"), (Path(random_path), "random")):
        rows = read_triples(path)
        duplicate = rows.duplicated(["user_id", "item_id"]).to_numpy()
        if duplicate.any():
            line, user, item = rows[["line", "user_id", "item_id"]].to_numpy()[duplicate.argmax()]
            raise MalformedInputError(f"{path}, line {line}: user {user} rated item {item} twice")
        first_day, span = (start, biased_days) if scenario == "feed" else (start + timedelta(biased_days), 1)
        day, millisecond = spread_over_days(rows["user_id"].to_numpy(), rows["item_id"].to_numpy(), span, seed)
        rows["event_time"] = (pd.Timestamp(first_day, tz="UTC") + pd.to_timedelta(day, unit="D")
                              + pd.to_timedelta(millisecond, unit="ms"))
        rows["scenario"] = scenario
        rows["event_id"] = event_ids(_id_prefix(source) + f"-{scenario}", rows["user_id"], rows["item_id"])
        parts.append(rows)
    events = pd.concat(parts, ignore_index=True)
    events["click"] = (events["rating"] >= CLICK_MIN_RATING).astype(np.int8)
    for side in (users, items):
        if side is not None:
            key = "user_id" if "user_id" in side.columns else "item_id"
            events = events.merge(side, on=key, how="left")
    return _write_by_date(events.drop(columns=["rating", "line"]), landing_root, source, fmt, started)


def spread_over_days(users: np.ndarray, items: np.ndarray, n_days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(day index, millisecond of the day) per (user, item) row, for data without times.

    Each user's rows are ordered by a seeded hash of (user, item) and dealt evenly over `n_days`
    days in that order; the time of day is another hash. Both depend only on the pair and the seed,
    so a file sorted any way gets the same days.
    """
    frame = pd.DataFrame({"user": users, "item": items})
    key = pd.util.hash_pandas_object(frame, index=False, hash_key=f"{seed % 10**16:016d}").to_numpy()
    order = np.lexsort((key, users))
    rank = np.empty(len(users), np.int64)
    sorted_users = users[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1] if len(users) else np.array([], np.int64)
    counts = np.diff(np.r_[first, len(users)])
    rank[order] = np.arange(len(users)) - np.repeat(first, counts)
    size = np.empty(len(users), np.int64)
    size[order] = np.repeat(counts, counts)
    day = rank * n_days // np.maximum(size, 1)
    millisecond = (key >> np.uint64(20)) % np.uint64(86_400_000)
    return day, millisecond.astype(np.int64)


def convert_coat(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                 source: str = "coat") -> LandingSummary:
    """Coat: `user.txt` (self-selected ratings) and `random.txt` (ratings of random items), plus the
    one-hot user and item features of `user_item_features/` where present: jacket type is the item
    category; gender, age band and location|fashion interest fill the user slots."""
    src = Path(src)
    users, items = _coat_side_information(src / COAT_FEATURES)
    return convert_rating_triples(src / "user.txt", src / "random.txt", landing_root, source, fmt,
                                  users=users, items=items)


def convert_yahoo_r3(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                     source: str = "yahoo-r3") -> LandingSummary:
    """Yahoo! R3: the user-selected and the randomly selected files, under their original names
    (`YAHOO_R3_FILES`) or the common `user.txt`/`random.txt`."""
    src = Path(src)
    for names in (YAHOO_R3_FILES, TRIPLES_FILES):
        if all((src / name).is_file() for name in names):
            return convert_rating_triples(*(src / name for name in names), landing_root, source, fmt)
    raise FileNotFoundError(f"expected Yahoo! R3 files in {src}: either {list(YAHOO_R3_FILES)} or "
                            f"{list(TRIPLES_FILES)}")


CONVERTERS: dict[str, Callable[..., LandingSummary]] = {
    "ml-100k": convert_ml100k,
    "movielens": convert_movielens,
    "coat": convert_coat,
    "yahoo-r3": convert_yahoo_r3,
}


def convert(kind: str, src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet") -> LandingSummary:
    """Convert the dataset at `src` with the converter named `kind` (a key of `CONVERTERS`)."""
    if kind not in CONVERTERS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {sorted(CONVERTERS)}")
    return CONVERTERS[kind](src, landing_root, fmt)


def _rating_events(ratings: pd.DataFrame, source: str) -> pd.DataFrame:
    """Timestamped ratings (user_id, item_id, rating, timestamp) as feed events."""
    return pd.DataFrame({
        "event_id": event_ids(_id_prefix(source), ratings["user_id"], ratings["item_id"], ratings["timestamp"]),
        "event_time": pd.to_datetime(ratings["timestamp"], unit="s", utc=True),
        "user_id": ratings["user_id"],
        "item_id": ratings["item_id"],
        "scenario": "feed",
        "click": (ratings["rating"] >= CLICK_MIN_RATING).astype(np.int8),
    })


def _write_by_date(events: pd.DataFrame, landing_root: Path | str, source: str, fmt: LandingFormat,
                   started: float) -> LandingSummary:
    """Write one landing date per UTC day from the first event's to the last's, rows ordered by time
    then id; a day without events gets an empty landing folder, so ingesting the range never fails."""
    events = events.sort_values(["event_time", "event_id"], ignore_index=True)
    summary = LandingSummary(source=source)
    days = events["event_time"].dt.floor("D")
    for midnight, frame in events.groupby(days, sort=True):
        summary.files += write_landing(frame, landing_root, source, midnight.date(), fmt)
    if len(events):
        summary.days = [d.date() for d in pd.date_range(days.min(), days.max(), freq="D")]
        busy = set(days.dt.date)
        summary.files += write_empty_landing(landing_root, source, [d for d in summary.days if d not in busy], fmt)
    summary.events = len(events)
    summary.clicks = int(events["click"].sum())
    summary.seconds = clock.perf_counter() - started
    return summary


def _coat_side_information(folder: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Coat's one-hot `user_features.ascii`/`item_features.ascii` (row i = id i) decoded by their
    `*_map.txt` (`field:value` per column) into landing columns; (None, None) without the folder."""
    if not folder.is_dir():
        return None, None
    users = _one_hot_fields(folder / "user_features.ascii", folder / "user_features_map.txt", "user_id")
    items = _one_hot_fields(folder / "item_features.ascii", folder / "item_features_map.txt", "item_id")
    age_bands = sorted(users["age"].dropna().unique())
    return (pd.DataFrame({"user_id": users["user_id"], "user_gender": users["gender"],
                          "user_age": users["age"].map({band: i for i, band in enumerate(age_bands)}),
                          "user_segment": users["location"] + "|" + users["fashioninterest"]}),
            pd.DataFrame({"item_id": items["item_id"], "item_category": items["jackettype"]}))


def _one_hot_fields(matrix_path: Path, map_path: Path, key: str) -> pd.DataFrame:
    """One column per field of `field:value` one-hot columns; the value whose flag is set (else null)."""
    names = [line.strip() for line in _require(map_path).read_text().splitlines() if line.strip()]
    flags = np.loadtxt(_require(matrix_path), dtype=np.int8, ndmin=2)
    if flags.shape[1] != len(names) or any(":" not in name for name in names):
        raise MalformedInputError(f"{matrix_path}: {flags.shape[1]} columns, but {map_path} names {len(names)} "
                                  f"`field:value` columns")
    fields, values = zip(*(name.split(":", 1) for name in names))
    out = pd.DataFrame({key: np.arange(len(flags))})
    for field in dict.fromkeys(fields):
        columns = [i for i, f in enumerate(fields) if f == field]
        block = flags[:, columns] > 0
        out[field] = np.where(block.any(axis=1), np.array(values, dtype=object)[columns][block.argmax(axis=1)], None)
    return out


def read_triples(path: Path) -> pd.DataFrame:
    """`user item rating` lines with their line numbers; runs of tabs/spaces count as one separator."""
    text = _require(path).read_text()
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in first:
        text = re.sub(r"[ \t]+", "\t", re.sub(r"(?m)^[ \t]+|[ \t]+$", "", text))
    columns: dict[str, ColumnKind] = {"user_id": "id", "item_id": "id", "rating": "number"}
    rows = _read_rows(path, columns, delimiter="," if "," in first else "\t", text=text)
    rows["line"] = [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return rows


def _read_rows(path: Path, columns: dict[str, ColumnKind], delimiter: str, header: bool = False,
               quoted: bool = False, encoding: str = "utf-8", text: str | None = None) -> pd.DataFrame:
    """Typed rows of a delimited file: every column of a headerless file in order, else by name.

    Ids must be non-negative integers and numbers finite; on any failure the file is scanned
    line by line so the error names the first bad line. `text` replaces the file's content.
    """
    data = io.BytesIO(text.encode()) if text is not None else _require(path)
    read = pa_csv.ReadOptions(encoding="utf-8" if text is not None else encoding,
                              column_names=None if header else list(columns))
    parse = pa_csv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False)
    convert = pa_csv.ConvertOptions(column_types={name: _ARROW_TYPES[kind] for name, kind in columns.items()},
                                    include_columns=list(columns), quoted_strings_can_be_null=False)
    failure: Exception | None = None
    try:
        frame = pa_csv.read_csv(data, read, parse, convert).to_pandas()
        if all((frame[name] >= 0).all() if kind == "id" else np.isfinite(frame[name]).all()
               for name, kind in columns.items() if kind != "text"):
            return frame
    except (pa.ArrowInvalid, pa.ArrowKeyError) as err:
        failure = err
    source = io.StringIO(text) if text is not None else path.open(encoding=encoding, newline="")
    with source:
        problem = _first_problem(source, columns, delimiter, header, quoted)
    raise MalformedInputError(f"{path}, {problem}" if problem else f"{path}: {failure}")


def _first_problem(lines: io.TextIOBase, columns: dict[str, ColumnKind], delimiter: str, header: bool,
                   quoted: bool) -> str | None:
    """'line N: …' for the first line that breaks `columns`, or None if every line is fine."""
    rows = _data_lines(lines, delimiter, quoted)
    names = list(columns)
    if header:
        number, names = next(rows, (1, []))
        missing = [name for name in columns if name not in names]
        if missing:
            return f"line {number}: header lacks columns {missing} (has {names})"
    positions, width = {name: names.index(name) for name in columns}, len(names)
    for number, fields in rows:
        if len(fields) != width:
            return f"line {number}: expected {width} fields, found {len(fields)}: {fields}"
        for name, kind in columns.items():
            value = fields[positions[name]]
            if kind == "id" and not value.strip().isdigit():
                return f"line {number}: field {name!r} must be a non-negative integer, got {value!r}"
            if kind == "number" and not _is_finite_number(value):
                return f"line {number}: field {name!r} must be a number, got {value!r}"
    return None


def _data_lines(lines: io.TextIOBase, delimiter: str, quoted: bool) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line, a header included."""
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    for fields in reader:
        if any(field.strip() for field in fields):
            yield reader.line_num, fields


def _is_finite_number(value: str) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except ValueError:
        return False


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"expected input file {path}")
    return path


def _id_prefix(source: str) -> str:
    return source.replace("-", "")
