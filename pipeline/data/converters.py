"""Public recommendation datasets → landing files, so real data runs through the same pipeline.

Every converter writes the landing layout under its source name (`ml-100k`, `movielens`, `coat`,
`yahoo-r3`): a rating ≥ 4 is a click, rows from random exposure get scenario `random` and all
others `feed`. Inputs are read with pyarrow; when that fails, the file is scanned line by line so
the error names the file, line and field.
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

from pipeline.data.landing import LandingFormat, LandingSummary, event_ids, write_landing

ColumnKind = Literal["id", "number", "text"]

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
CLICK_MIN_RATING = 4.0
TRIPLES_START = date(2026, 1, 1)
TRIPLES_BIASED_DAYS = 7
YAHOO_R3_FILES = ("ydata-ymusic-rating-study-v1-0-train.txt", "ydata-ymusic-rating-study-v1-0-test.txt")
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
                           biased_days: int = TRIPLES_BIASED_DAYS) -> LandingSummary:
    """A biased and a random-exposure set of `user item rating` lines (comma, tab or space separated).

    These sets carry no times, so times are made up, deterministically, to keep the random slice a
    held-out later date: each user's biased rows, in file order, are spread evenly over the
    `biased_days` days from `start`; all random rows fall on the day after. Within a (user, day) the
    rows are spaced evenly across the day in file order.
    """
    started = clock.perf_counter()
    if biased_days < 1:
        raise ValueError(f"biased_days must be ≥ 1, got {biased_days}")
    parts = []
    for path, scenario in ((Path(biased_path), "feed"), (Path(random_path), "random")):
        rows = _read_triples(path)
        duplicate = rows.duplicated(["user_id", "item_id"]).to_numpy()
        if duplicate.any():
            line, user, item = rows[["line", "user_id", "item_id"]].to_numpy()[duplicate.argmax()]
            raise MalformedInputError(f"{path}, line {line}: user {user} rated item {item} twice")
        first_day, span = (start, biased_days) if scenario == "feed" else (start + timedelta(biased_days), 1)
        by_user = rows.groupby("user_id")
        rows["day"] = by_user.cumcount() * span // by_user["user_id"].transform("size")
        by_user_day = rows.groupby(["user_id", "day"])
        slot, slots = by_user_day.cumcount(), by_user_day["day"].transform("size")
        rows["event_time"] = (pd.Timestamp(first_day, tz="UTC") + pd.to_timedelta(rows["day"], unit="D")
                              + pd.to_timedelta((2 * slot + 1) * 43_200_000 // slots, unit="ms"))  # mid-slot
        rows["scenario"] = scenario
        rows["event_id"] = event_ids(_id_prefix(source) + f"-{scenario}", rows["user_id"], rows["item_id"])
        parts.append(rows)
    events = pd.concat(parts, ignore_index=True)
    events["click"] = (events["rating"] >= CLICK_MIN_RATING).astype(np.int8)
    return _write_by_date(events.drop(columns=["rating", "line", "day"]), landing_root, source, fmt, started)


def convert_coat(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                 source: str = "coat") -> LandingSummary:
    """Coat: `user.txt` (self-selected ratings) and `random.txt` (ratings of random items)."""
    src = Path(src)
    return convert_rating_triples(src / "user.txt", src / "random.txt", landing_root, source, fmt)


def convert_yahoo_r3(src: Path | str, landing_root: Path | str, fmt: LandingFormat = "parquet",
                     source: str = "yahoo-r3") -> LandingSummary:
    """Yahoo! R3: the user-selected train file and the randomly selected test file."""
    src = Path(src)
    train, test = (src / name for name in YAHOO_R3_FILES)
    return convert_rating_triples(train, test, landing_root, source, fmt)


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
    """Write one landing date per UTC day of `events`, rows ordered by time then id."""
    events = events.sort_values(["event_time", "event_id"], ignore_index=True)
    summary = LandingSummary(source=source)
    for midnight, frame in events.groupby(events["event_time"].dt.floor("D"), sort=True):
        day = midnight.date()
        summary.files += write_landing(frame, landing_root, source, day, fmt)
        summary.days.append(day)
    summary.events = len(events)
    summary.clicks = int(events["click"].sum())
    summary.seconds = clock.perf_counter() - started
    return summary


def _read_triples(path: Path) -> pd.DataFrame:
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
