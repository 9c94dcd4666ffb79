"""Issue 17: the catalog never loses a committed row -- racing compactions, verify through compaction chains,
readers during a compaction, multi-output compactions, newer columns, idempotent retries across days, durable
renames, hashes on read, symlinks, the S3 endpoint. Each test reproduces one breach the audit found."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from forgeflow.catalog import CatalogError, ForgeflowError, open_catalog
from forgeflow.catalog.verify import DAMAGE, verify_catalog


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"model": "m", "module": f"l{i}", "flops": i} for i in range(start, start + n)]


def _flops(cat) -> list[int]:
    return sorted(cat.read("model_summaries").column("flops").to_pylist())


def test_store_create_is_exclusive_under_threads(catalog):
    wins = []

    def go(i):
        wins.append(catalog.store.create("tables/x/_claims/one.json", str(i).encode()))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert catalog.store.get("tables/x/_claims/one.json") in {str(i).encode() for i in range(8)}


def test_compaction_whose_log_lands_late_loses_no_row(catalog_url):
    """Item 1: compactor A lists and writes its output, its log write is delayed; B compacts the same files plus a
    newer one and deletes them; then A's log lands. Every row stays readable and verify finds no damage."""
    url, endpoint = catalog_url
    a, b = open_catalog(url, endpoint_url=endpoint), open_catalog(url, endpoint_url=endpoint)
    a.append("model_summaries", rows(2), run_id="r1")
    a.append("model_summaries", rows(2, start=2), run_id="r2")
    in_log_put, release = threading.Event(), threading.Event()
    real_put = a.store.put

    def slow_put(key, data, **kw):
        if "/_compactions/" in key and key.endswith(".json"):
            in_log_put.set()
            release.wait(60)
        return real_put(key, data, **kw)

    a.store.put = slow_put
    t = threading.Thread(target=a.compact, args=("model_summaries",))
    t.start()
    assert in_log_put.wait(60)
    b.append("model_summaries", rows(2, start=4), run_id="r3")
    b.compact("model_summaries")
    release.set()
    t.join(60)
    assert _flops(b) == list(range(6))
    b.compact("model_summaries")
    assert _flops(b) == list(range(6))
    assert not verify_catalog(b).damaged


def test_verify_follows_compaction_chains(catalog):
    """Item 2: two runs rows, compact, one more row, compact, verify -> ok (was missing-compaction-output)."""
    for i in range(2):
        catalog.append("runs", [{"flow": "f", "status": "running"}], run_id=f"r{i}")
    catalog.compact()
    catalog.append("runs", [{"flow": "f", "status": "running"}], run_id="r2")
    catalog.compact()
    report = verify_catalog(catalog)
    assert not report.damaged, report.to_dict()
    assert report.lineage_rows == 3
    assert catalog.read("runs").num_rows == 3


def test_reader_listing_during_a_commit_misses_no_row(tmp_path):
    """Item 3: a compaction commits and deletes its inputs right after a reader listed the data files."""
    url = str(tmp_path / "c")
    reader, compactor = open_catalog(url), open_catalog(url)
    for i in range(4):
        reader.append("model_summaries", rows(1, start=i), run_id=f"r{i}")
    real_list = reader.store.list
    fired = []

    def list_then_compact(prefix):
        out = real_list(prefix)
        if prefix == "tables/model_summaries" and not fired:
            fired.append(1)
            compactor.compact("model_summaries")
        return out

    reader.store.list = list_then_compact
    assert reader.count_rows("model_summaries") == 4
    assert fired


def test_multi_output_compaction_killed_after_its_log_keeps_every_row(catalog, monkeypatch):
    """Item 4: a compaction writing several outputs dies right after its first log put (12 -> 5 rows before)."""
    from forgeflow.catalog.compaction import compact_table
    from forgeflow.catalog.tables import get_table

    for i in range(4):
        catalog.append("model_summaries", rows(3, start=3 * i), run_id=f"r{i}")
    real_put = catalog.store.put
    puts = []

    def dying_put(key, data, **kw):
        if "/_compactions/" in key:
            puts.append(key)
            if len(puts) == 2:
                raise KeyboardInterrupt("killed")
        return real_put(key, data, **kw)

    catalog.store.put = dying_put
    with pytest.raises(KeyboardInterrupt):
        compact_table(catalog, get_table("model_summaries"), max_rows_per_file=5)
    catalog.store.put = real_put
    assert _flops(catalog) == list(range(12))
    assert not verify_catalog(catalog).damaged


def test_compaction_carries_columns_of_a_newer_schema(catalog):
    """Item 5: a file written by a newer forgeflow (an extra column) keeps that column through compaction."""
    from forgeflow.catalog.tables import get_table

    spec = get_table("model_summaries")
    catalog.append("model_summaries", rows(2), run_id="old")
    day = catalog.visible_files("model_summaries")[0].split("/")[2]
    newer = pa.Table.from_pylist([{"model": "m", "module": "x", "flops": 99, "run_id": "new", "energy_j": 1.5}])
    newer = newer.replace_schema_metadata({"forgeflow.table": spec.name,
                                           "forgeflow.schema_version": str(spec.version + 1)})
    buf = io.BytesIO()
    pq.write_table(newer, buf)
    catalog.store.put(f"tables/model_summaries/{day}/part-00000000000000000001-newer0000000.parquet", buf.getvalue())
    catalog.compact("model_summaries")
    (out,) = catalog.visible_files("model_summaries")
    merged = pq.read_table(io.BytesIO(catalog.store.get(out)))
    assert "energy_j" in merged.column_names
    assert sorted(v for v in merged.column("energy_j").to_pylist() if v is not None) == [1.5]
    assert _flops(catalog) == [0, 1, 99]
    assert not verify_catalog(catalog).damaged


def test_idempotent_retry_across_midnight_and_after_compaction(catalog, monkeypatch):
    """Item 6: a retry on the next UTC day, or after its first write was compacted, adds no second copy."""
    import forgeflow.catalog.catalog as cc

    day1 = dt.datetime(2030, 1, 1, 23, 59, 59, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(cc, "_now", lambda: day1)
    k1 = catalog.append("model_summaries", rows(3), run_id="r", idempotency_key="step")
    catalog.append("model_summaries", rows(1, start=50), run_id="x")
    monkeypatch.setattr(cc, "_now", lambda: day1 + dt.timedelta(seconds=2))
    k2 = catalog.append("model_summaries", rows(3), run_id="r", idempotency_key="step")
    assert k1 == k2 and "day=2030-01-01" in k2
    catalog.compact()
    k3 = catalog.append("model_summaries", rows(3), run_id="r", idempotency_key="step")
    assert k3 == k1
    assert _flops(catalog) == [0, 1, 2, 50]
    assert catalog.read("artifacts", filter=pc.field("table_name") == "model_summaries").num_rows == 2
    assert not verify_catalog(catalog).damaged


def test_local_put_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    """Item 7: the rename that publishes a file is made durable (fsync of its folder)."""
    cat = open_catalog(str(tmp_path / "c"))
    opened: dict[int, str] = {}
    synced: list[str] = []
    real_open, real_fsync = os.open, os.fsync

    def spy_open(path, flags, *a, **kw):
        fd = real_open(path, flags, *a, **kw)
        opened[fd] = str(path)
        return fd

    def spy_fsync(fd):
        synced.append(opened.get(fd, "?"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    key = cat.append("model_summaries", rows(1), run_id="r")
    assert str((tmp_path / "c" / key).parent) in synced


def test_object_reads_check_the_hash(catalog):
    """Item 8: a tampered object is refused on read with an error naming its key."""
    key = catalog.put_arrays({"w": __import__("numpy").ones(3)})
    catalog.store.put(key, catalog.store.get(key)[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(CatalogError, match=key.replace(".", r"\.") + ".*corrupt"):
        catalog.get_arrays(key)


def test_truncated_safetensors_is_one_clear_error(catalog):
    import hashlib

    blob = catalog.get_object(catalog.put_arrays({"w": __import__("numpy").ones(30)}))[:20]
    key = catalog.put_object(blob, ".safetensors")
    assert hashlib.sha256(blob).hexdigest() in key
    with pytest.raises(CatalogError, match="not a readable safetensors"):
        catalog.get_arrays(key)


def test_symlinks_cannot_lead_out_of_a_local_catalog(tmp_path):
    """Item 9: a symlink inside the catalog does not make reads or appends go outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"secret")
    cat = open_catalog(str(tmp_path / "c"))
    (tmp_path / "c" / "tables").mkdir(exist_ok=True)
    os.symlink(outside, tmp_path / "c" / "tables" / "model_summaries")
    with pytest.raises(CatalogError, match="outside the catalog root"):
        cat.append("model_summaries", rows(1), run_id="r")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.bin"]
    import hashlib

    digest = hashlib.sha256(b"secret").hexdigest()
    (tmp_path / "c" / "objects" / digest[:2]).mkdir(parents=True)
    os.symlink(outside / "secret.bin", tmp_path / "c" / "objects" / digest[:2] / f"{digest}.bin")
    with pytest.raises(CatalogError, match="outside the catalog root"):
        cat.get_object(f"objects/{digest[:2]}/{digest}.bin")


def test_s3_endpoint_travels_with_the_catalog_url(s3_server):
    """Item 10: a catalog opened with ?endpoint_url= reopens from its own url at the same endpoint."""
    from tests.conftest import make_bucket

    bucket = make_bucket(s3_server)
    cat = open_catalog(f"s3://{bucket}/c?endpoint_url={s3_server}")
    cat.append("runs", [{"flow": "f", "status": "running"}], run_id="r")
    assert s3_server in cat.url
    again = open_catalog(cat.url)  # as a flow or a Dask worker reopens it
    assert again.read("runs").num_rows == 1
    flag = open_catalog(f"s3://{bucket}/c", endpoint_url=s3_server)
    assert flag.url == cat.url


def test_credentials_in_the_endpoint_are_refused_not_echoed():
    with pytest.raises(CatalogError) as exc:
        open_catalog("s3://bucket/x", endpoint_url="http://user:hunter2secret@127.0.0.1:9/")
    assert "hunter2secret" not in str(exc.value) and "credentials" in str(exc.value)
    with pytest.raises(CatalogError) as exc:
        open_catalog("s3://bucket/x?endpoint_url=http://user:hunter2secret@127.0.0.1:9/")
    assert "hunter2secret" not in str(exc.value)


def test_zero_byte_parquet_is_one_clear_error_and_compaction_skips_it(tmp_path):
    """Item 13: a 0-byte Parquet file: reads fail with one CatalogError, compaction leaves it and merges the rest,
    verify names it."""
    cat = open_catalog(str(tmp_path / "c"))
    for i in range(3):
        cat.append("runs", [{"flow": "f", "status": "running"}], run_id=f"r{i}")
    day = cat.visible_files("runs")[0].rsplit("/", 1)[0]
    cat.store.put(f"{day}/part-00000000000000000000-empty0000000.parquet", b"")
    with pytest.raises(CatalogError, match="cannot read table 'runs'"):
        cat.count_rows("runs")
    before = sorted(cat.store.list("tables"))
    with pytest.raises(CatalogError, match="is not a readable Parquet file.*nothing was compacted"):
        cat.compact()
    assert sorted(cat.store.list("tables")) == before
    from forgeflow.catalog.compaction import compact_table  # the compactor itself skips what it cannot decode
    from forgeflow.catalog.tables import get_table

    assert compact_table(cat, get_table("runs")) == 3
    report = verify_catalog(cat)
    assert [f.kind for f in report.findings if f.severity == DAMAGE] == ["unreadable-file"]


def test_query_cannot_touch_duckdb_temp_folder(tmp_path, monkeypatch):
    """Item 14: DuckDB's auto-allowed temporary folder is not readable or listable from SQL."""
    from forgeflow.catalog import ReadOnlySQLError

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "x.csv").write_text("secret,1\n")
    cat = open_catalog(str(tmp_path / "c"))
    for sql in ["SELECT * FROM read_csv('.tmp/x.csv')", "SELECT * FROM glob('.tmp/*')"]:
        with pytest.raises(ReadOnlySQLError):
            cat.query(sql)
    assert cat.query("SELECT current_setting('memory_limit') AS m").column(0)[0].as_py() != ""


def test_query_timeout_and_memory_limit(tmp_path):
    from forgeflow.catalog.sql import default_memory_limit

    cat = open_catalog(str(tmp_path / "c"), query_timeout_s=0.5)
    with pytest.raises(CatalogError, match="timeout"):
        cat.query("SELECT count(*) FROM range(100000000000) a")
    with pytest.raises(CatalogError, match="query timeout 'soon'"):
        open_catalog(str(tmp_path / "c"), query_timeout_s="soon").query("SELECT 1")
    limit = default_memory_limit()
    assert limit.endswith("MiB") and 256 <= int(limit[:-3]) <= 4096
    mem = cat.query("SELECT current_setting('memory_limit') AS m").column(0)[0].as_py()
    assert "GiB" in mem or "MiB" in mem
    small = open_catalog(str(tmp_path / "c"), query_memory="300MiB")
    assert small.query("SELECT current_setting('memory_limit') AS m").column(0)[0].as_py() == "300.0 MiB"


def test_query_limits_come_from_the_settings(tmp_path, monkeypatch):
    """FORGEFLOW_QUERY_* are read once, by flows' Settings, validated there, and passed down to the catalog."""
    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.flows.settings import load_settings

    monkeypatch.setenv("FORGEFLOW_QUERY_TIMEOUT_S", "0.5")
    monkeypatch.setenv("FORGEFLOW_QUERY_MEMORY", "300MiB")
    cat = open_settings_catalog(load_settings(catalog=str(tmp_path / "c")))
    assert (cat.query_timeout_s, cat.query_memory) == (0.5, "300MiB")
    monkeypatch.setenv("FORGEFLOW_QUERY_TIMEOUT_S", "soon")
    with pytest.raises(ForgeflowError, match="FORGEFLOW_QUERY_TIMEOUT_S"):
        load_settings()
    monkeypatch.setenv("FORGEFLOW_QUERY_TIMEOUT_S", "5")
    monkeypatch.setenv("FORGEFLOW_QUERY_MEMORY", "lots")
    with pytest.raises(ForgeflowError, match="FORGEFLOW_QUERY_MEMORY"):
        load_settings()


def test_legacy_logs_still_apply(tmp_path):
    """Catalogs compacted by earlier forgeflow (one log per output, 'replaced' lists) read the same."""
    cat = open_catalog(str(tmp_path / "c"))
    keys = [cat.append("model_summaries", rows(1, start=i), run_id=f"r{i}") for i in range(3)]
    day = keys[0].rsplit("/", 1)[0]
    merged = pa.concat_tables([pq.read_table(io.BytesIO(cat.store.get(k))) for k in keys])
    buf = io.BytesIO()
    pq.write_table(merged, buf)
    out = f"{day}/compact-00000000000000000009-legacy000000.parquet"
    cat.store.put(out, buf.getvalue())
    cat.store.put("tables/model_summaries/_compactions/00000000000000000010-aaaa.json",
                  json.dumps({"output": out, "replaced": keys}).encode())
    for k in keys:
        cat.store.delete(k)
    assert _flops(cat) == [0, 1, 2]
    assert not verify_catalog(cat).damaged


def _kill_at_first_claim(catalog):
    """A compaction of every model_summaries file, killed (like kill -9) right after its first claim."""
    from forgeflow.catalog.compaction import compact_table
    from forgeflow.catalog.tables import get_table

    def die(step):
        if step == "claimed":
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        compact_table(catalog, get_table("model_summaries"), _pause=die)


def _pending(catalog) -> list:
    return [f for f in verify_catalog(catalog).findings if f.kind == "compaction-not-committed"]


def test_compactor_killed_mid_claim_is_settled_after_the_grace_period(catalog, monkeypatch):
    """A compactor killed between claims used to lock its inputs out of compaction forever; after the grace
    period the next compaction finishes its log (or voids it when it cannot commit: here its output is gone)."""
    for i in range(4):
        catalog.append("model_summaries", rows(1, start=i), run_id=f"r{i}")
    _kill_at_first_claim(catalog)
    catalog.compact("model_summaries")  # within the grace period: its inputs are left alone
    assert _flops(catalog) == list(range(4)) and len(catalog.visible_files("model_summaries")) == 4
    assert len(_pending(catalog)) == 1
    for k in catalog.store.list("tables/model_summaries"):
        if "/compact-" in k:
            catalog.store.delete(k)  # its (invisible) output lost: it can only be voided
    catalog.compaction_grace_s = 0  # FORGEFLOW_COMPACTION_GRACE_S=0, passed down by flows' Settings
    catalog.compact("model_summaries")  # voided, then its inputs compacted
    assert _flops(catalog) == list(range(4)) and len(catalog.visible_files("model_summaries")) == 1
    report = verify_catalog(catalog)
    assert not report.damaged and not _pending(catalog)
    assert not [f for f in report.findings if f.kind == "uncommitted-compaction-output"]
    logs = set(catalog.store.list("tables/model_summaries/_compactions"))
    assert all(json.loads(catalog.store.get(k))["log"] in logs
               for k in catalog.store.list("tables/model_summaries/_claims"))  # no claim of the voided log left


def test_compactor_killed_mid_claim_is_finished_when_nothing_else_claimed(catalog, monkeypatch):
    from forgeflow.catalog.compaction import settle_stale

    for i in range(3):
        catalog.append("model_summaries", rows(2, start=2 * i), run_id=f"r{i}")
    _kill_at_first_claim(catalog)
    assert settle_stale(catalog.store, "model_summaries", 3600) == {"finished": 0, "voided": 0}  # too young
    assert settle_stale(catalog.store, "model_summaries", 0) == {"finished": 1, "voided": 0}
    assert settle_stale(catalog.store, "model_summaries", 0) == {"finished": 0, "voided": 0}  # once only
    assert _flops(catalog) == list(range(6)) and len(catalog.visible_files("model_summaries")) == 1
    assert not verify_catalog(catalog).damaged and not _pending(catalog)
    catalog.compaction_grace_s = "soon"
    with pytest.raises(CatalogError, match="compaction grace period 'soon'"):
        catalog.compact()
    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.flows.settings import load_settings

    monkeypatch.setenv("FORGEFLOW_COMPACTION_GRACE_S", "0")
    assert open_settings_catalog(load_settings(catalog=catalog.url)).compaction_grace_s == 0.0
    monkeypatch.setenv("FORGEFLOW_COMPACTION_GRACE_S", "soon")
    with pytest.raises(ForgeflowError, match="FORGEFLOW_COMPACTION_GRACE_S"):
        load_settings()


def test_a_stalled_compactor_taken_over_backs_off(tmp_path):
    """A compactor stalled past the grace period resumes after a settler finished its log: it deletes nothing
    (the settler did) and every row stays."""
    from forgeflow.catalog.compaction import compact_table, settle_stale
    from forgeflow.catalog.tables import get_table

    cat = open_catalog(str(tmp_path / "cat"))
    for i in range(3):
        cat.append("model_summaries", rows(1, start=i), run_id=f"r{i}")
    settled = []

    def stall(step):
        if step == "claimed" and not settled:
            settled.append(settle_stale(open_catalog(str(tmp_path / "cat")).store, "model_summaries", 0))

    compact_table(cat, get_table("model_summaries"), _pause=stall)
    assert settled == [{"finished": 1, "voided": 0}]
    assert _flops(cat) == [0, 1, 2] and len(cat.visible_files("model_summaries")) == 1
    assert not verify_catalog(cat).damaged


def test_footer_check_skips_a_file_a_concurrent_compaction_consumed(tmp_path, monkeypatch):
    """On S3 a file deleted by another compactor while its footer is read fails with an odd error, not 'not found':
    the check re-snapshots and goes on instead of reporting a healthy catalog as damaged; a file that is still there
    and still visible is reported."""
    import forgeflow.catalog.catalog as catalog_mod

    cat = open_catalog(str(tmp_path / "c"))
    for i in range(3):
        cat.append("runs", [{"flow": "f", "status": "running"}], run_id=f"r{i}")
    victim = cat.visible_files("runs")[0]
    real = catalog_mod.pq.read_metadata

    def racing(path, filesystem=None):
        if path.endswith(victim):
            cat.store.delete(victim)  # the other compactor finished and removed its input meanwhile
            raise OSError("Unexpected end of stream: Page was smaller (0) than expected")
        return real(path, filesystem=filesystem)

    monkeypatch.setattr(catalog_mod.pq, "read_metadata", racing)
    cat._check_footers(["runs"])  # no false alarm

    def damaged(path, filesystem=None):
        raise OSError("Parquet magic bytes not found in footer")

    monkeypatch.setattr(catalog_mod.pq, "read_metadata", damaged)
    with pytest.raises(CatalogError, match="is not a readable Parquet file"):
        cat._check_footers(["runs"])
