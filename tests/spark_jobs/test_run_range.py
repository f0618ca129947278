"""Multi-date mode: one job over a range writes exactly what the per-day jobs write."""

from __future__ import annotations

from datetime import date, timedelta

from deltalake import DeltaTable

from pipeline.tables import ITEM_FEATURES, SEQUENCES, TRAINING_SAMPLES, USER_FEATURES, content_hash, read_arrow, table_path
from spark_jobs import build_features, build_samples, build_sequences
from tests.spark_jobs.events_factory import at, event, ingest

D1 = date(2026, 1, 1)
DAYS = [D1 + timedelta(days=i) for i in range(4)]
WRITTEN = (USER_FEATURES, ITEM_FEATURES, SEQUENCES, TRAINING_SAMPLES)


def _hashes(settings) -> dict[str, str]:
    return {spec.name: content_hash(read_arrow(settings, spec), (*spec.key, "date")) for spec in WRITTEN}


def test_a_range_run_equals_day_by_day_runs_in_one_commit_per_table(spark, settings):
    # A one-day lookback and a short sequence, so both limits cut histories inside the range.
    settings = settings.model_copy(update={"sequences": settings.sequences.model_copy(
        update={"lookback_days": 1, "teacher_length": 8, "student_length": 4})})
    ingest(spark, settings, [event(f"e{d}-{u}-{i}", at(day, 6 + 3 * i, minute=u), user_id=u, item_id=(7 * d + i) % 9,
                                   click=(u + i + d) % 2)
                             for d, day in enumerate(DAYS) for u in range(3) for i in range(5)])
    for day in DAYS:
        for job in (build_features, build_sequences, build_samples):
            job.run(spark, settings, day)
    per_day = _hashes(settings)
    versions = {spec.name: DeltaTable(table_path(settings, spec)).version() for spec in WRITTEN}

    for job in (build_features, build_sequences, build_samples):
        job.run_range(spark, settings, DAYS[0], DAYS[-1])

    assert _hashes(settings) == per_day
    assert {spec.name: DeltaTable(table_path(settings, spec)).version() for spec in WRITTEN} == {
        name: version + 1 for name, version in versions.items()}
    samples = read_arrow(settings, TRAINING_SAMPLES).to_pandas()
    assert len(samples) == 4 * 15 and samples.seq_teacher_items.map(len).max() == 8
    assert samples[samples.date == DAYS[-1]].seq_teacher_gaps.map(max).max() < 2 * 86_400  # lookback held
