"""KeyIndex behaves like a dict under random batched puts, overwrites and removals."""

import numpy as np

from pipeline.hps.key_index import KeyIndex


def test_random_operations_match_a_dict() -> None:
    rng = np.random.default_rng(0)
    index, reference = KeyIndex(columns=2, capacity=8), {}
    for _ in range(150):
        keys = np.unique(rng.integers(0, 3000, 200))
        values = rng.integers(0, 1 << 40, (len(keys), 2))
        index.put(keys, values)
        reference.update(zip(keys.tolist(), map(tuple, values.tolist())))
        gone = np.unique(rng.integers(0, 3000, 80))
        _, found = index.remove(gone)
        assert found.tolist() == [k in reference for k in gone.tolist()]
        for k in gone.tolist():
            reference.pop(k, None)
        query = rng.integers(0, 3000, 300)
        rows, hit = index.get_rows(query)
        assert hit.tolist() == [k in reference for k in query.tolist()]
        assert [tuple(r) for r in rows[hit].tolist()] == [reference[k] for k in query[hit].tolist()]
        assert len(index) == len(reference)
    keys, values = index.items()
    assert dict(zip(keys.tolist(), map(tuple, values.tolist()))) == reference


def test_set_column_updates_present_keys_only() -> None:
    index = KeyIndex(columns=2)
    index.put(np.array([5, 9]), np.array([[1, 2], [3, 4]]))
    index.set_column(np.array([9, 11]), 1, np.array([40, 99]))
    rows, found = index.get_rows(np.array([5, 9, 11]))
    assert rows[found].tolist() == [[1, 2], [3, 40]]
    assert found.tolist() == [True, True, False]
