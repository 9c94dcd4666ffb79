"""Catalog torture: writers append while compactors race, and random ``kill -9`` hits both; nothing may be lost.

Each trial starts a fresh catalog (a local folder, or a fresh bucket on moto's S3 server on 127.0.0.1) and runs
- W writer processes, each appending N one-row commits (row id = writer * 1e6 + i) with an idempotency key, and
  recording the id in its acknowledgement file (fsynced) only after ``append`` returned;
- C compactor processes compacting ``model_summaries`` and ``artifacts`` in a loop;
- a killer that every 1-4 s (``--kill-every``) sends SIGKILL to a random writer or compactor that is still running
  and starts it again (a restarted writer resumes after its last acknowledged id: the commit in flight is retried
  under the same idempotency key);
- a reader (this process) that repeatedly reads the acknowledgement files, then the table, and checks every
  acknowledged id is there (a committed row is never seen missing) and none is there twice.
At the end: one more compaction, a final read (every acknowledged id exactly once) and ``catalog verify``
(``forgeflow catalog verify`` logic, in process) with no damage.

Cost: writers and compactors are forked from a fork server that imported the catalog once (``forkserver`` with
preloaded modules), so a restart after a kill costs a fork, not a Python start and a pyarrow import; every one of
them is still a separate OS process that dies by a real SIGKILL. One moto server process serves every trial of a
call (each trial gets its own bucket).

The run can be done in pieces: ``--results FILE`` appends each finished trial's figures (one JSON line) to FILE and
numbers new trials after those already there; ``--report`` writes the docs/benchmarks.md section from every trial
in FILE (and exits non-zero if any trial lost, duplicated or hid a row, or verify found damage).

    python bench/catalog_torture.py --trials 20 --backend both                     # the issue's full run, one go
    python bench/catalog_torture.py --trials 3 --backend local --results R.jsonl  # a piece (repeat), then:
    python bench/catalog_torture.py --report --results R.jsonl --target-trials 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "model_summaries"


# ---------------------------------------------------------------- child processes


def _orphaned(parent: int) -> bool:
    try:
        os.kill(parent, 0)
        return False
    except OSError:
        return True


def writer_main(url: str, endpoint: str | None, w: int, n: int, ack: str, parent: int) -> None:
    from forgeflow.catalog import open_catalog

    cat = open_catalog(url, endpoint_url=endpoint)
    done = set()
    if os.path.exists(ack):
        text = Path(ack).read_text()
        done = {int(x) for x in text[: text.rfind("\n") + 1].split()}
    with open(ack, "a") as f:
        for i in range(n):
            rid = w * 1_000_000 + i
            if rid in done:
                continue
            if _orphaned(parent):  # the benchmark itself died: leave nothing running
                return
            cat.append(TABLE, [{"model": f"w{w}", "module": str(i), "flops": rid}], run_id=f"writer-{w}",
                       idempotency_key=f"row:{rid}")
            f.write(f"{rid}\n")
            f.flush()
            os.fsync(f.fileno())


def compactor_main(url: str, endpoint: str | None, seed: int, parent: int) -> None:
    from forgeflow.catalog import open_catalog

    rng = random.Random(seed)
    cat = open_catalog(url, endpoint_url=endpoint)
    while not _orphaned(parent):
        cat.compact(TABLE)
        cat.compact("artifacts")
        time.sleep(rng.uniform(0.0, 0.3))


def _child(kind: str, args: tuple) -> None:
    (writer_main if kind == "writer" else compactor_main)(*args)


# ---------------------------------------------------------------- orchestration


class Pool:
    """Writers and compactors forked from one fork server that imported the catalog once."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["forgeflow.catalog", "forgeflow.catalog.compaction", "pyarrow.parquet",
                                         "s3fs", "botocore.session", "aiobotocore.session"])

    def start(self, kind: str, args: tuple) -> mp.Process:
        p = self.ctx.Process(target=_child, args=(kind, args), daemon=True)
        p.start()
        return p


def _acked(ack_dir: Path, writers: int) -> set[int]:
    out: set[int] = set()
    for w in range(writers):
        p = ack_dir / f"w{w}.ack"
        if p.exists():
            # a line is only complete once its newline is written
            text = p.read_text()
            out |= {int(x) for x in text[: text.rfind("\n") + 1].split()}
    return out


def _acked_one(ack_dir: Path, w: int) -> int:
    p = ack_dir / f"w{w}.ack"
    if not p.exists():
        return 0
    text = p.read_text()
    return len(text[: text.rfind("\n") + 1].split())


def run_trial(pool: Pool, backend: str, args, trial: int, endpoint: str | None) -> dict:
    from forgeflow.catalog import open_catalog
    from forgeflow.catalog.verify import verify_catalog

    rng = random.Random(args.seed * 1000 + trial * 2 + (backend == "s3"))
    tmp = Path(tempfile.mkdtemp(prefix="ff-torture-"))
    if backend == "local":
        url = str(tmp / "catalog")
    else:
        import boto3

        bucket = f"torture-{os.getpid()}-{trial}-{int(time.time())}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/c"
    cat = open_catalog(url, endpoint_url=endpoint)

    def writer(w: int) -> mp.Process:
        return pool.start("writer", (url, endpoint, w, args.appends, str(tmp / f"w{w}.ack"), os.getpid()))

    def compactor() -> mp.Process:
        return pool.start("compactor", (url, endpoint, rng.randrange(1 << 30), os.getpid()))

    writers = {w: writer(w) for w in range(args.writers)}
    compactors = {c: compactor() for c in range(args.compactors)}
    kills = {"writer": 0, "compactor": 0}
    restarts = 0
    reads = reader_missing = reader_dups = rows_seen = 0
    errors: list[str] = []
    lo, hi = args.kill_every
    lock, stop = threading.Lock(), threading.Event()
    krng = random.Random(rng.randrange(1 << 30))

    def killer() -> None:
        """SIGKILL a random running writer or compactor every lo-hi seconds (its own clock, not the reader's)."""
        while not stop.wait(krng.uniform(lo, hi)):
            with lock:
                live = [("writer", w) for w, p in writers.items() if p.exitcode is None] + \
                       [("compactor", c) for c, p in compactors.items() if p.exitcode is None]
                if not live:
                    continue
                kind, victim = krng.choice(live)
                pool_ = writers if kind == "writer" else compactors
                pool_[victim].kill()  # SIGKILL
                pool_[victim].join()
                kills[kind] += 1
                pool_[victim] = writer(victim) if kind == "writer" else compactor()

    t0 = time.time()
    kill_thread = threading.Thread(target=killer, daemon=True)
    kill_thread.start()
    total = args.writers * args.appends
    try:
        while True:
            with lock:
                for w, p in list(writers.items()):
                    if p.exitcode is None:
                        continue
                    if p.exitcode != 0 and p.exitcode != -9:
                        errors.append(f"writer {w} exited {p.exitcode}")
                    if _acked_one(tmp, w) < args.appends:  # died before finishing, not by our kill: start again
                        writers[w] = writer(w)
                        restarts += 1
                for c, p in list(compactors.items()):
                    if p.exitcode is not None:
                        errors.append(f"compactor {c} exited {p.exitcode}")
                        compactors[c] = compactor()
            if len(_acked(tmp, args.writers)) == total or len(errors) > 20:
                break
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
    finally:
        stop.set()
        kill_thread.join()
        for p in [*writers.values(), *compactors.values()]:
            if p.exitcode is None:
                p.kill()
                p.join()
    elapsed = time.time() - t0
    cat.compact()
    acked = _acked(tmp, args.writers)
    ids = cat.read(TABLE, columns=["flops"]).column("flops").to_pylist()
    report = verify_catalog(cat)
    damage = [f"{f.kind} {f.path}" for f in report.findings if f.severity == "damage"]
    result = {"backend": backend, "trial": trial, "writers": args.writers, "appends": args.appends,
              "compactors": args.compactors, "kill_every": list(args.kill_every), "acked": len(acked),
              "expected": total, "rows": len(ids),
              "lost": len(acked - set(ids)), "duplicates": len(ids) - len(set(ids)),
              "reads": reads, "reader_rows_checked": rows_seen, "reader_missing": reader_missing,
              "reader_duplicates": reader_dups, "kills": kills, "kills_per_min": round(60 * (kills["writer"] + kills["compactor"]) / elapsed, 1),
              "restarts_unkilled": restarts,
              "verify_ok": not report.damaged, "damage": damage[:5], "notices": report.count("notice"),
              "orphans": report.count("orphan"), "errors": errors[:3], "seconds": round(elapsed, 1),
              "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def _moto_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import logging,time;logging.getLogger('werkzeug').setLevel(logging.ERROR);"
            "from moto.server import ThreadedMotoServer;"
            f"s=ThreadedMotoServer(ip_address='127.0.0.1',port={port},verbose=False);s.start();"
            "\nwhile True: time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start within 60 s")


def _bad(r: dict) -> bool:
    return bool(r["lost"] or r["duplicates"] or r["reader_missing"] or r["reader_duplicates"] or not r["verify_ok"]
                or r["errors"] or r["acked"] != r["expected"])


def report(results: list[dict], target: int | None) -> tuple[str, bool]:
    backends = [b for b in ("local", "s3") if any(r["backend"] == b for r in results)]
    shapes = sorted({(r["writers"], r["appends"], r["compactors"], tuple(r["kill_every"])) for r in results})
    shape = "; ".join(f"{w} writer processes x {a} one-row appends (idempotency keys) beside {c} compactor processes, "
                      f"SIGKILL of a random running writer or compactor every {k[0]:g}-{k[1]:g} s (restarted at once)"
                      for w, a, c, k in shapes)
    lines = ["## Catalog torture (`bench/catalog_torture.py`)", "",
             f"{shape}; a reader checking every acknowledged row after each read; then a final compaction, read "
             f"and `catalog verify`. Writers and compactors are forked from a fork server that imported the catalog "
             f"once; on S3 one moto server process (127.0.0.1) serves all processes, a fresh bucket per trial.", "",
             "| backend | trials | acknowledged rows checked (final) | rows lost | rows twice | reader checks | "
             "reader saw missing/twice | kills (writer/compactor) | kills/min | verify ok | errors | s/trial |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for backend in backends:
        rs = [r for r in results if r["backend"] == backend]
        s = {"trials": len(rs), "rows_checked": sum(r["acked"] for r in rs), "lost": sum(r["lost"] for r in rs),
             "duplicates": sum(r["duplicates"] for r in rs),
             "reader_checks": sum(r["reader_rows_checked"] for r in rs),
             "reader_missing": sum(r["reader_missing"] + r["reader_duplicates"] for r in rs),
             "kills_w": sum(r["kills"]["writer"] for r in rs), "kills_c": sum(r["kills"]["compactor"] for r in rs),
             "kills_per_min": 60 * sum(r["kills"]["writer"] + r["kills"]["compactor"] for r in rs)
             / max(1e-9, sum(r["seconds"] for r in rs)),
             "verify_ok": sum(r["verify_ok"] for r in rs), "errors": sum(len(r["errors"]) for r in rs),
             "seconds": sum(r["seconds"] for r in rs) / max(1, len(rs))}
        summary[backend] = s
        lines.append(f"| {backend} | {s['trials']} | {s['rows_checked']:,} | {s['lost']} | {s['duplicates']} | "
                     f"{s['reader_checks']:,} | {s['reader_missing']} | {s['kills_w']}/{s['kills_c']} | {s['kills_per_min']:.0f} | "
                     f"{s['verify_ok']}/{s['trials']} | {s['errors']} | {s['seconds']:.0f} |")
    if target:
        short = [f"{b}: {summary[b]['trials'] if b in summary else 0} of {target}" for b in ("local", "s3")]
        lines += ["", f"Trials run against the target of {target} per backend: {', '.join(short)}."]
    lines += ["", "S3 is moto's server on 127.0.0.1 (its `If-None-Match: *` check is a get-then-put inside one request "
              "handler, not atomic across its threads; real S3's conditional PUT and the local hard link are). Kills "
              "run on their own clock; kills/min below 24 (the 1-4 s mean) is the time a kill and restart take."]
    cmds = sorted({r["command"] for r in results})
    lines += ["", "Trials were run in pieces, each appending to the results file:", ""] + [f"- `{c}`" for c in cmds]
    print(json.dumps({"summary": summary}))
    bad = any(_bad(r) for r in results)
    return "\n".join(lines), bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials to run per backend in this call")
    ap.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--compactors", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-every", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN_S", "MAX_S"),
                    help="seconds between two kills, drawn uniformly (default 1 4)")
    ap.add_argument("--trial-timeout", type=float, default=900)
    ap.add_argument("--results", type=Path, help="JSON-lines file that accumulates every finished trial")
    ap.add_argument("--report", action="store_true", help="only write the section from the trials in --results")
    ap.add_argument("--target-trials", type=int, default=20, help="trials per backend the issue asks for")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="start no new trial after this many seconds (0: no limit); for pieces of bounded length")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    previous: list[dict] = []
    if args.results and args.results.exists():
        previous = [json.loads(x) for x in args.results.read_text().splitlines() if x.strip()]
    results: list[dict] = []
    if not args.report:
        backends = ["local", "s3"] if args.backend == "both" else [args.backend]
        server = endpoint = None
        if "s3" in backends:
            os.environ.update(AWS_ACCESS_KEY_ID="torture", AWS_SECRET_ACCESS_KEY="torture-secret",
                              AWS_DEFAULT_REGION="us-east-1")
            server, endpoint = _moto_server()
        pool = Pool()
        start = time.time()
        try:
            for backend in backends:
                first = sum(r["backend"] == backend for r in previous)
                for trial in range(first, first + args.trials):
                    if args.max_seconds and time.time() - start > args.max_seconds:
                        break
                    r = run_trial(pool, backend, args, trial, endpoint if backend == "s3" else None)
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    if args.results:
                        with open(args.results, "a") as f:
                            f.write(json.dumps(r) + "\n")
        finally:
            if server is not None:
                server.kill()
                server.wait()
        if args.results:  # pieces: the section is written by --report from every accumulated trial
            sys.exit(1 if any(_bad(r) for r in results) else 0)
    text, bad = report(previous + results if args.report else results, args.target_trials)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import write_section

        print(f"wrote {write_section('catalog_torture', text)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
