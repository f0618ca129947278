"""Samples: documented hashed slots, dense features, both sequences; idempotent reruns; delta-rs reads."""

from __future__ import annotations

from datetime import date, timedelta

from deltalake import DeltaTable

from pipeline.slots import SPARSE_SLOTS, dense_names
from pipeline.tables import (EVENTS, SEQUENCES, TABLES, TRAINING_SAMPLES, content_hash, read_arrow, read_table,
                             table_exists, table_path)
from spark_jobs import build_features, build_samples, build_sequences, ingest_events
from tests.spark_jobs.events_factory import at, event, ingest

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)


def _records():
    rows = [event(f"e{d}-{u}-{i}", at(day, 8 + i), user_id=u, item_id=10 * u + i, click=(u + i) % 2,
                  item_category=f"c{i % 3}")
            for d, day in enumerate((D1, D2)) for u in range(3) for i in range(12)]
    rows.append(event("no-attrs", at(D2, 23), user_id=5, item_id=1, user_age=None, item_category=None))
    return rows


def _build(spark, settings, day):
    for job in (build_features, build_sequences, build_samples):
        job.run(spark, settings, day)


def test_samples_carry_slots_dense_features_and_both_sequences(spark, settings):
    ingest(spark, settings, _records())
    _build(spark, settings, D2)
    samples = read_arrow(settings, TRAINING_SAMPLES).to_pandas().set_index("event_id")

    assert len(samples) == 37 and samples.sample_id.is_unique
    buckets = settings.features.hash_buckets
    for slot in SPARSE_SLOTS:
        assert samples[slot.column].between(0, buckets - 1).all(), slot.name
    assert samples.loc["no-attrs", "slot_user_age"] == 0 and samples.loc["no-attrs", "slot_item_category"] == 0
    assert samples.loc["e1-0-0", "slot_user_age"] > 0
    assert samples.slot_user_id.nunique() == 4
    assert samples.slot_item_id.nunique() == samples.item_id.nunique() == 32
    assert all(len(v) == len(dense_names("user")) for v in samples.user_dense)
    teacher_l, student_l = settings.sequences.teacher_length, settings.sequences.student_length
    last = samples.loc["e1-0-11"]
    assert len(last.seq_teacher_items) == min(teacher_l, 12 + 11)
    assert len(last.seq_student_items) == student_l
    assert list(last.seq_student_items) == list(last.seq_teacher_items[:student_l])
    assert list(last.seq_student_gaps) == list(last.seq_teacher_gaps[:student_l])
    # History items share the item_id slot's hashing, so one embedding serves both.
    previous = samples.loc["e1-0-10"]
    assert last.seq_teacher_items[0] == previous.slot_item_id
    # Their categories ride along, hashed as the item_category slot, aligned with the items.
    assert len(last.seq_teacher_categories) == len(last.seq_teacher_items)
    assert last.seq_teacher_categories[0] == previous.slot_item_category
    assert list(last.seq_student_categories) == list(last.seq_teacher_categories[:student_l])
    assert len(set(last.seq_teacher_categories)) == 3
    assert len(samples.loc["no-attrs"].seq_teacher_items) == 0


def test_rerunning_a_date_gives_identical_tables(spark, settings):
    ingest(spark, settings, _records())
    _build(spark, settings, D1)
    _build(spark, settings, D2)
    written = [spec for spec in TABLES.values() if table_exists(settings, spec)]
    assert len(written) == 6
    first = {spec.name: content_hash(read_arrow(settings, spec), spec.key + ("date",)) for spec in written}

    folder = settings.lakehouse.landing / "test" / f"date={D2}"
    ingest_events.run(spark, settings, D2, path=folder)
    _build(spark, settings, D2)
    second = {spec.name: content_hash(read_arrow(settings, spec), spec.key + ("date",)) for spec in written}

    assert first == second
    samples = read_arrow(settings, TRAINING_SAMPLES).to_pandas()
    assert samples.sample_id.is_unique and len(samples) == 73
    assert DeltaTable(table_path(settings, TRAINING_SAMPLES)).version() >= 2  # really rewritten


def test_every_table_reads_back_through_delta_rs_with_matching_counts(spark, settings):
    ingest(spark, settings, _records())
    _build(spark, settings, D2)
    for spec in (EVENTS, SEQUENCES, TRAINING_SAMPLES):
        spark_rows = read_table(spark, settings, spec).count()
        assert read_arrow(settings, spec).num_rows == spark_rows > 0
        assert read_arrow(settings, spec, days=[D2]).num_rows == read_table(spark, settings, spec, D2, D2).count()
    assert read_arrow(settings, EVENTS, days=[D1 - timedelta(days=1)]).num_rows == 0
