"""One conformance suite run against every catalog backend (local folder, S3 through moto on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from forgeflow.catalog import CatalogError, ReadOnlySQLError, UnknownTableError, open_catalog
from forgeflow.catalog.store import safe_key


def rows(n: int, model: str = "m", start: int = 0) -> list[dict]:
    return [{"model": model, "input_shape": [1, 3], "module": f"layer{i}", "module_type": "Conv2d",
             "params": i, "param_bytes": 4 * i, "flops": 10 * i} for i in range(start, start + n)]


def test_append_then_read_roundtrip(catalog):
    key = catalog.append("model_summaries", rows(5), run_id="r1")
    assert key.startswith("tables/model_summaries/day=") and key.endswith(".parquet")
    t = catalog.read("model_summaries")
    assert t.num_rows == 5
    assert sorted(t.column("flops").to_pylist()) == [0, 10, 20, 30, 40]
    assert set(t.column("run_id").to_pylist()) == {"r1"}
    assert t.column("day").to_pylist()[0] == dt.datetime.now(dt.timezone.utc).date().isoformat()


def test_each_append_is_a_new_immutable_file(catalog):
    k1 = catalog.append("model_summaries", rows(2), run_id="a")
    k2 = catalog.append("model_summaries", rows(2), run_id="b")
    assert k1 != k2
    assert catalog.visible_files("model_summaries") == sorted([k1, k2])


def test_read_with_filter_and_columns(catalog):
    catalog.append("model_summaries", rows(10, model="a"), run_id="r1")
    catalog.append("model_summaries", rows(10, model="b"), run_id="r2")
    t = catalog.read("model_summaries", filter=(pc.field("model") == "b") & (pc.field("flops") >= 50),
                     columns=["module", "flops"])
    assert t.column_names == ["module", "flops"]
    assert sorted(t.column("flops").to_pylist()) == [50, 60, 70, 80, 90]


def test_lineage_records_every_file(catalog):
    k = catalog.append("model_summaries", rows(3), run_id="run-x", description="test rows")
    arts = catalog.read("artifacts", filter=pc.field("run_id") == "run-x").to_pylist()
    assert [(a["kind"], a["table_name"], a["path"], a["num_rows"]) for a in arts] == [
        ("table", "model_summaries", k, 3)]


def test_sql_over_tables(catalog):
    catalog.append("model_summaries", rows(4, model="a"), run_id="r1")
    catalog.append("model_summaries", rows(6, model="b"), run_id="r2")
    t = catalog.query("SELECT model, count(*) AS n, sum(flops) AS f FROM model_summaries GROUP BY model ORDER BY model")
    assert t.to_pylist() == [{"model": "a", "n": 4, "f": 60}, {"model": "b", "n": 6, "f": 150}]


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '/tmp/forgeflow-escape.csv'",
    "ATTACH '/tmp/forgeflow-escape.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE t AS SELECT 1",
    "SET enable_external_access = true",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/hostname')",
    "SELECT 1; SELECT 2",
    "PRAGMA version",
])
def test_sql_surface_is_read_only(catalog, sql):
    with pytest.raises(ReadOnlySQLError):
        catalog.query(sql)


@pytest.mark.parametrize("sql,needle", [("SELEC 1", "malformed SQL"), ("", "empty"),
                                        ("SELECT * FROM no_such_table", "no_such_table")])
def test_bad_sql_is_one_clear_error(catalog, sql, needle):
    with pytest.raises(CatalogError, match=needle):
        catalog.query(sql)


def test_unknown_table_and_column(catalog):
    with pytest.raises(UnknownTableError, match="unknown table 'nope'"):
        catalog.append("nope", [{"a": 1}], run_id="r")
    with pytest.raises(CatalogError, match="no column"):
        catalog.append("model_summaries", [{"model": "m", "bogus": 1}], run_id="r")
    with pytest.raises(CatalogError, match="cannot store"):
        catalog.append("model_summaries", [{"model": "m", "flops": "lots"}], run_id="r")
    assert catalog.visible_files("model_summaries") == []  # nothing partial


def test_compaction_keeps_every_row_and_merges_files(catalog):
    for i in range(6):
        catalog.append("model_summaries", rows(3, start=3 * i), run_id=f"r{i}")
    before = sorted(catalog.read("model_summaries").column("flops").to_pylist())
    removed = catalog.compact("model_summaries")
    assert removed == {"model_summaries": 6}
    assert len(catalog.visible_files("model_summaries")) == 1
    assert sorted(catalog.read("model_summaries").column("flops").to_pylist()) == before
    assert sorted(catalog.query("SELECT flops FROM model_summaries").column(0).to_pylist()) == before
    # appends after compaction and a second compaction (of a compacted file) still keep everything
    catalog.append("model_summaries", rows(2, start=100), run_id="late")
    catalog.compact("model_summaries")
    assert catalog.read("model_summaries").num_rows == 20
    assert len(catalog.visible_files("model_summaries")) == 1


def test_compaction_racing_with_writers_loses_nothing(catalog):
    import threading

    for i in range(5):
        catalog.append("model_summaries", rows(2, start=2 * i), run_id=f"pre{i}")
    errors = []

    def writer(w: int) -> None:
        try:
            for j in range(5):
                catalog.append("model_summaries", rows(1, start=1000 + 10 * w + j), run_id=f"w{w}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    catalog.compact("model_summaries")
    catalog.compact("model_summaries")
    for t in threads:
        t.join()
    assert not errors
    assert catalog.read("model_summaries").num_rows == 10 + 15
    catalog.compact("model_summaries")
    assert catalog.read("model_summaries").num_rows == 25


def test_added_column_keeps_old_files_readable(catalog):
    from forgeflow.catalog.tables import get_table

    spec = get_table("model_summaries")
    old_schema = spec.file_schema.remove(spec.file_schema.get_field_index("param_bytes"))
    old = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "param_bytes"} | {"run_id": "old"}
                                for r in rows(3)], schema=old_schema)
    buf = io.BytesIO()
    pq.write_table(old, buf)
    catalog.store.put("tables/model_summaries/day=2020-01-01/part-0-old.parquet", buf.getvalue())
    catalog.append("model_summaries", rows(2), run_id="new")
    t = catalog.read("model_summaries").sort_by("run_id")
    assert t.num_rows == 5
    assert t.column("param_bytes").to_pylist()[:2] == [0, 4]  # new rows
    assert t.filter(pc.field("run_id") == "old").column("param_bytes").null_count == 3
    assert catalog.query("SELECT count(*) FROM model_summaries WHERE day = '2020-01-01'").column(0)[0].as_py() == 3


def test_objects_are_content_addressed(catalog):
    k1 = catalog.put_object(b"weights", ".bin", run_id="r")
    k2 = catalog.put_object(b"weights", ".bin")
    assert k1 == k2 and k1.startswith("objects/")
    assert catalog.get_object(k1) == b"weights"
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2)}
    key = catalog.put_arrays(arrays)
    back = catalog.get_arrays(key)
    assert set(back) == {"w", "b"} and np.array_equal(back["w"], arrays["w"])
    with pytest.raises(CatalogError, match="not found"):
        catalog.get_object("objects/00/" + "0" * 64 + ".bin")


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd/..", "a\\b", "day=$(rm)"])
def test_keys_cannot_escape_the_root(bad):
    with pytest.raises(CatalogError, match="unsafe"):
        safe_key("tables", bad)


def test_runs_view_reports_latest_state(catalog):
    now = dt.datetime.now(dt.timezone.utc)
    catalog.append("runs", [{"flow": "f", "status": "running", "started_at": now}], run_id="r1")
    catalog.append("runs", [{"flow": "f", "status": "completed", "started_at": now,
                             "ended_at": now + dt.timedelta(seconds=1)}], run_id="r1")
    catalog.append("runs", [{"flow": "f", "status": "running", "started_at": now}], run_id="r2")
    states = {r["run_id"]: r["status"] for r in catalog.runs().to_pylist()}
    assert states == {"r1": "completed", "r2": "running"}
    assert catalog.run("r1")["status"] == "completed"
    assert catalog.run("nope") is None


def test_idempotent_append_first_complete_write_wins(catalog):
    k1 = catalog.append("model_summaries", rows(3), run_id="r", idempotency_key="step:summary")
    k2 = catalog.append("model_summaries", rows(3, start=10), run_id="r", idempotency_key="step:summary")
    k3 = catalog.append("model_summaries", rows(1), run_id="other", idempotency_key="step:summary")
    assert k1 == k2 != k3
    t = catalog.read("model_summaries")
    assert t.num_rows == 4  # the retry added no second copy; another run's write is separate
    assert sorted(t.filter(pc.field("run_id") == "r").column("flops").to_pylist()) == [0, 10, 20]
    arts = catalog.read("artifacts", filter=pc.field("table_name") == "model_summaries")
    assert arts.num_rows == 2  # one lineage row per file, retries included
