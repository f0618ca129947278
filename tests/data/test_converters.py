"""Public-data converters on tiny files written here: same landing layout, clicks = rating ≥ 4."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data.converters import (TRIPLES_FILES, YAHOO_R3_FILES, MalformedInputError, convert, convert_coat,
                                      convert_ml100k, convert_movielens, convert_rating_triples)
from pipeline.data.landing import LANDING_FIELDS, read_landing


def read_all(root: Path, source: str, days: list[date]) -> pd.DataFrame:
    return pd.concat([read_landing(root, source, day).assign(date=day) for day in days], ignore_index=True)


def write_ml100k(folder: Path, data: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # 881250949 = 1997-12-04 15:55:49 UTC; 891717742 = 1998-04-04 19:22:22 UTC
    (folder / "u.data").write_text(data or "196\t242\t3\t881250949\n186\t302\t4\t891717742\n196\t302\t5\t881250950\n")
    (folder / "u.user").write_text("186|39|F|executive|00000\n196|49|M|writer|55105\n")
    no_genre, comedy_drama = "|".join("0" * 19), "|".join("0000010010000000000")
    adventure = "|".join("0010000000000000000")
    (folder / "u.item").write_bytes(
        f"242|Kolya (1996)|24-Jan-1997||http://x|{comedy_drama}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{adventure}\n"
        f"303|Caf\xe9 (1997)|01-Jan-1997||http://z|{no_genre}\n".encode("latin-1"))
    return folder


def test_ml100k_becomes_feed_events_with_user_and_genre(tmp_path: Path) -> None:
    summary = convert_ml100k(write_ml100k(tmp_path / "ml-100k"), tmp_path / "landing", "csv")
    assert summary.source == "ml-100k" and summary.events == 3 and summary.clicks == 2
    assert summary.days[0] == date(1997, 12, 4) and summary.days[-1] == date(1998, 4, 4)
    events = read_all(tmp_path / "landing", "ml-100k", summary.days)
    assert list(events.columns) == [*LANDING_FIELDS, "date"]
    assert events["event_id"].tolist() == ["ml100k-196-242-881250949", "ml100k-196-302-881250950",
                                           "ml100k-186-302-891717742"]
    assert events["event_time"].tolist() == ["1997-12-04T15:55:49.000Z", "1997-12-04T15:55:50.000Z",
                                             "1998-04-04T19:22:22.000Z"]
    assert events["click"].tolist() == ["0", "1", "1"]
    assert events["scenario"].unique().tolist() == ["feed"]
    assert events[["user_age", "user_gender", "user_segment"]].values.tolist() == [
        ["49", "M", "writer"], ["49", "M", "writer"], ["39", "F", "executive"]]
    assert events["item_category"].tolist() == ["Comedy", "Adventure", "Adventure"]
    assert events["position"].isna().all()


def test_conversion_is_repeatable_byte_for_byte(tmp_path: Path) -> None:
    src = write_ml100k(tmp_path / "ml-100k")
    first = convert_ml100k(src, tmp_path / "landing")
    contents = [p.read_bytes() for p in first.files]
    assert [p.read_bytes() for p in convert_ml100k(src, tmp_path / "landing").files] == contents


def test_later_movielens_csv_with_quoted_titles_and_half_stars(tmp_path: Path) -> None:
    src = tmp_path / "ml-latest-small"
    src.mkdir()
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n"
                                     "2,2,5.0,1445714835\n")
    (src / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
                                    '2,"American President, The (1995)",Comedy|Drama|Romance\n'
                                    "3,Some Film (2000),(no genres listed)\n")
    summary = convert_movielens(src, tmp_path / "landing", "jsonl")
    assert (summary.days[0], summary.days[-1]) == (date(2000, 7, 30), date(2015, 10, 24))
    events = read_all(tmp_path / "landing", "movielens", [summary.days[0], summary.days[-1]])
    assert events["event_id"].tolist() == ["movielens-1-3-964981247", "movielens-1-1-964982703",
                                           "movielens-2-2-1445714835"]
    assert events["click"].tolist() == ["0", "1", "1"]
    assert events["item_category"].tolist()[1:] == ["Adventure", "Comedy"]
    assert pd.isna(events["item_category"][0])
    assert events["user_age"].isna().all()


def write_triples(path: Path, rows: list[tuple[int, int, int]], sep: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(map(str, row)) + "\n" for row in rows))
    return path


BIASED = [(0, 72, 2), (0, 136, 4), (0, 150, 5), (1, 10, 1), (0, 171, 3), (1, 11, 4), (0, 188, 3)]
RANDOM = [(0, 12, 4), (0, 17, 3), (1, 74, 5)]


def test_coat_tags_random_exposure_and_puts_it_on_a_later_day(tmp_path: Path) -> None:
    write_triples(tmp_path / "coat" / "user.txt", BIASED, ",")
    write_triples(tmp_path / "coat" / "random.txt", RANDOM, ",")
    summary = convert_coat(tmp_path / "coat", tmp_path / "landing", "parquet")
    assert summary.events == 10 and summary.clicks == 5
    events = read_all(tmp_path / "landing", "coat", summary.days)
    random_rows = events[events["scenario"] == "random"]
    assert sorted(random_rows["event_id"]) == ["coat-random-0-12", "coat-random-0-17", "coat-random-1-74"]
    assert random_rows["date"].unique().tolist() == [date(2026, 1, 8)]
    feed = events[events["scenario"] == "feed"]
    assert feed["date"].max() < date(2026, 1, 8) and feed["date"].min() == date(2026, 1, 1)
    by_id = events.set_index("event_id")["click"]
    assert by_id[["coat-feed-0-136", "coat-feed-0-150", "coat-feed-1-11", "coat-random-0-12"]].tolist() == ["1"] * 4
    assert by_id[["coat-feed-0-72", "coat-feed-0-171", "coat-random-0-17"]].tolist() == ["0"] * 3
    user0 = feed[feed["user_id"] == "0"].sort_values("event_time")
    assert user0["date"].nunique() == 5  # spread over the biased days
    assert events["item_category"].isna().all()  # no user_item_features folder


def test_days_of_untimed_ratings_do_not_follow_file_order(tmp_path: Path) -> None:
    # 40 users × 35 items, sorted by item within user as Coat's user.txt is, and the same rows shuffled.
    rows = [(user, item, 1 + (user * item) % 5) for user in range(40) for item in range(0, 70, 2)]
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=3).itertuples(index=False)
    results = []
    for name, ordered in (("sorted", rows), ("shuffled", list(shuffled))):
        summary = convert_rating_triples(write_triples(tmp_path / name / "b.txt", ordered, ","),
                                         write_triples(tmp_path / name / "r.txt", RANDOM, ","), tmp_path / name,
                                         "coat")
        events = read_all(tmp_path / name, "coat", summary.days)
        results.append(events.set_index("event_id")[["date", "event_time"]].sort_index())
    pd.testing.assert_frame_equal(*results)
    feed = results[0][results[0].index.str.startswith("coat-feed")].copy()
    feed["item"] = feed.index.str.split("-").str[-1].astype(int)
    mean_item_by_day = feed.groupby("date")["item"].mean()
    assert mean_item_by_day.max() - mean_item_by_day.min() < 15  # file order would give bands 0–8 … 60–68
    assert feed.groupby("date").size().min() >= 35 * 40 // 7 - 40


def test_coat_side_information_becomes_categories_and_user_slots(tmp_path: Path) -> None:
    write_triples(tmp_path / "coat" / "user.txt", BIASED, ",")
    write_triples(tmp_path / "coat" / "random.txt", RANDOM, ",")
    features = tmp_path / "coat" / "user_item_features"
    features.mkdir()
    (features / "item_features_map.txt").write_text("gender:men\ngender:women\njackettype:bomber\njackettype:parkas\n")
    items = {10: "1 0 1 0", 11: "0 1 0 1", 12: "1 0 0 0"}
    (features / "item_features.ascii").write_text(
        "".join(items.get(i, "1 0 0 1") + "\n" for i in range(200)))
    (features / "user_features_map.txt").write_text("gender:men\ngender:women\nage:20-30\nage:30-40\n"
                                                    "location:urban\nfashioninterest:very\n")
    (features / "user_features.ascii").write_text("0 1 0 1 1 1\n1 0 1 0 1 1\n")
    summary = convert_coat(tmp_path / "coat", tmp_path / "landing")
    events = read_all(tmp_path / "landing", "coat", summary.days).set_index("event_id")
    assert events.loc[["coat-feed-1-10", "coat-feed-1-11", "coat-feed-0-72"], "item_category"].tolist() == [
        "bomber", "parkas", "parkas"]
    assert pd.isna(events.loc["coat-random-0-12", "item_category"])  # no jacket type flagged
    assert events.loc["coat-feed-0-72", ["user_gender", "user_age", "user_segment"]].tolist() == [
        "women", "1", "urban|very"]
    assert events.loc["coat-feed-1-10", ["user_gender", "user_age"]].tolist() == ["men", "0"]
    (features / "item_features.ascii").write_text("1 0 1\n")
    with pytest.raises(MalformedInputError, match=r"item_features\.ascii: 3 columns, but .*names 4"):
        convert_coat(tmp_path / "coat", tmp_path / "landing")


def test_multi_year_movielens_with_gaps_writes_every_day(tmp_path: Path) -> None:
    # 2 ratings in 2000, one in 2003: every day between them has a landing folder, most of them empty.
    data = "1\t1\t4\t946684800\n1\t2\t2\t946771200\n2\t1\t5\t1041379200\n"
    summary = convert_ml100k(write_ml100k(tmp_path / "ml-100k", data), tmp_path / "landing")
    assert summary.days == [date(2000, 1, 1) + timedelta(days=i) for i in range(1097)]
    assert summary.events == 3
    assert len(read_landing(tmp_path / "landing", "ml-100k", date(2001, 6, 1))) == 0
    assert len(read_landing(tmp_path / "landing", "ml-100k", date(2003, 1, 1))) == 1


@pytest.mark.parametrize("sep", ["\t", " ", "  \t "])
def test_triples_separated_by_tabs_or_spaces_convert_like_commas(tmp_path: Path, sep: str) -> None:
    comma = convert_rating_triples(write_triples(tmp_path / "c" / "b.txt", BIASED, ","),
                                   write_triples(tmp_path / "c" / "r.txt", RANDOM, ","), tmp_path / "comma", "yahoo-r3")
    spaced = convert_rating_triples(write_triples(tmp_path / "s" / "b.txt", BIASED, sep),
                                    write_triples(tmp_path / "s" / "r.txt", RANDOM, sep), tmp_path / "spaced",
                                    "yahoo-r3")
    assert comma.days == spaced.days
    pd.testing.assert_frame_equal(read_all(tmp_path / "comma", "yahoo-r3", comma.days),
                                  read_all(tmp_path / "spaced", "yahoo-r3", spaced.days))


def test_convert_dispatches_by_kind(tmp_path: Path) -> None:
    for name, rows in zip(YAHOO_R3_FILES, (BIASED, RANDOM)):
        write_triples(tmp_path / "yahoo" / name, rows, "\t")
    summary = convert("yahoo-r3", tmp_path / "yahoo", tmp_path / "landing")
    assert summary.source == "yahoo-r3" and summary.events == 10
    assert read_landing(tmp_path / "landing", "yahoo-r3", summary.days[0])["event_id"][0].startswith("yahoor3-feed-")
    for name, rows in zip(TRIPLES_FILES, (BIASED, RANDOM)):
        write_triples(tmp_path / "yahoo-copy" / name, rows, "\t")
    assert convert("yahoo-r3", tmp_path / "yahoo-copy", tmp_path / "copy").events == 10
    with pytest.raises(FileNotFoundError, match=r"expected Yahoo! R3 files in .*user\.txt"):
        convert("yahoo-r3", tmp_path / "nowhere", tmp_path / "landing")
    with pytest.raises(ValueError, match="unknown dataset kind 'netflix'"):
        convert("netflix", tmp_path, tmp_path / "landing")


@pytest.mark.parametrize(("data", "message"), [
    ("1\t2\t3\t4\n\n5\tx\t3\t4\n", r"u\.data, line 3: field 'item_id' must be a non-negative integer, got 'x'"),
    ("1\t2\t3\t4\n5\t6\t3\n", r"u\.data, line 2: expected 4 fields, found 3"),
    ("1\t2\t3\t4\t9\n5\t6\t3\t4\n", r"u\.data, line 1: expected 4 fields, found 5"),
    ("1\t2\tfour\t4\n", r"u\.data, line 1: field 'rating' must be a number, got 'four'"),
    ("1\t-2\t3\t4\n", r"u\.data, line 1: field 'item_id' must be a non-negative integer, got '-2'"),
])
def test_malformed_ml100k_names_file_and_line(tmp_path: Path, data: str, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        convert_ml100k(write_ml100k(tmp_path / "ml-100k", data), tmp_path / "landing")


def test_malformed_triples_and_headers_name_file_and_line(tmp_path: Path) -> None:
    random = write_triples(tmp_path / "random.txt", RANDOM, ",")
    bad = tmp_path / "user.txt"
    bad.write_text("0,1,4\n0,2,4\n0,3\n")
    with pytest.raises(MalformedInputError, match=r"user\.txt, line 3: expected 3 fields, found 2"):
        convert_rating_triples(bad, random, tmp_path / "landing", "coat")
    bad.write_text("0,1,4\n\n0,1,5\n")
    with pytest.raises(MalformedInputError, match=r"user\.txt, line 3: user 0 rated item 1 twice"):
        convert_rating_triples(bad, random, tmp_path / "landing", "coat")

    src = tmp_path / "movielens"
    src.mkdir()
    (src / "ratings.csv").write_text("user,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (src / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Adventure\n")
    with pytest.raises(MalformedInputError, match=r"ratings\.csv, line 1: header lacks columns \['userId'\]"):
        convert_movielens(src, tmp_path / "landing")


def test_missing_input_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected input file .*random\.txt"):
        write_triples(tmp_path / "coat" / "user.txt", BIASED, ",")
        convert_coat(tmp_path / "coat", tmp_path / "landing")
