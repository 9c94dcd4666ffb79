"""Profiling benchmark: time to profile resnet50 at operator granularity, and how trustworthy the measured times are.

1. Wall time of ``profile_model("torchvision:resnet50", (1, 3, 224, 224), granularity="op", repeats=5)`` on
   ``--threads`` torch threads (target <= 60 s on 2 cores), with the time per stage.
2. For five torchvision models: node count, FLOPs (= FlopCounterMode under the same rules, and the stock counter's
   figure), parameters, whole-model latency, node-sum / whole-model latency ratio, and the repeat-to-repeat spread
   (IQR / median of the whole model, and latency-weighted over nodes).
3. msr-fiddle graphs (``--data``): import, export, re-import of every file; all must round-trip exactly.

    python bench/profiling.py [--threads 2] [--repeats 5] [--models resnet18,resnet50,...] [--data DIR] [--json]
                              [--no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


# OpenMP threads that spin while waiting turn a busy shared machine into 5-10x slower forwards at 2 threads (measured
# here: resnet18 ~2.5 s instead of ~0.2 s per forward under load 12); sleeping waiters avoid that. Must be set before
# libgomp loads (the torch import). Override by setting OMP_WAIT_POLICY yourself.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from forgeflow.tasks.profiling.costs import stock_flops  # noqa: E402
from forgeflow.tasks.profiling.profile import profile_model  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "msr_graphs"
DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v2,vit_b_16,efficientnet_b0"
TARGET_SECONDS = 60.0


def time_resnet50(threads: int, repeats: int) -> dict:
    marks: dict[str, float] = {}
    c0 = time.process_time()
    t0 = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in marks:
            marks[stage] = time.perf_counter() - t0

    g = profile_model("torchvision:resnet50", (1, 3, 224, 224), granularity="op", repeats=repeats, warmup=2,
                      threads=threads, progress=progress)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    stages = sorted(marks.items(), key=lambda kv: kv[1]) + [("end", total)]
    per_stage = {name: round(stages[i + 1][1] - at, 2) for i, (name, at) in enumerate(stages[:-1])}
    return {"seconds": total, "cpu_seconds": cpu, "stages": per_stage, "nodes": len(g.nodes), "edges": len(g.edges),
            "flops": g.total_flops, "params": g.meta["params"], "graph_id": g.graph_id,
            "whole_model_ms": g.meta["timing"]["whole_model_ms"], "node_sum_ratio": g.meta["timing"]["node_sum_ratio"]}


def model_row(name: str, threads: int, repeats: int) -> dict:
    import torchvision

    t0 = time.perf_counter()
    g = profile_model(f"torchvision:{name}", (1, 3, 224, 224), repeats=repeats, warmup=2, threads=threads)
    seconds = time.perf_counter() - t0
    t = g.meta["timing"]
    weighted = sum(n.latency_spread_ms for n in g.nodes) / max(sum(n.latency_ms for n in g.nodes), 1e-12)
    m = torchvision.models.get_model(name, weights=None).eval()
    stock = stock_flops(m, (torch.randn(1, 3, 224, 224),))
    return {
        "model": name, "capture": g.meta["capture"], "nodes": len(g.nodes), "edges": len(g.edges),
        "flops": g.total_flops, "flops_reference": g.meta["flops_reference"], "flops_stock_counter": stock,
        "params": g.meta["params"], "params_expected": sum(p.numel() for p in m.parameters()),
        "whole_model_ms": t["whole_model_ms"], "whole_rel_iqr": t["whole_model_spread_ms"] / t["whole_model_ms"],
        "node_sum_ms": t["node_sum_ms"], "node_sum_ratio": t["node_sum_ratio"], "node_rel_iqr_weighted": weighted,
        "profile_seconds": seconds,
    }


def msr_round_trips(data: Path) -> dict:
    from forgeflow.tasks.profiling.msr_io import dump_msr_json, load_msr_json

    files = sorted(data.glob("*Graphs/*.json"))
    exact, nodes, t_load = 0, 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            t0 = time.perf_counter()
            g = load_msr_json(f)
            t_load += time.perf_counter() - t0
            back = load_msr_json(dump_msr_json(g, Path(tmp) / f.name))
            exact += back == g
            nodes += len(g.nodes)
    return {"files": len(files), "exact_round_trips": exact, "nodes": nodes, "load_seconds": t_load}


def markdown(r50: dict, rows: list[dict], msr: dict | None, threads: int, repeats: int, load: str) -> str:
    ok = "met" if r50["seconds"] <= TARGET_SECONDS else "MISSED"
    lines = [
        "## Profiling",
        "",
        f"Measured with torch {torch.__version__} on {threads} torch thread(s), OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}; load average at start: {load} (the machine is shared with other jobs, "
        "so latencies and their spread include that interference).",
        "",
        f"**resnet50, operator granularity, {repeats} repeats + 2 warm-ups: {r50['seconds']:.1f} s** "
        f"(target <= {TARGET_SECONDS:.0f} s: {ok}); {r50['nodes']} nodes, {r50['edges']} edges, "
        f"{r50['flops'] / 1e9:.3f} GFLOPs, {r50['params']:,} parameters; process CPU time "
        f"{r50['cpu_seconds']:.1f} s. Wall time per stage (s): "
        + ", ".join(f"{k} {v}" for k, v in r50["stages"].items()) + ".",
        "",
        "| model | capture | nodes | GFLOPs (ours = reference) | GFLOPs stock FlopCounterMode | params | "
        "whole model ms | IQR/median | node sum / whole | node IQR/median (latency-weighted) | profile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = "=" if r["flops"] == r["flops_reference"] else "!="
        pm = "" if r["params"] == r["params_expected"] else " (MISMATCH)"
        lines.append(
            f"| {r['model']} | {r['capture']} | {r['nodes']} | {r['flops'] / 1e9:.3f} {same} "
            f"{r['flops_reference'] / 1e9:.3f} | {r['flops_stock_counter'] / 1e9:.3f} | {r['params']:,}{pm} | "
            f"{r['whole_model_ms']:.1f} | {100 * r['whole_rel_iqr']:.1f}% | {r['node_sum_ratio']:.3f} | "
            f"{100 * r['node_rel_iqr_weighted']:.1f}% | {r['profile_seconds']:.1f} |")
    lines += [
        "",
        "FLOPs count a multiply-add as 2. \"Stock\" is a plain `FlopCounterMode()` around the eager forward; ours adds "
        "the CPU flash-attention kernel (which the stock counter has no formula for) and counts "
        "`nn.MultiheadAttention` with its fast path off, so vit_b_16 comes to torchvision's documented 17.56 GMACs. "
        "The node sum / whole ratio compares the per-node medians (each node timed alone through an fx Interpreter) "
        "with the eager forward: interpreter overhead and lost cross-op overlap push it above 1.",
    ]
    if msr is not None:
        lines += ["", f"msr-fiddle graphs: {msr['exact_round_trips']}/{msr['files']} files ({msr['nodes']:,} nodes) "
                      f"import -> export -> import exactly; importing all took {msr['load_seconds']:.2f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    torch.set_num_threads(args.threads)
    r50 = time_resnet50(args.threads, args.repeats)
    print(f"resnet50 op granularity, {args.repeats} repeats: {r50['seconds']:.1f} s (target <= {TARGET_SECONDS} s) "
          f"stages {r50['stages']}", file=sys.stderr)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        rows.append(model_row(name, args.threads, args.repeats))
        r = rows[-1]
        print(f"{name}: {r['nodes']} nodes, {r['flops'] / 1e9:.3f} GFLOPs (stock {r['flops_stock_counter'] / 1e9:.3f}),"
              f" whole {r['whole_model_ms']:.1f} ms (IQR {100 * r['whole_rel_iqr']:.1f}%), node sum/whole "
              f"{r['node_sum_ratio']:.3f}", file=sys.stderr)
    msr = msr_round_trips(args.data) if args.data.exists() else None
    if args.json:
        for r in rows:
            print(json.dumps(r))
        print(json.dumps({"resnet50": r50, "msr": msr, "threads": args.threads, "repeats": args.repeats,
                          "load": load}))
    md = markdown(r50, rows, msr, args.threads, args.repeats, load)
    print(md)
    if not args.no_report:
        from _report import write_section

        write_section("profiling", md)
    return 0 if r50["seconds"] <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
