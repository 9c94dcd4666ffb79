"""Client splits (IID / Dirichlet) and user data sets from .npz and Parquet."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgeflow.tasks.datasets import DatasetError
from forgeflow.tasks.federated.config import FederatedConfigError
from forgeflow.tasks.federated.data import build_dataset, split_dirichlet, split_iid


def test_splits_partition_the_examples():
    y = np.repeat(np.arange(10), 50)
    for parts in (split_iid(len(y), 7, 0), split_dirichlet(y, 7, 0.3, 0, min_samples=5)):
        allix = np.concatenate(parts)
        assert len(allix) == len(y) and len(np.unique(allix)) == len(y)
    assert {len(p) for p in split_iid(len(y), 7, 0)} <= {71, 72}
    assert min(len(p) for p in split_dirichlet(y, 7, 0.3, 0, min_samples=5)) >= 5


def test_small_alpha_concentrates_labels():
    y = np.repeat(np.arange(10), 100)

    def mean_labels_per_client(alpha):
        parts = split_dirichlet(y, 20, alpha, 1, min_samples=2)
        return np.mean([np.sum(np.bincount(y[p], minlength=10) >= 0.05 * len(p)) for p in parts])

    assert mean_labels_per_client(0.1) < mean_labels_per_client(100.0) - 3


def test_user_npz_and_parquet(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((120, 5), dtype=np.float32), rng.integers(0, 3, 120)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = build_dataset(str(tmp_path / "d.npz"), 4, None, 0)
    assert d.num_classes == 3 and d.x_train.shape[1:] == (5,) and len(d.y_train) + len(d.y_test) == 120
    table = pa.table({"y": y, **{f"f{i}": x[:, i] for i in range(5)}})
    pq.write_table(table, tmp_path / "d.parquet")
    p = build_dataset(str(tmp_path / "d.parquet"), 4, 1.0, 0)
    assert p.x_train.shape[1:] == (5,) and p.num_clients == 4
    with pytest.raises(DatasetError, match="not found"):
        build_dataset(str(tmp_path / "missing.npz"), 4, None, 0)
    np.savez(tmp_path / "bad.npz", x=x, y=y[:-1])
    with pytest.raises(DatasetError, match="rows"):
        build_dataset(str(tmp_path / "bad.npz"), 4, None, 0)
    with pytest.raises(FederatedConfigError, match="clients"):
        build_dataset(str(tmp_path / "d.npz"), 500, 0.3, 0)
