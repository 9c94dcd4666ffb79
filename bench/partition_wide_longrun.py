"""Is it the plan or the bound? Long runs of each side on instances of the wide suite (issue 21).

For each instance (generated graph index and k of ``bench/partition_wide.py``'s suite) the BRKGA order search runs
for ``--search-s`` seconds (two seeds, half each, no stall stop), then ``best_lower_bound`` runs for ``--bound-s``
seconds against the best plan found. Set against the instance's row from the 60 s run of the full solver, this says
which side of the certified ratio moves when given several times the budget.

    python bench/partition_wide_longrun.py --instances 0:16,14:16 [--search-s 160] [--bound-s 240] [--no-report]
    python bench/partition_wide_longrun.py --report-from RUN.log --sixty SWEEP.log [SWEEP2.log ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from forgeflow.tasks.partition.adapters import problem_from_graph
from forgeflow.tasks.partition.bounds import best_lower_bound
from forgeflow.tasks.partition.cells import cell_graph
from forgeflow.tasks.partition.search import SearchConfig, brkga_search

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partition_wide import rows_from_logs, suite  # noqa: E402


def long_run(index: int, k: int, search_s: float, bound_s: float) -> dict:
    g = cell_graph(suite()[index])
    p = problem_from_graph(g, k=k)
    t0 = time.perf_counter()
    best = float("inf")
    for seed in (11, 12):
        r = brkga_search(p, k, SearchConfig(time_limit=search_s / 2, seed=seed, stall_generations=10**9))
        best = min(best, r.bottleneck)
    b = best_lower_bound(p, best, bound_s)
    plan = min(best, b.improved.bottleneck) if b.improved else best
    return {"graph": g.name, "k": k, "plan_long": plan, "bound_long": b.value, "method": b.method,
            "ratio": plan / b.value, "wall": time.perf_counter() - t0,
            "per_method": [(m["method"], m["value"], m["status"], m["seconds"], m.get("cap"))
                           for m in b.detail["per_method"]]}


def markdown(longs: list[dict], sixty: list[dict], search_s: float, bound_s: float) -> str:
    by = {(r["graph"], r["k"]): r for r in sixty}
    out = [f"Each side given several times the 60 s budget: BRKGA {search_s:g} s (two seeds, no stall stop), then "
           f"`best_lower_bound` {bound_s:g} s against that plan, against the instance's row of the 60 s run of the "
           "full solver (`partition_wide`).", "",
           "| graph | k | plan 60 s | plan long | bound 60 s | bound long | ratio 60 s | ratio long | plan moved | "
           "bound moved | lowest cap the guessing MIP could not refute |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in longs:
        s = by.get((r["graph"], r["k"]))
        caps = [m for m in r["per_method"] if m[0] == "mip_bottleneck_guess" and m[4] is not None]
        lowest_open = min((m[4] for m in caps if m[2] != "infeasible"), default=None)
        cap_txt = (f"{lowest_open:.4f} (+{100 * (lowest_open / r['bound_long'] - 1):.2f} % "
                   f"over the bound)" if lowest_open else "—")
        if s is None:
            out.append(f"| {r['graph']} | {r['k']} | — | {r['plan_long']:.4f} | — | {r['bound_long']:.4f} | — | "
                       f"{r['ratio']:.4f} | — | — | {cap_txt} |")
            continue
        out.append(f"| {r['graph']} | {r['k']} | {s['bottleneck']:.4f} | {r['plan_long']:.4f} | "
                   f"{s['lower_bound']:.4f} | {r['bound_long']:.4f} | {s['ratio']:.4f} | {r['ratio']:.4f} | "
                   f"{100 * (r['plan_long'] / s['bottleneck'] - 1):+.2f} % | "
                   f"{100 * (r['bound_long'] / s['lower_bound'] - 1):+.2f} % | {cap_txt} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", default="0:16", help="comma-separated INDEX:K of the wide suite")
    ap.add_argument("--search-s", type=float, default=160.0)
    ap.add_argument("--bound-s", type=float, default=240.0)
    ap.add_argument("--report-from", nargs="+", type=Path, default=None, help="JSON rows of earlier long runs")
    ap.add_argument("--sixty", nargs="*", type=Path, default=[], help="logs of the 60 s partition_wide runs")
    ap.add_argument("--ran", default=None, help="with --report-from: the commands that produced the rows")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    if args.report_from is None:
        try:
            pairs = [tuple(int(x) for x in item.split(":")) for item in args.instances.split(",")]
        except ValueError:
            print(f"--instances must be INDEX:K pairs, got {args.instances!r}", file=sys.stderr)
            return 2
        longs = []
        for index, k in pairs:
            row = long_run(index, k, args.search_s, args.bound_s)
            print(json.dumps(row), flush=True)
            longs.append(row)
    else:
        longs = [json.loads(line) for p in args.report_from for line in p.read_text().splitlines()
                 if line.startswith("{") and '"plan_long"' in line]
    md = markdown(longs, rows_from_logs(args.sixty), args.search_s, args.bound_s)
    if args.ran:
        md = f"Rows measured by: {args.ran}\n\n" + md
    print(md)
    if not args.no_report:
        from _report import write_section

        write_section("partition_wide_longrun", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
