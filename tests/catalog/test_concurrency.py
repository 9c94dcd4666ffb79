"""Several processes append at once: afterwards every row is there and every file is readable."""

from __future__ import annotations

import io
import multiprocessing as mp

import pyarrow.parquet as pq


def _writer(url: str, endpoint: str | None, writer: int, commits: int, rows_per_commit: int) -> None:
    from forgeflow.catalog import open_catalog

    cat = open_catalog(url, endpoint_url=endpoint)
    for c in range(commits):
        cat.append("model_summaries", [
            {"model": f"w{writer}", "module": f"c{c}r{r}", "flops": writer * 1_000_000 + c * 1000 + r}
            for r in range(rows_per_commit)], run_id=f"writer-{writer}")


def test_processes_write_at_once(catalog_url):
    url, endpoint = catalog_url
    from forgeflow.catalog import open_catalog

    cat = open_catalog(url, endpoint_url=endpoint)
    writers, commits, per = 4, 10, 7
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, endpoint, w, commits, per)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    t = cat.read("model_summaries")
    assert t.num_rows == writers * commits * per
    assert len(set(t.column("flops").to_pylist())) == writers * commits * per
    files = cat.visible_files("model_summaries")
    assert len(files) == writers * commits
    for f in files:  # every file is whole and holds one commit
        assert pq.read_table(io.BytesIO(cat.store.get(f))).num_rows == per
    assert cat.read("artifacts").num_rows == writers * commits
