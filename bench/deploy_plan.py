"""Joint placement-and-precision plans (`tasks.plan`) against the baselines, with certified ratios.

Instances (each at k in --ks on every shipped target in --targets, at the sensitivity budgets of HAWQ's
0.25 / 0.5 / 0.75 points, i.e. ``S8 + f (S4 - S8)`` with ``S_b`` the total sensitivity at uniform b bits):

* ``resnet18`` / ``resnet50``: the torchvision operator graphs profiled on this machine (cached in --cache), with
  HAWQ-V3's published per-layer sensitivities (``Hutchinson_trace x delta_weights_{b}bit_square``, from
  ``hawq_v3_ilp.json``) mapped onto their layers (``stageS.unitU.quant_convbnI`` -> ``layerS.(U-1).convI``,
  ``quant_identity_convbn`` -> ``downsample.0``); the stem conv and fc are not in HAWQ's list and stay float;
* ``bert24`` / ``gnmt`` / ``inceptionv3`` / ``resnet50_layer``: msr-fiddle's inference layer graphs, every node's
  ``size`` taken as its weights, sensitivities derived from its float figures (``tasks/plan/derive.py``);
* ``digits_cnn``: trained on scikit-learn's digits, Hutchinson traces on real batches; each plan is applied with
  fake-quantized weights and its held-out accuracy compared with float.

Targets: every plan valid by the validator; the joint bottleneck <= every baseline (and how often / by how much it
is strictly better than the best one); certified ratio geomean <= 1.02 per k, max <= 1.10, within 60 s per
instance; digits_cnn accuracy within 1 pp of float.

    python bench/deploy_plan.py [--data ../shared/data] [--graphs resnet18,bert24,...] [--ks 2,4,8]
        [--targets edge_npu_4x,gpu_2x_pcie4,hetero_1big_3small] [--fractions 0.25,0.5,0.75] [--time-limit 60]
        [--cache /tmp/forgeflow-bench] [--json] [--no-report]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import replace
from pathlib import Path


import numpy as np  # noqa: E402

from forgeflow.tasks.errors import InfeasibleError  # noqa: E402
from forgeflow.tasks.plan import build_instance, load_target, solve_plan  # noqa: E402
from forgeflow.tasks.plan.derive import trace_stand_in  # noqa: E402
from forgeflow.tasks.plan.validate import validate_joint  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MSR = {"bert24": "bert24_inference", "gnmt": "gnmt_inference", "inceptionv3": "inceptionv3_inference",
       "resnet50_layer": "resnet50_inference"}
ALL_GRAPHS = ["resnet18", "resnet50", "bert24", "gnmt", "inceptionv3", "resnet50_layer", "digits_cnn"]


def hawq_module(name: str) -> str:
    m = re.match(r"stage(\d+)\.unit(\d+)\.quant_(identity_convbn|convbn(\d+))$", name)
    if not m:
        raise ValueError(f"unexpected HAWQ layer name {name!r}")
    stage, unit = int(m.group(1)), int(m.group(2)) - 1
    tail = "downsample.0" if m.group(3) == "identity_convbn" else f"conv{m.group(4)}"
    return f"layer{stage}.{unit}.{tail}"


def hawq_sensitivities(data: Path, model: str) -> dict[str, dict[int, float]]:
    entry = json.loads((data / "hawq_v3_ilp.json").read_text())["models"][model]
    lay = entry["layers"]
    out = {}
    for i, name in enumerate(entry["layer_names"]):
        tr = float(lay["Hutchinson_trace"][i])
        out[hawq_module(name)] = {8: tr * float(lay["delta_weights_8bit_square"][i]),
                                  4: tr * float(lay["delta_weights_4bit_square"][i])}
    return out


def profiled_graph(spec: str, cache: Path):
    from forgeflow.tasks.profiling.graph import CostGraph

    p = cache / f"{spec.split(':')[1]}.json"
    if p.exists():
        return CostGraph.from_dict(json.loads(p.read_text()))
    from forgeflow.tasks.profiling.profile import profile_model

    g = profile_model(spec, repeats=3, warmup=1)
    cache.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(g.to_dict()))
    return g


def msr_graph(data: Path, stem: str):
    from forgeflow.tasks.profiling.msr_io import load_msr_json

    g = load_msr_json(data / "msr_graphs" / "LayerGraphs" / f"{stem}.json")
    nodes = tuple(replace(nd, param_bytes=int(nd.size_bytes)) for nd in g.nodes)  # size taken as weights
    g = replace(g, nodes=nodes)
    sens = {nd.id: {b: trace_stand_in(nd.id) * (nd.size_bytes / 4) * 4.0 ** -(b - 1) for b in (8, 4)}
            for nd in g.nodes if nd.size_bytes > 0}
    return g, sens


def digits_setup(seed: int = 0):
    import torch

    from forgeflow.tasks.models.digits import train_classifier
    from forgeflow.tasks.models.spec import resolve_model
    from forgeflow.tasks.plan.sensitivity import sensitivities_for
    from forgeflow.tasks.profiling.profile import profile_model
    from forgeflow.tasks.quantize.apply import evaluate_accuracy
    from forgeflow.tasks.quantize.pipeline import load_data

    torch.manual_seed(seed)
    xtr, ytr, xte, yte = load_data(None, seed)
    model = train_classifier(resolve_model("forgeflow:digits_cnn"), xtr, ytr, epochs=30, seed=seed).eval()
    graph = profile_model("forgeflow:digits_cnn", model=model, repeats=5, warmup=2)
    batches = [(xtr[i:i + 256], ytr[i:i + 256]) for i in range(0, 1024, 256)]
    sens, source = sensitivities_for(model, (1, 1, 8, 8), batches=batches, bits=(8, 4), samples=64, seed=seed)
    return graph, sens, {"model": model, "xte": xte, "yte": yte, "float_accuracy": evaluate_accuracy(model, xte, yte),
                         "source": source}


def digits_accuracy(extra, inst, res) -> float:
    from forgeflow.tasks.quantize.apply import evaluate_accuracy, quantize_model

    names = inst.meta["names"]
    plan = {names[str(i)]: int(b) for i, b in zip(inst.raw_ids, res.plan.bits) if b < 32}
    q = quantize_model(extra["model"], plan, act_bits=None)
    qm = getattr(q, "model", q)
    return evaluate_accuracy(qm, extra["xte"], extra["yte"])


def run(args) -> list[dict]:
    data = Path(args.data)
    rows = []
    targets = {name: load_target(name) for name in args.targets}
    for gname in args.graphs:
        extra = None
        if gname in ("resnet18", "resnet50"):
            graph, sens, source = profiled_graph(f"torchvision:{gname}", Path(args.cache)), \
                hawq_sensitivities(data, gname), "HAWQ-V3 published traces"
        elif gname in MSR:
            (graph, sens), source = msr_graph(data, MSR[gname]), "derived (tasks/plan/derive.py)"
        elif gname == "digits_cnn":
            graph, sens, extra = digits_setup()
            source = extra["source"]
        else:
            raise SystemExit(f"unknown graph {gname!r}; known: {', '.join(ALL_GRAPHS)}")
        for tname, tgt in targets.items():
            for k in args.ks:
                base = build_instance(graph, sens, tgt, k=k, budget=0.0, sensitivity_source=source)
                s8 = float(sum(base.sens[i, base.option_of_bits(i, 8) or 0] for i in range(base.n)))
                s4 = float(sum(base.sens[i, base.option_of_bits(i, 4) or 0] for i in range(base.n)))
                for f in args.fractions:
                    inst = base.with_budget(s8 + f * (s4 - s8))
                    row = {"graph": gname, "target": tname, "k": k, "fraction": f, "budget": inst.budget,
                           "nodes": inst.n, "source": source}
                    t0 = time.perf_counter()
                    try:
                        res = solve_plan(inst, args.time_limit)
                    except InfeasibleError as exc:
                        row.update(status="infeasible", reason=str(exc), seconds=time.perf_counter() - t0)
                        rows.append(row)
                        print(json.dumps(row) if args.json else f"{gname:>14} {tname:>18} k={k} f={f}: infeasible "
                              f"({str(exc)[:90]})", flush=True)
                        continue
                    secs = time.perf_counter() - t0
                    loads = validate_joint(inst, np.asarray(res.plan.assignment), np.asarray(res.plan.choice))
                    base_vals = {b.method: b.bottleneck for b in res.baselines}
                    feasible_base = [v for v in base_vals.values() if math.isfinite(v)]
                    best_base = min(feasible_base) if feasible_base else math.inf
                    row.update(status=res.status.value, bottleneck=res.bottleneck, lower_bound=res.lower_bound.value,
                               ratio=res.ratio, seconds=secs, method=res.plan.method,
                               lower_bound_method=res.lower_bound.method,
                               valid=abs(loads.bottleneck - res.bottleneck) <= 1e-9 * max(1, res.bottleneck),
                               baselines={m: (v if math.isfinite(v) else None) for m, v in base_vals.items()},
                               best_baseline=best_base if math.isfinite(best_base) else None,
                               joint_le_all=all(res.bottleneck <= v * (1 + 1e-9) for v in feasible_base),
                               quantized=int(sum(b < 32 for b in res.plan.bits)))
                    if extra is not None:
                        row["float_accuracy"] = extra["float_accuracy"]
                        row["plan_accuracy"] = digits_accuracy(extra, inst, res)
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        gain = (best_base / res.bottleneck - 1) * 100 if math.isfinite(best_base) else float("inf")
                        print(f"{gname:>14} {tname:>18} k={k} f={f}: bottleneck {res.bottleneck:.5g} ms, ratio "
                              f"{res.ratio:.4f} ({res.lower_bound.method}), {secs:.1f} s, best baseline "
                              f"{best_base:.5g} (+{gain:.1f} %)", flush=True)
    return rows


def geomean(xs):
    xs = [x for x in xs if math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def markdown(rows: list[dict], args) -> str:
    solved = [r for r in rows if r["status"] != "infeasible"]
    inf = [r for r in rows if r["status"] == "infeasible"]
    combos = sorted({(r["graph"], r["fraction"]) for r in rows})
    per_graph = "; ".join(f"{g} at f = {', '.join(str(f) for gg, f in combos if gg == g)}" for g in args.graphs)
    lines = [f"{len(rows)} instances ({per_graph}; k in {args.ks}; targets {', '.join(args.targets)}); time limit "
             f"{args.time_limit:g} s per instance. "
             f"{len(inf)} proven infeasible before solving (the model does not fit the devices' memory even at its "
             f"smallest widths, or the budget is below the least sensitive plan).", "",
             "| k | solved | valid | joint <= every baseline | strictly better than best baseline | mean / max gain "
             "| ratio geomean | ratio max | optimal | max s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k in sorted({r["k"] for r in solved}):
        rs = [r for r in solved if r["k"] == k]
        better = [r for r in rs if r["best_baseline"] is None or r["bottleneck"] < r["best_baseline"] * (1 - 1e-6)]
        gains = [(r["best_baseline"] / r["bottleneck"] - 1) * 100 for r in better if r["best_baseline"] is not None]
        lines.append(f"| {k} | {len(rs)} | {sum(r['valid'] for r in rs)} | {sum(r['joint_le_all'] for r in rs)} | "
                     f"{len(better)} ({sum(r['best_baseline'] is None for r in rs)} where no baseline has a plan) | "
                     f"{(sum(gains) / len(gains)) if gains else 0:.2f} % / {max(gains, default=0):.2f} % | "
                     f"{geomean([r['ratio'] for r in rs]):.4f} | {max(r['ratio'] for r in rs):.4f} | "
                     f"{sum(r['status'] == 'optimal' for r in rs)} | {max(r['seconds'] for r in rs):.1f} |")
    lines += ["", "Per graph (all targets, k, budgets):", "",
              "| graph | sensitivities | solved | infeasible | ratio geomean | ratio max | strictly better | max s |",
              "|---|---|---|---|---|---|---|---|"]
    for g in args.graphs:
        rs = [r for r in solved if r["graph"] == g]
        ni = sum(1 for r in inf if r["graph"] == g)
        src = next((r["source"] for r in rows if r["graph"] == g), "")
        if not rs:
            lines.append(f"| {g} | {src} | 0 | {ni} | - | - | - | - |")
            continue
        better = sum(r["best_baseline"] is None or r["bottleneck"] < r["best_baseline"] * (1 - 1e-6) for r in rs)
        lines.append(f"| {g} | {src} | {len(rs)} | {ni} | {geomean([r['ratio'] for r in rs]):.4f} | "
                     f"{max(r['ratio'] for r in rs):.4f} | {better} | {max(r['seconds'] for r in rs):.1f} |")
    timed = getattr(args, "timed_rows_loaded", [])
    if timed:
        ts = sorted(timed, key=lambda r: -r["seconds"])
        lines += ["", f"Quiet machine (`/work/notes/bin/timed`, no other job running): {len(ts)} of the slowest "
                  f"instances re-solved alone take at most {ts[0]['seconds']:.1f} s each (limit {args.time_limit:g} s): "
                  + ", ".join(f"{r['graph']} {r['target']} k={r['k']} f={r['fraction']}: {r['seconds']:.1f} s, ratio "
                              f"{r['ratio']:.4f}" for r in ts if r["status"] != "infeasible") + ". The \"max s\" "
                  "columns above were measured with other jobs sharing the 2 cores."]
    acc = [r for r in solved if "plan_accuracy" in r]
    if acc:
        drops = [(r["float_accuracy"] - r["plan_accuracy"]) * 100 for r in acc]
        lines += ["", f"digits_cnn: float held-out accuracy {acc[0]['float_accuracy'] * 100:.2f} %; the {len(acc)} "
                  f"plans applied with fake-quantized weights lose at most {max(drops):.2f} pp (mean "
                  f"{sum(drops) / len(drops):.2f} pp; target <= 1 pp)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--graphs", default=",".join(ALL_GRAPHS))
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--targets", default="edge_npu_4x,gpu_2x_pcie4,hetero_1big_3small")
    ap.add_argument("--fractions", default="0.25,0.5,0.75")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--cache", default="/tmp/forgeflow-bench")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--out", default=None, help="also write every row as JSON lines here")
    ap.add_argument("--rows", action="append", default=[],
                    help="render the report from JSON-lines rows saved by earlier --json runs instead of solving")
    ap.add_argument("--timed-rows", action="append", default=[],
                    help="JSON-lines rows of instances re-solved on a quiet machine: reported as the timing figure")
    args = ap.parse_args(argv)
    args.graphs = [g for g in args.graphs.split(",") if g]
    args.ks = [int(x) for x in args.ks.split(",")]
    args.targets = [t for t in args.targets.split(",") if t]
    args.fractions = [float(x) for x in args.fractions.split(",")]
    args.timed_rows_loaded = [json.loads(ln) for f in args.timed_rows for ln in Path(f).read_text().splitlines()
                              if ln.startswith("{")]
    if args.rows:
        rows = [json.loads(ln) for f in args.rows for ln in Path(f).read_text().splitlines()
                if ln.startswith("{")]
        args.graphs = [g for g in args.graphs if any(r["graph"] == g for r in rows)]
        args.ks = sorted({r["k"] for r in rows})
        args.targets = sorted({r["target"] for r in rows})
        args.fractions = sorted({r["fraction"] for r in rows})
    else:
        rows = run(args)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = markdown(rows, args)
    print(md, file=sys.stderr if args.json else sys.stdout)
    if not args.no_report:
        from _report import write_section

        write_section("deploy_plan", "## Joint deployment plans (`bench/deploy_plan.py`)\n\n" + md)


if __name__ == "__main__":
    main()
