"""The one dataset loader (quantize, search and federate): formats, the column convention, one-line errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgeflow.tasks.datasets import DatasetError, load_dataset


def arrays(n=40, d=6, classes=3):
    rng = np.random.default_rng(0)
    return rng.random((n, d)).astype(np.float32), rng.integers(0, classes, n)


def test_digits_default_is_stratified_and_shaped():
    d = load_dataset(None, seed=0)
    assert d.name == "digits" and d.x_train.shape[1:] == (1, 8, 8) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797 and d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64


def test_npz_and_both_parquet_layouts_give_the_same_examples(tmp_path):
    x, y = arrays()
    np.savez(tmp_path / "a.npz", x=x, y=y)
    pq.write_table(pa.table({"y": y, "x": [row.tolist() for row in x]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(6)}, "y": y}), tmp_path / "c.parquet")
    loaded = [load_dataset(tmp_path / f, seed=3) for f in ("a.npz", "b.parquet", "c.parquet")]
    for d in loaded:
        assert len(d.x_test) == 10 and len(d.x_train) == 30
        np.testing.assert_allclose(d.x_train, loaded[0].x_train)
        np.testing.assert_array_equal(d.y_test, loaded[0].y_test)
    assert not np.array_equal(load_dataset(tmp_path / "a.npz", seed=4).x_test, loaded[0].x_test)  # seed matters


def test_given_test_split_is_used_as_is(tmp_path):
    x, y = arrays()
    np.savez(tmp_path / "s.npz", x=x[:30], y=y[:30], x_test=x[30:], y_test=y[30:])
    d = load_dataset(tmp_path / "s.npz")
    np.testing.assert_array_equal(d.x_test, x[30:])


@pytest.mark.parametrize("make, message", [
    (lambda p: p.with_suffix(".txt").write_text("hello"), "expected digits, a .npz"),
    (lambda p: p.with_suffix(".npz").write_text("not a zip"), "not a readable .npz"),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4)),
     r"object \(pickled\) arrays"),
    (lambda p: p.with_suffix(".parquet").write_bytes(b""), "not a readable Parquet file"),
    (lambda p: np.savez(p.with_suffix(".npz"), features=np.ones((4, 2)), y=np.arange(4)), "missing x"),
    (lambda p: pq.write_table(pa.table({"label": [0, 1], "f": [0.1, 0.2]}), p.with_suffix(".parquet")),
     "label column 'y' \\(found label, f\\)"),
    (lambda p: pq.write_table(pa.table({"y": [0, 1], "f": ["a", "b"]}), p.with_suffix(".parquet")), "not numeric"),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.ones((4, 2)), y=np.array([0, 1, -1, 2])), "non-negative"),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.full((4, 2), np.nan), y=np.arange(4)), "NaN"),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.ones((4, 2)), y=np.arange(3)), "4 rows and y shape"),
])
def test_bad_files_give_one_line_naming_the_problem(tmp_path, make, message):
    base = tmp_path / "data"
    make(base)
    path = next(tmp_path.iterdir())
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
