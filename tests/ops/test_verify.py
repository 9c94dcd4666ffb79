"""`forgeflow catalog verify` on both backends: a whole catalog passes; each kind of damage is found and named."""

from __future__ import annotations

import json

import pyarrow.compute as pc
from forgeflow.catalog.verify import DAMAGE, NOTICE, ORPHAN, verify_catalog
from tests._cli import run_cli as forgeflow  # in this process: the command's exit codes and output


def _fill(cat, runs: int = 3) -> str:
    """``runs`` runs rows + one object with lineage; returns the object key."""
    for i in range(runs):
        cat.append("runs", [{"flow": "f", "status": "running", "parameters": "{}"}], run_id=f"r{i}")
    return cat.put_object(b"weights-bytes", ".bin", run_id="r0", description="w")


def _kinds(report, severity):
    return sorted((f.kind, f.path) for f in report.findings if f.severity == severity)


def test_whole_catalog_passes_before_and_after_compaction(catalog):
    _fill(catalog)
    report = verify_catalog(catalog)
    assert not report.damaged and report.findings == ()
    assert report.files_checked == 3 + 4 and report.objects_checked == 1 and report.lineage_rows == 4
    catalog.compact()
    report = verify_catalog(catalog)
    # lineage rows of compacted files resolve through the compaction logs
    assert not report.damaged and report.findings == (), report.to_dict()
    assert report.tables == {"runs": 1, "artifacts": 1}


def test_truncated_file_is_damage(catalog):
    _fill(catalog)
    victim = catalog.visible_files("runs")[0]
    catalog.store.put(victim, catalog.store.get(victim)[:-40])  # torn write
    report = verify_catalog(catalog)
    assert report.damaged
    assert ("unreadable-file", victim) in _kinds(report, DAMAGE)


def test_deleted_file_leaves_dangling_lineage(catalog):
    _fill(catalog)
    victim = catalog.visible_files("runs")[1]
    catalog.store.delete(victim)
    report = verify_catalog(catalog)
    assert _kinds(report, DAMAGE) == [("dangling-lineage", victim)]


def test_lost_compaction_output_and_corrupt_object_are_damage(catalog):
    key = _fill(catalog)
    catalog.compact("runs")
    out = catalog.visible_files("runs")[0]
    catalog.store.delete(out)
    catalog.store.put(key, b"tampered", exclusive=False)
    kinds = {k for k, _ in _kinds(verify_catalog(catalog), DAMAGE)}
    assert {"missing-compaction-output", "corrupt-object"} <= kinds
    assert "dangling-lineage" in kinds  # the three runs files' lineage now resolves to nothing


def test_orphans_are_reported_not_damage(catalog):
    from forgeflow.catalog.store import new_file_name

    _fill(catalog, runs=2)
    # a writer that died between its data file and its lineage row
    good = catalog.store.get(catalog.visible_files("runs")[0])
    day_dir = catalog.visible_files("runs")[0].rsplit("/", 1)[0]
    orphan = f"{day_dir}/{new_file_name()}"
    catalog.store.put(orphan, good)
    # a compaction that wrote its output and never committed
    uncommitted = f"{day_dir}/{new_file_name('compact')}"
    catalog.store.put(uncommitted, good)
    # an object stored without lineage
    loose = catalog.put_object(b"no lineage", ".bin")
    report = verify_catalog(catalog)
    assert not report.damaged
    assert _kinds(report, ORPHAN) == sorted([("orphan-file", orphan), ("uncommitted-compaction-output", uncommitted),
                                            ("orphan-object", loose)])
    # readers count the orphan's rows (it is visible) but not the uncommitted output's
    assert catalog.read("runs").num_rows == 3


def test_replaced_file_left_behind_is_a_notice(tmp_path):
    from forgeflow.catalog import open_catalog

    cat = open_catalog(str(tmp_path / "c"))
    _fill(cat)
    before = {k: cat.store.get(k) for k in cat.visible_files("runs")}
    cat.compact("runs")
    for k, data in before.items():  # a compactor that died after its commit, before deleting its inputs
        cat.store.put(k, data)
    report = verify_catalog(cat)
    assert not report.damaged and {f.severity for f in report.findings} == {NOTICE}
    assert cat.read("runs").num_rows == 3  # and readers do not see the rows twice


def test_cli_verify_exit_codes(tmp_path):
    from forgeflow.catalog import open_catalog

    url = str(tmp_path / "c")
    cat = open_catalog(url)
    _fill(cat)
    p = forgeflow("catalog", "verify", "--catalog", url, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["damage"] == 0 and out["files_checked"] == 7
    cat.put_object(b"orphan", ".bin")
    assert forgeflow("catalog", "verify", "--catalog", url).returncode == 0
    assert forgeflow("catalog", "verify", "--catalog", url, "--strict").returncode == 1
    victim = cat.visible_files("runs")[0]
    cat.store.put(victim, b"PAR1 not really parquet")
    p = forgeflow("catalog", "verify", "--catalog", url)
    assert p.returncode == 1
    assert "unreadable-file" in p.stdout and victim in p.stdout and "Traceback" not in p.stderr
    assert cat.read("artifacts", filter=pc.field("path") == victim).num_rows == 1

