"""The accuracy-bytes-epsilon front: dominance, and the front stored as catalog rows plus a PNG object."""

import json
import math

import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.federated.front import FrontPoint, pareto_mask, points_from_runs, store_front

POINTS = [
    FrontPoint("dense, record DP", 0.93, 2_340_000, 8.0, "none", "record"),
    FrontPoint("randk:0.09:shared, record DP", 0.89, 219_600, 8.0, "randk:0.09:shared", "record"),
    FrontPoint("randk:0.09, record DP", 0.88, 219_600, 8.0, "randk:0.09", "record"),  # dominated by the shared mask
    FrontPoint("dense, record DP, eps 4", 0.90, 2_340_000, 4.0, "none", "record"),  # lower epsilon keeps it
    FrontPoint("dense", 0.97, 2_340_000),  # no DP: best accuracy, unbounded epsilon
    FrontPoint("dense twice the bytes", 0.97, 4_680_000),  # dominated: same accuracy and epsilon, more bytes
]


def test_pareto_mask_keeps_exactly_the_undominated_points():
    assert pareto_mask(POINTS) == [True, True, False, True, True, False]
    assert pareto_mask(POINTS[:1]) == [True]


def test_points_from_federated_runs_rows_read_compression_and_privacy():
    cfg = {"compression": {"kind": "randk", "ratio": 0.09, "error_feedback": True, "shared_mask": True},
           "privacy": {"mode": "record"}}
    (p,) = points_from_runs([{"config": json.dumps(cfg), "accuracy": 0.89, "uplink_bytes": 219600, "epsilon": 7.99,
                              "run_key": "k1"}])
    assert (p.compression, p.dp, p.epsilon, p.run_key) == ("randk:0.09:shared", "record", 7.99, "k1")
    (q,) = points_from_runs([{"config": json.dumps({}), "accuracy": 0.9, "uplink_bytes": 1, "epsilon": None}])
    assert math.isinf(q.epsilon) and q.dp == "none"


def test_store_front_writes_rows_and_a_png_object(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    out = store_front(cat, "run-1", POINTS, title="test front")
    rows = cat.query(f"SELECT label, on_front, epsilon, plot_key FROM federated_fronts "
                     f"WHERE front_id = '{out['front_id']}' ORDER BY label").to_pylist()
    assert len(rows) == len(POINTS)
    assert {r["label"] for r in rows if r["on_front"]} == {p.label for p, on in zip(POINTS, pareto_mask(POINTS)) if on}
    assert {r["plot_key"] for r in rows} == {out["plot_key"]}
    assert cat.get_object(out["plot_key"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(r["epsilon"] is None for r in rows) == 2  # no-DP points store a null epsilon, not inf
    with pytest.raises(ValueError, match="at least one run"):
        store_front(cat, "run-2", [])
