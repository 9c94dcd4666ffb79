"""Robustness verification of quantized digits networks (issue 20's benchmark).

Networks, trained here on scikit-learn's digits (seed 0, 30 epochs), quantized by forgeflow's own quantizer
(per-channel symmetric weights, calibrated 8-bit activations; the input lattice is the 8-bit input codes):
- digits MLPs 64-32-32-10 and 64-64-64-10 at 8-bit weights, and the same at 4-bit weights (codes in [-7, 7] at run
  time in the integer executor, not an 8-bit container);
- digits_cnn at 8-bit weights.
Properties: the first N held-out images every network of the row (quantized and float) classifies correctly, eps in
{1, 2, 4} steps of the quantized input. Instances fan out on a Dask LocalCluster (one process per worker, one
thread, one HiGHS thread), ``--time-limit`` seconds each. The same images are verified on the float network with
the same machinery.

    python bench/verify.py [--samples 100] [--eps 1,2,4] [--time-limit 60] [--workers 2]
                           [--networks mlp32-8,mlp64-8,mlp32-4,mlp64-4,cnn-8] [--no-report]
"""

from __future__ import annotations

import argparse
import sys
import time


import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from forgeflow.tasks.models.digits import load_digits_split, train_classifier  # noqa: E402
from forgeflow.tasks.models.spec import resolve_model  # noqa: E402
from forgeflow.tasks.quantize.apply import quantize_model  # noqa: E402
from forgeflow.tasks.verify.intnet import build_network  # noqa: E402
from forgeflow.tasks.verify.pipeline import Prepared, decide_all  # noqa: E402

NETWORKS = {
    "mlp32-8": ("forgeflow:digits_mlp_32_32", 8),
    "mlp64-8": ("forgeflow:digits_mlp_64_64", 8),
    "mlp32-4": ("forgeflow:digits_mlp_32_32", 4),
    "mlp64-4": ("forgeflow:digits_mlp_64_64", 4),
    "cnn-8": ("forgeflow:digits_cnn", 8),
}
TARGET = {"mlp32-8": {1: 0.97, 2: 0.97, 4: 0.90}, "mlp64-8": {1: 0.97, 2: 0.97, 4: 0.90}}


def prepare(spec: str, bits: int, samples: int, epochs: int) -> Prepared:
    xtr, ytr, xte, yte = load_digits_split(0)
    torch.manual_seed(0)
    model = train_classifier(resolve_model(spec), xtr, ytr, epochs=epochs, seed=0)
    plan = {n: bits for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    qm = quantize_model(model, plan, 8, [xtr[i:i + 256] for i in range(0, 1024, 256)])
    nets = {"quantized": build_network(model, plan, qm.act_qparams, 8, xtr[:1]),
            "float": build_network(model, plan, qm.act_qparams, 8, xtr[:1], exact=False)}
    codes = nets["quantized"].codes_of(xte.numpy())
    y = yte.numpy()
    acc = {k: float((n.predict(codes) == y).mean()) for k, n in nets.items()}
    ok = np.ones(len(y), bool)
    for n in nets.values():
        ok &= n.predict(codes) == y
    chosen = np.flatnonzero(ok)[:samples]
    return Prepared(spec, plan, 8, nets, {"quantized": qm.model, "float": model}, chosen.tolist(),
                    y[chosen].tolist(), codes[chosen], acc)


def table(name: str, rows: list[dict], eps: list[int], acc: dict) -> tuple[list[str], list[str], dict]:
    lines, undecided, figures = [], [], {}
    for e in eps:
        for net in ("quantized", "float"):
            rs = [r for r in rows if r["eps"] == e and r["network"] == net]
            n = len(rs)
            cnt = {a: sum(r["answer"] == a for r in rs) for a in ("verified", "falsified", "unknown")}
            dec = [r["seconds"] for r in rs if r["answer"] != "unknown"]
            meth = {}
            for r in rs:
                if r["answer"] != "unknown":
                    meth[r["method"]] = meth.get(r["method"], 0) + 1
            frac = (cnt["verified"] + cnt["falsified"]) / max(n, 1)
            figures[(net, e)] = {"decided": frac, "median": float(np.median(dec)) if dec else None, **cnt}
            med = f"{np.median(dec):.2f}" if dec else "-"
            mx = f"{max(r['seconds'] for r in rs):.2f}" if rs else "-"
            lines.append(f"| {name} | {net} | {e} | {n} | {cnt['verified']} | {cnt['falsified']} | {cnt['unknown']} "
                         f"| {100 * frac:.1f} % | {med} | {mx} | "
                         + ", ".join(f"{k} {v}" for k, v in sorted(meth.items())) + " |")
            for r in rs:
                if r["answer"] == "unknown":
                    lo = f"{r['margin_lower']:.4g}" if r["margin_lower"] is not None else "-inf"
                    undecided.append(f"| {name} | {net} | {e} | {r['image']} | {lo} | {r['margin_upper']:.4g} | "
                                     f"{r['detail'][:90]} |")
        q = {r["image"]: r["answer"] for r in rows if r["eps"] == e and r["network"] == "quantized"}
        f = {r["image"]: r["answer"] for r in rows if r["eps"] == e and r["network"] == "float"}
        changed = sum(1 for i in q if i in f and "unknown" not in (q[i], f[i]) and q[i] != f[i])
        figures[("changed", e)] = changed
    return lines, undecided, figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--eps", default="1,2,4")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--section", default="verify", help="docs/benchmarks.md section to (re)write")
    args = ap.parse_args(argv)
    eps = [int(e) for e in args.eps.split(",")]
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    all_lines, all_undecided, summary = [], [], []
    t_all = time.perf_counter()
    try:
        for name in args.networks.split(","):
            spec, bits = NETWORKS[name]
            t0 = time.perf_counter()
            prep = prepare(spec, bits, args.samples, args.epochs)
            rows = decide_all(prep, eps, args.time_limit, executor=client)
            lines, undecided, fig = table(name, rows, eps, prep.accuracy)
            all_lines += lines
            all_undecided += undecided
            for e in eps:
                target = TARGET.get(name, {}).get(e, 0.90)
                d = fig[("quantized", e)]
                summary.append(f"- {name} eps {e}: decided {100 * d['decided']:.1f} % (target >= {100 * target:.0f} %:"
                               f" {'met' if d['decided'] >= target else 'MISSED'}), median decided "
                               f"{d['median'] if d['median'] is None else round(d['median'], 3)} s; answers that "
                               f"differ from the float network's: {fig[('changed', e)]}")
            print(f"{name}: {len(prep.images)} images, accuracy {prep.accuracy}, {time.perf_counter() - t0:.1f} s",
                  flush=True)
            for ln in lines:
                print(ln, flush=True)
    finally:
        client.close()
        cluster.close()
    total = time.perf_counter() - t_all
    md = ["Robustness of quantized digits networks (`forgeflow verify` machinery). Answers are exact for the "
          "integer semantics (round half to even, first-max argmax); every falsification was replayed on the "
          "integer executor, every verification confirmed by a second means.", "",
          f"{args.samples} images requested per network, eps {eps} input steps, {args.time_limit:g} s per instance, "
          f"{args.workers} Dask workers x 1 thread, total {total:.0f} s.", "",
          "| network | semantics | eps | n | verified | falsified | unknown | decided | median s (decided) | max s "
          "| deciding method |", "|---|---|---|---|---|---|---|---|---|---|---|", *all_lines, "", *summary]
    if all_undecided:
        md += ["", "Undecided instances (proven lower bound and best margin found on min_j y_c - y_j):", "",
               "| network | semantics | eps | image | lower bound | best found | why |", "|---|---|---|---|---|---|---|",
               *all_undecided]
    text = "\n".join(md)
    print(text)
    if not args.no_report:
        from _report import write_section

        write_section(args.section, f"## Verified quantized networks (bench/verify.py, {args.networks})\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
