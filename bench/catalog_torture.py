"""Catalog torture: writers append while compactors race, and random ``kill -9`` hits both; nothing may be lost.

Each trial starts a fresh catalog (a local folder, or a bucket on moto's S3 server on 127.0.0.1) and runs
- W writer processes, each appending N one-row commits (row id = writer * 1e6 + i) with an idempotency key, and
  recording the id in its acknowledgement file (fsynced) only after ``append`` returned;
- C compactor processes compacting ``model_summaries`` and ``artifacts`` in a loop;
- a killer that every 1-4 s (``--kill-every``) sends SIGKILL to a random writer or compactor and starts it again (a restarted
  writer resumes after its last acknowledged id: the commit in flight is retried under the same idempotency key);
- a reader (this process) that repeatedly reads the acknowledgement files, then the table, and checks every
  acknowledged id is there (a committed row is never seen missing) and none is there twice.
At the end: one more compaction, a final read (every acknowledged id exactly once) and ``catalog verify``
(``forgeflow catalog verify`` logic, in process) with no damage.

    python bench/catalog_torture.py --trials 20 --backend both            # the issue's full run
    python bench/catalog_torture.py --trials 2 --appends 50 --backend local   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "model_summaries"


# ---------------------------------------------------------------- child processes


def writer_main(url: str, endpoint: str | None, w: int, n: int, ack: str) -> None:
    from forgeflow.catalog import open_catalog

    cat = open_catalog(url, endpoint_url=endpoint)
    done = set()
    if os.path.exists(ack):
        done = {int(x) for x in Path(ack).read_text().split()}
    with open(ack, "a") as f:
        for i in range(n):
            rid = w * 1_000_000 + i
            if rid in done:
                continue
            cat.append(TABLE, [{"model": f"w{w}", "module": str(i), "flops": rid}], run_id=f"writer-{w}",
                       idempotency_key=f"row:{rid}")
            f.write(f"{rid}\n")
            f.flush()
            os.fsync(f.fileno())


def compactor_main(url: str, endpoint: str | None, seed: int) -> None:
    from forgeflow.catalog import open_catalog

    rng = random.Random(seed)
    cat = open_catalog(url, endpoint_url=endpoint)
    while True:
        cat.compact(TABLE)
        cat.compact("artifacts")
        time.sleep(rng.uniform(0.0, 0.3))


# ---------------------------------------------------------------- orchestration


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _acked(ack_dir: Path, writers: int) -> set[int]:
    out: set[int] = set()
    for w in range(writers):
        p = ack_dir / f"w{w}.ack"
        if p.exists():
            # a line is only complete once its newline is written
            text = p.read_text()
            out |= {int(x) for x in text[: text.rfind("\n") + 1].split()}
    return out


def run_trial(backend: str, args, trial: int, endpoint: str | None) -> dict:
    from forgeflow.catalog import open_catalog
    from forgeflow.catalog.verify import verify_catalog

    rng = random.Random(args.seed * 1000 + trial)
    tmp = Path(tempfile.mkdtemp(prefix="ff-torture-"))
    if backend == "local":
        url = str(tmp / "catalog")
    else:
        import boto3

        bucket = f"torture-{os.getpid()}-{trial}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/c"
    cat = open_catalog(url, endpoint_url=endpoint)
    env = dict(os.environ)
    ep = endpoint or ""
    writers = {w: _spawn(["_writer", url, ep, str(w), str(args.appends), str(tmp / f"w{w}.ack")], env)
               for w in range(args.writers)}
    compactors = {c: _spawn(["_compactor", url, ep, str(rng.randrange(1 << 30))], env) for c in range(args.compactors)}
    kills = {"writer": 0, "compactor": 0}
    reads = reader_missing = reader_dups = rows_seen = 0
    errors: list[str] = []
    lo, hi = args.kill_every
    next_kill = time.time() + rng.uniform(lo, hi)
    t0 = time.time()
    while True:
        finished = [w for w, p in writers.items() if p.poll() is not None]
        for w in finished:
            p = writers[w]
            if p.returncode != 0 and p.returncode != -signal.SIGKILL:
                errors.append(f"writer {w} exited {p.returncode}: {p.stderr.read().decode()[-400:]}")
        if len(_acked(tmp, args.writers)) == args.writers * args.appends:
            break
        if len(errors) > 20:
            break
        for w in finished:  # a writer that died on its own (not killed by us) is restarted too
            writers[w] = _spawn(["_writer", url, ep, str(w), str(args.appends), str(tmp / f"w{w}.ack")], env)
        for c, p in list(compactors.items()):
            if p.poll() is not None:
                if p.returncode != -signal.SIGKILL:
                    errors.append(f"compactor {c} exited {p.returncode}: {p.stderr.read().decode()[-400:]}")
                compactors[c] = _spawn(["_compactor", url, ep, str(rng.randrange(1 << 30))], env)
        if time.time() >= next_kill:
            kind = rng.choice(["writer", "compactor"])
            pool = writers if kind == "writer" else compactors
            victim = rng.choice(list(pool))
            if pool[victim].poll() is None:
                pool[victim].send_signal(signal.SIGKILL)
                pool[victim].wait()
                kills[kind] += 1
            next_kill = time.time() + rng.uniform(lo, hi)
        # the reader: every id acknowledged before the read began must be in it, once
        acked = _acked(tmp, args.writers)
        ids = cat.read(TABLE, columns=["flops"]).column("flops").to_pylist()
        reads += 1
        rows_seen += len(acked)
        reader_missing += len(acked - set(ids))
        reader_dups += len(ids) - len(set(ids))
        time.sleep(0.05)
        if time.time() - t0 > args.trial_timeout:
            errors.append(f"trial timed out after {args.trial_timeout} s")
            break
    for p in [*writers.values(), *compactors.values()]:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    cat.compact()
    acked = _acked(tmp, args.writers)
    ids = cat.read(TABLE, columns=["flops"]).column("flops").to_pylist()
    report = verify_catalog(cat)
    damage = [f"{f.kind} {f.path}" for f in report.findings if f.severity == "damage"]
    result = {"backend": backend, "trial": trial, "acked": len(acked), "rows": len(ids),
              "lost": len(acked - set(ids)), "duplicates": len(ids) - len(set(ids)),
              "reads": reads, "reader_rows_checked": rows_seen, "reader_missing": reader_missing,
              "reader_duplicates": reader_dups, "kills": kills, "verify_ok": not report.damaged,
              "damage": damage[:5], "notices": report.count("notice"), "orphans": report.count("orphan"),
              "errors": errors[:3], "seconds": round(time.time() - t0, 1)}
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--compactors", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-every", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN_S", "MAX_S"),
                    help="seconds between two kills, drawn uniformly (default 1 4)")
    ap.add_argument("--trial-timeout", type=float, default=900)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    backends = ["local", "s3"] if args.backend == "both" else [args.backend]
    results = []
    server = endpoint = None
    if "s3" in backends:
        import logging
        import socket

        from moto.server import ThreadedMotoServer

        os.environ.update(AWS_ACCESS_KEY_ID="torture", AWS_SECRET_ACCESS_KEY="torture-secret",
                          AWS_DEFAULT_REGION="us-east-1")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
    try:
        for backend in backends:
            for trial in range(args.trials):
                r = run_trial(backend, args, trial, endpoint if backend == "s3" else None)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        if server is not None:
            server.stop()
    lines = ["## Catalog torture (`bench/catalog_torture.py`)", "",
             f"{args.writers} writer processes x {args.appends} one-row appends (idempotency keys) beside "
             f"{args.compactors} compactor processes, SIGKILL of a random writer or compactor every {args.kill_every[0]:g}-{args.kill_every[1]:g} s "
             f"(restarted at once), a reader checking every acknowledged row after each read; then a final "
             f"compaction, read and `catalog verify`.", "",
             "| backend | trials | acknowledged rows checked (final) | rows lost | rows twice | reader checks | "
             "reader saw missing | kills (writer/compactor) | verify ok | errors | s/trial |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for backend in backends:
        rs = [r for r in results if r["backend"] == backend]
        s = {"trials": len(rs), "rows_checked": sum(r["acked"] for r in rs), "lost": sum(r["lost"] for r in rs),
             "duplicates": sum(r["duplicates"] for r in rs),
             "reader_checks": sum(r["reader_rows_checked"] for r in rs),
             "reader_missing": sum(r["reader_missing"] + r["reader_duplicates"] for r in rs),
             "kills_w": sum(r["kills"]["writer"] for r in rs), "kills_c": sum(r["kills"]["compactor"] for r in rs),
             "verify_ok": sum(r["verify_ok"] for r in rs), "errors": sum(len(r["errors"]) for r in rs),
             "seconds": sum(r["seconds"] for r in rs) / max(1, len(rs))}
        summary[backend] = s
        lines.append(f"| {backend} | {s['trials']} | {s['rows_checked']:,} | {s['lost']} | {s['duplicates']} | "
                     f"{s['reader_checks']:,} | {s['reader_missing']} | {s['kills_w']}/{s['kills_c']} | "
                     f"{s['verify_ok']}/{s['trials']} | {s['errors']} | {s['seconds']:.0f} |")
    print(json.dumps({"summary": summary}))
    if not args.no_write:
        from _report import write_section

        print(f"wrote {write_section('catalog_torture', chr(10).join(lines))}")
    bad = any(s["lost"] or s["duplicates"] or s["reader_missing"] or s["verify_ok"] != s["trials"] or s["errors"]
              for s in summary.values()) or any(r["acked"] != args.writers * args.appends for r in results)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_writer":
        _, _, url, ep, w, n, ack = sys.argv
        writer_main(url, ep or None, int(w), int(n), ack)
    elif len(sys.argv) > 1 and sys.argv[1] == "_compactor":
        _, _, url, ep, seed = sys.argv
        compactor_main(url, ep or None, int(seed))
    else:
        main()
