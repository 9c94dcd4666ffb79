"""Catalog benchmark: 1,000,000 rows in 1,000 commits (local folder and S3 on a moto server on 127.0.0.1), a
filtered SQL query before and after compaction, and 8 writer processes x 100 commits at once (rows lost).

    python bench/catalog.py [--rows 1000000] [--commits 1000] [--writers 8] [--writer-commits 100] [--no-s3]

Targets: the filtered query over the compacted 1M rows in <= 1 s locally; 0 rows lost.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


from _report import write_section  # noqa: E402
from forgeflow.catalog import open_catalog  # noqa: E402

QUERY = ("SELECT model, count(*) AS n, sum(flops) AS flops FROM model_summaries "
         "WHERE model = 'model-0042' AND flops > 500000 GROUP BY model")


def batch(commit: int, n: int) -> pa.Table:
    rng = np.random.default_rng(commit)
    return pa.table({
        "model": [f"model-{commit % 100:04d}"] * n,
        "module": [f"layer{i}" for i in range(n)],
        "module_type": ["Conv2d"] * n,
        "params": rng.integers(0, 1_000_000, n),
        "param_bytes": rng.integers(0, 4_000_000, n),
        "flops": rng.integers(0, 1_000_000, n),
    })


def timed(fn, repeats: int = 5) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bulk(url: str, endpoint: str | None, rows: int, commits: int) -> dict:
    cat = open_catalog(url, endpoint_url=endpoint)
    per = rows // commits
    t0 = time.perf_counter()
    for c in range(commits):
        cat.append("model_summaries", batch(c, per), run_id=f"bulk-{c % 10}")
    write_s = time.perf_counter() - t0
    q_before, res_before = timed(lambda: cat.query(QUERY).to_pylist(), repeats=3)
    t0 = time.perf_counter()
    removed = cat.compact("model_summaries")["model_summaries"]
    compact_s = time.perf_counter() - t0
    q_after, res_after = timed(lambda: cat.query(QUERY).to_pylist())
    total = cat.query("SELECT count(*) FROM model_summaries").column(0)[0].as_py()
    assert res_before == res_after, (res_before, res_after)
    return {"rows": total, "commits": commits, "write_s": write_s, "commits_per_s": commits / write_s,
            "rows_per_s": total / write_s, "query_before_s": q_before, "files_before": removed,
            "compact_s": compact_s, "query_after_s": q_after, "files_after": len(cat.visible_files("model_summaries")),
            "result": res_after}


def _writer(url: str, endpoint: str | None, w: int, commits: int, per: int) -> None:
    cat = open_catalog(url, endpoint_url=endpoint)
    for c in range(commits):
        t = batch(w * 100_000 + c, per)
        cat.append("model_summaries", t, run_id=f"writer-{w}")


def concurrent(url: str, endpoint: str | None, writers: int, commits: int, per: int = 10) -> dict:
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_writer, args=(url, endpoint, w, commits, per)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    cat = open_catalog(url, endpoint_url=endpoint)
    expected = writers * commits * per
    got = cat.read("model_summaries").num_rows
    unreadable = 0
    import io

    import pyarrow.parquet as pq

    for f in cat.visible_files("model_summaries"):
        try:
            pq.read_table(io.BytesIO(cat.store.get(f)))
        except Exception:
            unreadable += 1
    return {"writers": writers, "commits_each": commits, "expected_rows": expected, "rows": got,
            "lost": expected - got, "unreadable_files": unreadable, "seconds": seconds,
            "failed_writers": sum(p.exitcode != 0 for p in procs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--writer-commits", type=int, default=100)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["local"] = bulk(f"{tmp}/bulk", None, args.rows, args.commits)
        print("local bulk:", results["local"], flush=True)
        results["local_conc"] = concurrent(f"{tmp}/conc", None, args.writers, args.writer_commits)
        print("local concurrent:", results["local_conc"], flush=True)
    if not args.no_s3:
        import boto3
        from moto.server import ThreadedMotoServer

        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        try:
            results["s3"] = bulk("s3://bench/bulk", endpoint, args.rows, args.commits)
            print("s3 bulk:", results["s3"], flush=True)
            results["s3_conc"] = concurrent("s3://bench/conc", endpoint, args.writers, args.writer_commits)
            print("s3 concurrent:", results["s3_conc"], flush=True)
        finally:
            server.stop()

    lines = ["## Catalog (`bench/catalog.py`)", "",
             f"{args.rows:,} rows written in {args.commits:,} commits (one immutable file each, plus its lineage row), "
             "then the filtered SQL query", "", f"`{QUERY}`", "",
             "timed (best of 3 before / 5 after) before and after `compact`.", "",
             "| store | write (s) | commits/s | query before (s), files | compact (s) | query after (s), files |",
             "|---|---|---|---|---|---|"]
    for name, label in (("local", "local folder"), ("s3", "S3 (moto server, 127.0.0.1)")):
        if name in results:
            r = results[name]
            lines.append(f"| {label} | {r['write_s']:.1f} | {r['commits_per_s']:.0f} | {r['query_before_s']:.3f}, "
                         f"{r['files_before']} | {r['compact_s']:.1f} | {r['query_after_s']:.3f}, {r['files_after']} |")
    lines += ["", f"Concurrent writers: {args.writers} processes x {args.writer_commits} commits x 10 rows at once.", "",
              "| store | expected rows | rows read back | lost | unreadable files | failed writers | seconds |",
              "|---|---|---|---|---|---|---|"]
    for name, label in (("local_conc", "local folder"), ("s3_conc", "S3 (moto)")):
        if name in results:
            r = results[name]
            lines.append(f"| {label} | {r['expected_rows']:,} | {r['rows']:,} | {r['lost']} | {r['unreadable_files']} "
                         f"| {r['failed_writers']} | {r['seconds']:.1f} |")
    q = results["local"]["query_after_s"]
    lost = sum(results[k]["lost"] for k in results if k.endswith("_conc"))
    lines += ["", f"Targets: filtered query over the compacted {results['local']['rows']:,} rows locally "
              f"{q:.3f} s (target <= 1 s: {'met' if q <= 1 else 'MISSED'}); rows lost {lost} "
              f"(target 0: {'met' if lost == 0 else 'MISSED'})."]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("catalog", md)


if __name__ == "__main__":
    main()
