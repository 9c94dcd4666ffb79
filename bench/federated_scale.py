"""Federated training at population scale: N clients with real shards, m sampled per round, on Dask.

Data: ``digits-shifted`` (the 1,347 digits training images and their 8 one-pixel shifts: 12,123 images), split over
N clients by per-client Dirichlet(0.3) label mixes (about 12 images a client at N = 1,000); the 450 held-out digits
are the test set. Every client's error-feedback residual lives in the catalog (``federated_client_state``), not in
the flow process.

Parts (``--parts``, default all):
  scale   N = 20 and N = 1,000 with m = 20 clients per round, random-k 1 % + error feedback, a fresh process each on a
          local catalog and a 2-worker Dask LocalCluster: peak resident memory of the flow process and seconds per
          round. Targets: memory(1,000) <= 1.5 x memory(20); s/round(1,000) <= 1.3 x s/round(20).
  dp      client-level DP-FedAvg at N = 1,000, clients Poisson-sampled at q = 20 / N, epsilon 8 at delta 1e-5 over the
          rounds, against the non-private run with m = 20. Target: within 3 pp.
  resume  kill -9 of the flow process in the middle of a 1,000-client run (random-k + EF, so residuals matter), then
          the same command: it resumes after the last completed round and ends with the same weights as an
          uninterrupted run.

    python bench/federated_scale.py [--parts scale,dp,resume] [--rounds 30] [--seeds 2] [--no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "docs" / "federated" / "scale_results.json"  # parts run separately; the report renders all present
SOURCE = "digits-shifted"
CNN = "forgeflow.tasks.federated.models:digits_cnn_gn"
LINEAR = "forgeflow.tasks.federated.models:digits_linear_ln"


def config(clients: int, per_round: int, rounds: int, seed: int, **kw):
    from forgeflow.tasks.federated.config import Compression, FederatedConfig

    base = dict(model=CNN, clients=clients, alpha=0.3, rounds=rounds, fraction=min(1.0, per_round / clients),
                local_epochs=2, batch_size=16, lr=0.1, server_lr=1.0, compression=Compression.parse("randk:0.01"),
                seed=seed, min_client_samples=2)
    base.update(kw)
    return FederatedConfig(**base)


# ---- child: one run in its own process ---------------------------------------------------------------------------

def child(args) -> None:
    """Run one configuration against a catalog folder; print a JSON line with peak RSS and per-round seconds."""
    import torch

    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.federated.checkpoints import CatalogCheckpoints
    from forgeflow.tasks.federated.runner import run_federated

    torch.set_num_threads(1)
    cfg = config(args.clients, args.per_round, args.rounds, args.seed)
    dataset = shards_of_equal_size(cfg.clients, cfg.alpha, cfg.seed)
    cat = open_catalog(args.catalog)
    executor = cluster = None
    if args.workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        executor = Client(cluster)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()

    def on_round(rec):
        print(json.dumps({"round": rec.round, "seconds": rec.seconds}), flush=True)

    res = run_federated(cfg, dataset, executor=executor, store=CatalogCheckpoints(cat, "bench"), on_round=on_round)
    wall = time.perf_counter() - t0
    if executor is not None:
        executor.close()
        cluster.close()
    secs = [r.seconds for r in res.records]
    print(json.dumps({
        "clients": cfg.clients, "per_round": args.per_round, "rounds": len(res.records), "accuracy": res.final.accuracy,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_run_mb": rss_before / 1024,
        "s_per_round": float(np.mean(secs[1:])) if len(secs) > 1 else secs[0], "wall_s": wall,
        "resumed_from_round": res.resumed_from_round, "weights_sha": _sha(res.weights),
        "uplink_bytes": res.final.cum_uplink_bytes}), flush=True)


PER_CLIENT = 12


def shards_of_equal_size(clients: int, alpha: float, seed: int):
    """``clients`` shards of ``PER_CLIENT`` images each (per-client Dirichlet label mixes) from ``digits-shifted``, so
    that a client's local work is the same at every N and only the population size changes."""
    from forgeflow.tasks.federated.data import FederatedDataset, load_source, split_dirichlet_per_client

    name, xtr, ytr, xte, yte = load_source(SOURCE, seed=seed)
    keep = np.sort(np.random.default_rng([seed, 0x5CA1E]).permutation(len(ytr))[:clients * PER_CLIENT])
    xtr, ytr = xtr[keep], ytr[keep]
    parts = split_dirichlet_per_client(ytr, clients, alpha, seed)
    return FederatedDataset(f"{name}[{clients}x{PER_CLIENT}]", xtr, ytr, xte, yte, parts, 10)


def _sha(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def spawn(clients: int, per_round: int, rounds: int, seed: int, catalog: str, workers: int,
          kill_after_round: int | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--clients", str(clients), "--per-round", str(per_round),
           "--rounds", str(rounds), "--seed", str(seed), "--catalog", catalog, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    last = None
    for line in proc.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        last = json.loads(line)
        if kill_after_round is not None and last.get("round") == kill_after_round:
            os.killpg(proc.pid, signal.SIGKILL)  # the flow process and its Dask workers, no cleanup
            proc.wait()
            return None
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"child run failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return last


# ---- parts -------------------------------------------------------------------------------------------------------

def part_scale(rounds: int) -> dict:
    out = {}
    for n in (20, 1000, 20, 1000):  # interleaved, two runs each
        with tempfile.TemporaryDirectory() as tmp:
            r = spawn(n, 20, rounds, 0, f"{tmp}/catalog", workers=2)
        print(f"  scale N={n}: peak RSS {r['peak_rss_mb']:.0f} MB, {r['s_per_round']:.2f} s/round, "
              f"accuracy {r['accuracy']:.4f}", flush=True)
        out.setdefault(str(n), []).append(r)
    return out


def part_dp(rounds: int, seeds: int) -> dict:
    import torch

    from forgeflow.tasks.federated.config import Compression, Privacy
    from forgeflow.tasks.federated.data import build_dataset
    from forgeflow.tasks.federated.runner import run_federated

    torch.set_num_threads(1)
    n, m = 1000, 20
    out = {"clients": n, "per_round": m, "rounds": rounds, "runs": []}
    for s in range(seeds):
        base = config(n, m, rounds, s, model=LINEAR, local_epochs=3, batch_size=16, lr=0.3,
                      compression=Compression.parse("none"))
        dataset = build_dataset(SOURCE, n, base.alpha, s, base.min_client_samples)
        plain = run_federated(base, dataset)
        dp = run_federated(replace(base, privacy=Privacy(mode="client", clip=1.0, target_epsilon=8.0, delta=1e-5)),
                           dataset)
        row = {"seed": s, "non_private": plain.final.accuracy, "dp": dp.final.accuracy,
               "epsilon": dp.final.epsilon, "noise": dp.noise}
        print(f"  dp N={n} seed={s}: non-private {row['non_private']:.4f}, DP {row['dp']:.4f} at eps "
              f"{row['epsilon']:.3f} (z={row['noise']:.3f})", flush=True)
        out["runs"].append(row)
    return out


def part_resume(rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        whole = spawn(1000, 20, rounds, 5, f"{tmp}/a", workers=2)
        spawn(1000, 20, rounds, 5, f"{tmp}/b", workers=2, kill_after_round=rounds // 2)
        again = spawn(1000, 20, rounds, 5, f"{tmp}/b", workers=2)
    out = {"rounds": rounds, "killed_after_round": rounds // 2, "resumed_from_round": again["resumed_from_round"],
           "same_weights": whole["weights_sha"] == again["weights_sha"], "uninterrupted": whole["weights_sha"],
           "resumed": again["weights_sha"]}
    print(f"  resume: resumed after round {out['resumed_from_round']}, same weights: {out['same_weights']}",
          flush=True)
    return out


def render(res: dict, rounds: int) -> str:
    md = ["Data `digits-shifted` (12,123 training images: the digits training split and its 8 one-pixel shifts; test: "
          "the 450 unshifted held-out digits), per-client Dirichlet(0.3) label mixes, m = 20 clients per round. Each "
          "client's error-feedback residual is a catalog object indexed by `federated_client_state`; the flow process "
          "holds the weights, the data and an index of client -> newest residual key. In the scale and resume parts "
          f"every client holds {PER_CLIENT} images at every N (N x {PER_CLIENT} images drawn from the 12,123), so a "
          "client's work is the same and only the population changes; the DP part splits all 12,123 images."]
    if "scale" in res:
        sc = res["scale"]
        md += ["", f"### Memory and time per round against N (random-k 1 % + EF, digits_cnn_gn, {rounds} rounds, "
               "2 Dask worker processes x 1 thread, local catalog; two interleaved runs each)", "",
               "| N | peak RSS of the flow process (MB) | s / round (rounds 2..) | final accuracy |",
               "|---|---|---|---|"]
        for n, runs in sc.items():
            rss = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in runs)
            spr_n = ", ".join(f"{r['s_per_round']:.2f}" for r in runs)
            acc = ", ".join(f"{r['accuracy']:.3f}" for r in runs)
            md.append(f"| {int(n):,} | {rss} | {spr_n} | {acc} |")
        mem = np.mean([r["peak_rss_mb"] for r in sc["1000"]]) / np.mean([r["peak_rss_mb"] for r in sc["20"]])
        spr = np.mean([r["s_per_round"] for r in sc["1000"]]) / np.mean([r["s_per_round"] for r in sc["20"]])
        md += ["", f"- memory N=1,000 / N=20: **{mem:.2f}x** (target <= 1.5x): {'met' if mem <= 1.5 else 'MISSED'}",
               f"- s/round N=1,000 / N=20: **{spr:.2f}x** (target <= 1.3x): {'met' if spr <= 1.3 else 'MISSED'}",
               "- 10,000 clients (extrapolation, not run): the flow process adds per client a size, a participation "
               "count and at most one index entry (~100 B) and reads/writes residuals only for the m sampled clients, "
               "so memory grows by ~1 MB and a round's cost stays set by m."]
    if "dp" in res:
        d = res["dp"]
        gaps = [100 * (r["non_private"] - r["dp"]) for r in d["runs"]]
        md += ["", f"### Client-level DP at N = {d['clients']:,}, q = {d['per_round']}/{d['clients']}, epsilon 8",
               "", f"Model digits_linear_ln, 3 local epochs of SGD (batch 16, lr 0.3), clip 1.0, server lr 1, "
               f"{d['rounds']} rounds; real shards, no simulation.", "",
               "| seed | non-private (%) | DP (%) | epsilon | z | gap (pp) |", "|---|---|---|---|---|---|"]
        for r, g in zip(d["runs"], gaps):
            md.append(f"| {r['seed']} | {100 * r['non_private']:.2f} | {100 * r['dp']:.2f} | {r['epsilon']:.3f} | "
                      f"{r['noise']:.3f} | {g:.2f} |")
        md += ["", f"- mean gap **{np.mean(gaps):.2f} pp** (target <= 3 pp): {'met' if np.mean(gaps) <= 3 else 'MISSED'}"]
    if "resume" in res:
        r = res["resume"]
        md += ["", "### Kill -9 at scale", "", f"N = 1,000, m = 20, random-k 1 % + EF, {r['rounds']} rounds: the flow "
               f"process group was killed after round {r['killed_after_round']}; the same command resumed after round "
               f"{r['resumed_from_round']} and ended with weights {r['resumed']} against {r['uninterrupted']} "
               f"uninterrupted: **{'identical' if r['same_weights'] else 'DIFFERENT'}**."]
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="scale,dp,resume")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--scale-rounds", type=int, default=8)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--clients", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--per-round", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--catalog", default="", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    parts = [x for x in args.parts.split(",") if x]
    res = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if "scale" in parts:
        res["scale"] = part_scale(args.scale_rounds)
    if "dp" in parts:
        res["dp"] = part_dp(args.rounds, args.seeds)
    if "resume" in parts:
        res["resume"] = part_resume(args.scale_rounds)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(res, indent=1, sort_keys=True))
    md = render(res, args.scale_rounds)
    print(md)
    if not args.no_report:
        from _report import write_section

        write_section("federated_scale", md)


if __name__ == "__main__":
    main()
