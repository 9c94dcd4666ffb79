"""The verify job as plain functions over a catalog: get the trained model, quantize it under the plan, build the
integer network (and the float reference), pick the properties, decide every instance (fanned out on Dask, one per
image x eps x network) and record the answers.

``validate_request`` checks everything checkable before a run is recorded (eps, plan against the model, supported
layers, the source run); ``tasks/verify/steps.py`` wraps ``prepare`` and ``decide`` as Prefect tasks.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow.compute as pc

from forgeflow.tasks.config import Config
from forgeflow.tasks.dask_fanout import SERIAL, ClientExecutor, as_executor, fan_out
from forgeflow.tasks.verify.errors import VerifyError
from forgeflow.tasks.verify.intnet import QNetwork, _chain, build_network, network_json
from forgeflow.tasks.verify.verifier import FALSIFIED, UNKNOWN, VERIFIED, Instance, verify_instance

ANSWERS = (VERIFIED, FALSIFIED, UNKNOWN)


@dataclass(frozen=True)
class VerifyRequest(Config):
    """``model`` (trained here on its data) or ``source_run`` (a quantize run's trained model). ``bits``: a plan
    (see ``parse_plan``); ``eps``: L-infinity radii in steps of the quantized input. ``validate`` checks the options
    on their own; ``validate_request`` checks them against the model, its data and the catalog."""

    eps: tuple[int, ...]
    model: str | None = None
    source_run: str | None = None
    bits: str | None = None
    act_bits: int = 8
    samples: int = 100
    time_limit: float = 60.0
    float_reference: bool = True
    seed: int = 0
    epochs: int = 30
    calibration_batches: int = 4
    batch_size: int = 256
    dataset: str | None = None

    def validate(self) -> "VerifyRequest":
        if bool(self.model) == bool(self.source_run):
            raise VerifyError("give exactly one of --model SPEC or --run RUN_ID")
        eps = parse_eps(self.eps)
        if self.samples < 1:
            raise VerifyError(f"--samples must be >= 1; got {self.samples}")
        if not self.time_limit > 0:
            raise VerifyError(f"--time-limit must be > 0 seconds; got {self.time_limit}")
        if not 2 <= self.act_bits <= 16:
            raise VerifyError(f"--act-bits must be in 2..16; got {self.act_bits}")
        if self.epochs < 0:
            raise VerifyError(f"--epochs must be >= 0; got {self.epochs}")
        return self if eps == tuple(self.eps) else replace(self, eps=eps)  # sorted, without repeats


def parse_eps(text: str | Sequence) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4): positive integers (steps of the quantized input)."""
    raw = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t) for t in text]
    out = []
    for t in raw:
        if not t:
            continue
        try:
            v = float(t)
        except ValueError:
            raise VerifyError(f"--eps must be positive integers (steps of the quantized input) like 1,2,4; "
                              f"got {t!r}") from None
        if not np.isfinite(v) or v <= 0 or v != int(v):
            raise VerifyError(f"--eps values must be positive integers (steps of the quantized input); got {t}")
        out.append(int(v))
    if not out:
        raise VerifyError("--eps needs at least one value, e.g. --eps 1,2,4")
    return tuple(sorted(set(out)))


def parse_plan(text: str | None, layers: Sequence[str], run_plans: Mapping[str, Mapping[str, int]] | None = None,
               model: str = "") -> tuple[dict[str, int] | None, int | None]:
    """A plan -> ({layer: weight bits} or None for the float network, act bits from a plan file or None).

    Forms: ``8`` (every layer), ``float``, ``fc1=4,fc2=8`` (every layer named), a JSON file written by
    ``forgeflow quantize --export`` ({"model", "act_bits", "layers"}), or ``plan:ID`` (a plan of the --run)."""
    run_plans = run_plans or {}
    if text is None:
        if "requested" in run_plans:
            return dict(run_plans["requested"]), None
        return {n: 8 for n in layers}, None
    t = text.strip()
    if t.lower() == "float":
        return None, None
    act = None
    if t.startswith("plan:"):
        pid = t[5:]
        if pid not in run_plans:
            raise VerifyError(f"plan {pid!r} is not in the run's plans ({', '.join(sorted(run_plans)) or 'none'}); "
                              "plan:ID needs --run")
        plan = dict(run_plans[pid])
    elif t.isdigit():
        plan = {n: int(t) for n in layers}
    elif "=" in t:
        plan = {}
        for item in t.split(","):
            name, sep, b = item.strip().rpartition("=")
            if not sep or not name or not b.strip().isdigit():
                raise VerifyError(f"--bits item {item!r} must look like LAYER=BITS")
            plan[name] = int(b)
    else:
        p = Path(t)
        if not p.exists():
            raise VerifyError(f"--bits {t!r} is neither a width, LAYER=BITS list, 'float', plan:ID nor a plan file")
        try:
            data = json.loads(p.read_text())
            plan = {str(k): int(v) for k, v in data["layers"].items()}
            act = data.get("act_bits")
            other = data.get("model")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VerifyError(f"plan file {p} is not a forgeflow plan ({{'layers': {{layer: bits}}}}): {exc}") \
                from None
        if other and model and other != model:
            raise VerifyError(f"plan file {p} is for model {other}, not {model}")
    unknown = sorted(set(plan) - set(layers))
    if unknown:
        raise VerifyError(f"the plan is for a different model: layer(s) {', '.join(unknown[:5])} are not in "
                          f"{model or 'the model'} (its layers: {', '.join(layers)})")
    missing = [n for n in layers if n not in plan]
    if missing:
        raise VerifyError(f"the plan does not cover layer(s) {', '.join(missing)} of {model or 'the model'}")
    bad = {n: b for n, b in plan.items() if not (2 <= b <= 16 or b == 32)}
    if bad:
        raise VerifyError(f"plan bit widths must be in 2..16 (or 32); got {bad}")
    return plan, (int(act) if act else None)


def _run_plans(cat, run_id: str) -> dict[str, dict[str, int]]:
    t = cat.read("quant_plans", filter=pc.field("run_id") == run_id)
    plans: dict[str, dict[str, int]] = {}
    for r in t.to_pylist():
        plans.setdefault(r["plan_id"], {})[r["layer"]] = int(r["bits"])
    return plans


def _model_layers(model) -> list[str]:
    from forgeflow.tasks.quantize.layers import quantizable_modules

    return list(quantizable_modules(model))


def validate_request(req: VerifyRequest, cat=None) -> None:
    """Raise a VerifyError (or UnsupportedLayerError / UnknownModelError) naming the problem; writes nothing."""
    from forgeflow.tasks.quantize.pipeline import build_model, find_model_record, load_data

    req.validate()
    run_plans = {}
    if req.source_run:
        if cat is None:
            raise VerifyError("--run needs a catalog")
        rec = find_model_record(cat, req.source_run)
        spec, dataset = rec.model, (None if rec.dataset == "sklearn:digits" else rec.dataset)
        run_plans = _run_plans(cat, req.source_run)
    else:
        spec, dataset = req.model, req.dataset
    model = build_model(spec)
    x = load_data(dataset, req.seed)[0]
    _chain(model.eval(), x[:1])  # names an unsupported layer
    parse_plan(req.bits, _model_layers(model), run_plans, spec)


# ---------------------------------------------------------------- preparation

@dataclass(frozen=True)
class Prepared:
    """What every instance needs (pickled to the Dask workers once)."""

    model_spec: str
    plan: dict[str, int] | None
    act_bits: int
    networks: dict[str, QNetwork]  # "quantized" and/or "float"
    torch_models: dict[str, Any]  # the same keys: fake-quant / float torch models (for the attack)
    images: list[int]  # held-out indices
    labels: list[int]
    codes: np.ndarray  # input codes of the chosen images
    accuracy: dict[str, float]


def prepare(cat, run_id: str, req: VerifyRequest) -> Prepared:
    """Train (or load) the model, quantize it under the plan, build the networks and choose the images: the first
    ``samples`` held-out images that every verified network classifies correctly."""
    import torch

    from forgeflow.tasks.quantize.apply import quantize_model
    from forgeflow.tasks.quantize.pipeline import (DIGITS, QuantizeRequest, find_model_record, load_data, load_trained,
                                         train_and_store)

    if req.source_run:
        rec = find_model_record(cat, req.source_run)
        run_plans = _run_plans(cat, req.source_run)
    else:
        rec = train_and_store(cat, run_id, QuantizeRequest(model=req.model, dataset=req.dataset, seed=req.seed,
                                                           epochs=req.epochs))
        run_plans = {}
    model = load_trained(cat, rec)
    xtr, ytr, xte, yte = load_data(None if rec.dataset == DIGITS else rec.dataset, rec.seed)
    layers = _model_layers(model)
    plan, plan_act = parse_plan(req.bits, layers, run_plans, rec.model)
    act_bits = plan_act or req.act_bits
    n = min(len(xtr), req.calibration_batches * req.batch_size)
    calib = [xtr[i:i + req.batch_size] for i in range(0, n, req.batch_size)]
    calib_plan = plan if plan is not None else {k: 8 for k in layers}
    qm = quantize_model(model, calib_plan, act_bits, calib)
    networks, torch_models = {}, {}
    meta = {"model": rec.model, "plan": plan, "act_bits": act_bits}
    if plan is not None:
        networks["quantized"] = build_network(model, plan, qm.act_qparams, act_bits, xtr[:1], exact=True, meta=meta)
        torch_models["quantized"] = qm.model
    if plan is None or req.float_reference:
        networks["float"] = build_network(model, calib_plan, qm.act_qparams, act_bits, xtr[:1], exact=False,
                                          meta={**meta, "plan": None})
        torch_models["float"] = model
    ref = next(iter(networks.values()))
    codes = ref.codes_of(xte.numpy())
    y = yte.numpy()
    ok = np.ones(len(y), dtype=bool)
    accuracy = {}
    for key, net in networks.items():
        pred = net.predict(codes)
        accuracy[key] = float((pred == y).mean())
        ok &= pred == y
    chosen = np.flatnonzero(ok)[:req.samples]
    del torch
    return Prepared(rec.model, plan, act_bits, networks, torch_models, chosen.tolist(), y[chosen].tolist(),
                    codes[chosen], accuracy)


def instances(prep: Prepared, eps: Sequence[int]) -> list[tuple[str, Instance]]:
    return [(key, Instance(int(img), int(e), int(lab), tuple(int(v) for v in prep.codes[i])))
            for e in eps for key in prep.networks for i, (img, lab) in enumerate(zip(prep.images, prep.labels))]


def _decide(net: QNetwork, inst: Instance, time_limit: float, model) -> dict:
    import torch

    torch.set_num_threads(1)
    return verify_instance(net, inst, time_limit, model=model).to_dict()


def decide_all(prep: Prepared, eps: Sequence[int], time_limit: float, executor=SERIAL) -> list[dict[str, Any]]:
    """Every instance's answer, one submitted call per image x eps x network (``tasks.dask_fanout`` contract; on
    Dask the networks and torch models are scattered to every worker once)."""
    work = instances(prep, eps)
    executor = as_executor(executor)
    nets, mods = dict(prep.networks), dict(prep.torch_models)
    if isinstance(executor, ClientExecutor):
        nets = {k: executor.client.scatter(v, broadcast=True) for k, v in nets.items()}
        mods = {k: executor.client.scatter(v, broadcast=True) for k, v in mods.items()}
    answers = fan_out(executor, _decide, [(nets[k], inst, time_limit, mods[k]) for k, inst in work])
    rows = []
    for (key, inst), a in zip(work, answers):
        rows.append({"network": key, "model": prep.model_spec, "plan": plan_text(prep.plan),
                     "act_bits": prep.act_bits if key == "quantized" else None, "image": inst.image,
                     "label": inst.label, "eps": inst.eps, "answer": a["answer"], "method": a["method"],
                     "seconds": a["seconds"], "solver_status": a["solver_status"],
                     "margin_lower": _finite(a["margin_lower"]), "margin_upper": _finite(a["margin_upper"]),
                     "confirmed_by": a["confirmed_by"], "milp_solves": a["milp_solves"],
                     "milp_nodes": a["milp_nodes"], "detail": a["detail"],
                     "counterexample": list(a["counterexample"]) if a["counterexample"] is not None else None,
                     "center": list(inst.center)})
    return rows


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def plan_text(plan: Mapping[str, int] | None) -> str:
    return "float" if plan is None else ",".join(f"{k}={v}" for k, v in plan.items())


def summarize(rows: Sequence[Mapping[str, Any]], eps: Sequence[int]) -> dict[str, Any]:
    """Counts per network and eps, median / max seconds, deciding methods."""
    out: dict[str, Any] = {}
    for key in sorted({r["network"] for r in rows}):
        per = {}
        for e in eps:
            rs = [r for r in rows if r["network"] == key and r["eps"] == e]
            secs = [r["seconds"] for r in rs if r["answer"] != UNKNOWN]
            per[str(e)] = {**{a: sum(r["answer"] == a for r in rs) for a in ANSWERS}, "instances": len(rs),
                           "median_seconds": float(np.median(secs)) if secs else None,
                           "max_seconds": float(max(r["seconds"] for r in rs)) if rs else None,
                           "methods": {m: sum(r["method"] == m for r in rs) for m in sorted({r["method"] for r in rs})}}
        out[key] = {"per_eps": per, **{a: sum(r["answer"] == a for r in rows if r["network"] == key)
                                       for a in ANSWERS}}
    return out


def record(cat, run_id: str, prep: Prepared, rows: list[dict[str, Any]], eps: Sequence[int]) -> dict[str, Any]:
    """Write verify_results and verify_networks (the integer network JSON as an object) and the plot."""
    cat.append("verify_results", rows, run_id=run_id)
    net_rows = []
    keys = {}
    for key, net in prep.networks.items():
        blob = json.dumps(network_json(net)).encode()
        keys[key] = cat.put_object(blob, ".json", run_id=run_id, description=f"{key} network of {prep.model_spec}")
        net_rows.append({"network": key, "model": prep.model_spec, "plan": plan_text(prep.plan if key == "quantized"
                                                                                      else None),
                         "act_bits": prep.act_bits if key == "quantized" else None, "network_key": keys[key],
                         "accuracy": prep.accuracy[key], "images": len(prep.images),
                         "layers": len(net.layers)})
    cat.append("verify_networks", net_rows, run_id=run_id)
    summary = summarize(rows, eps)
    plot = cat.put_object(counts_plot_png(summary, eps, prep.model_spec), ".png", run_id=run_id,
                          description="verified / falsified / unknown per eps")
    return {"summary": summary, "network_keys": keys, "plot": plot}


def counts_plot_png(summary: Mapping[str, Any], eps: Sequence[int], title: str) -> bytes:
    """One panel per eps: verified / falsified / unknown counts for each network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(summary)
    fig, axes = plt.subplots(1, len(eps), figsize=(3.2 * len(eps) + 0.8, 3.4), squeeze=False)
    colors = {VERIFIED: "tab:green", FALSIFIED: "tab:red", UNKNOWN: "tab:gray"}
    for ax, e in zip(axes[0], eps):
        x = np.arange(len(nets))
        bottom = np.zeros(len(nets))
        for a in ANSWERS:
            vals = np.array([summary[n]["per_eps"][str(e)][a] for n in nets], dtype=float)
            ax.bar(x, vals, bottom=bottom, color=colors[a], label=a)
            bottom += vals
        ax.set_xticks(x, nets)
        ax.set_title(f"eps = {e} step{'s' if e != 1 else ''}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("instances")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{title}: robustness answers")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- export for third parties

RECHECK = '''"""Re-check a forgeflow verify export without forgeflow (numpy only): every falsification's counterexample is
inside its box and misclassified by the integer network in network.json (exact rational arithmetic), and every
instance's centre is classified as its label. Usage: python recheck.py [DIR]"""
import json, sys
from fractions import Fraction
from pathlib import Path
import numpy as np


def conv_dense(k, ins, outs, stride, pad):
    k = np.asarray(k); co, ci, kh, kw = k.shape; _, h, w = ins; _, ho, wo = outs
    d = np.zeros((co * ho * wo, ci * h * w), dtype=object)
    for c in range(co):
        for oy in range(ho):
            for ox in range(wo):
                r = (c * ho + oy) * wo + ox
                for cc in range(ci):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * stride[0] + ky - pad[0], ox * stride[1] + kx - pad[1]
                            if 0 <= iy < h and 0 <= ix < w:
                                d[r, (cc * h + iy) * w + ix] += int(k[c, cc, ky, kx])
    return d


def logits(net, q):
    h = [int(v) for v in q]
    for i, L in enumerate(net["layers"]):
        W = conv_dense(L["weight_int"], L["in_shape"], L["out_shape"], L["stride"], L["padding"]) \\
            if L["kind"] == "Conv2d" else np.asarray(L["weight_int"], dtype=object)
        d = [v - L["input_zero_point"] for v in h]
        acc = [sum(int(W[r, c]) * d[c] for c in range(len(d)) if W[r, c]) for r in range(W.shape[0])]
        y = [Fraction(m) * a + Fraction(b) for m, a, b in zip(L["mult"], acc, L["bias_real"])]
        if i == len(net["layers"]) - 1:
            return y
        rq = L["requant"]
        h = [min(max(round(v * Fraction(rq["inv_scale"])) + rq["zero_point"], rq["clamp"][0]), rq["clamp"][1])
             for v in y]  # round(Fraction) rounds half to even
        if "maxpool" in L:
            c, hh, ww = L["out_shape"]; (kh, kw), (sh, sw) = L["maxpool"]["kernel"], L["maxpool"]["stride"]
            g = np.asarray(h, dtype=object).reshape(c, hh, ww)
            ho, wo = (hh - kh) // sh + 1, (ww - kw) // sw + 1
            h = [max(g[cc, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw].reshape(-1))
                 for cc in range(c) for oy in range(ho) for ox in range(wo)]


def keeps(y, c):
    return all(y[c] > y[j] for j in range(c)) and all(y[c] >= y[j] for j in range(c + 1, len(y)))


def main(root):
    root = Path(root)
    net = json.loads((root / "network.json").read_text())
    bad = 0
    inst = json.loads((root / "instances.json").read_text())
    for r in inst["instances"]:
        if r["network"] != "quantized":
            continue
        if not keeps(logits(net, r["center"]), r["label"]):
            bad += 1; print("centre not classified as its label:", r["image"], r["eps"])
        if r["answer"] == "falsified":
            q = r["counterexample"]
            inside = all(lo <= v <= hi for v, lo, hi in zip(q, r["box_lo"], r["box_hi"]))
            if not inside or keeps(logits(net, q), r["label"]):
                bad += 1; print("counterexample does not hold:", r["image"], r["eps"])
    print(f"{bad} problem(s) in {len(inst['instances'])} instances")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
'''


def export_run(cat, run_id: str, out_dir: str | Path) -> dict[str, str]:
    """Write network.json (+ network_float.json), instances.json and recheck.py for ``run_id`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nets = cat.read("verify_networks", filter=pc.field("run_id") == run_id).to_pylist()
    rows = cat.read("verify_results", filter=pc.field("run_id") == run_id).to_pylist()
    files = {}
    qmax = {}
    for n in nets:
        data = json.loads(cat.get_object(n["network_key"]))
        qmax[n["network"]] = data["input"]["qmax"]
        name = "network.json" if n["network"] == "quantized" else f"network_{n['network']}.json"
        (out / name).write_text(json.dumps(data, indent=1))
        files[n["network"]] = str(out / name)
    inst = []
    for r in rows:
        top = qmax.get(r["network"], 255)
        c = np.asarray(r["center"], dtype=np.int64)
        inst.append({"network": r["network"], "image": r["image"], "label": r["label"], "eps": r["eps"],
                     "center": r["center"], "box_lo": np.clip(c - r["eps"], 0, top).tolist(),
                     "box_hi": np.clip(c + r["eps"], 0, top).tolist(), "answer": r["answer"], "method": r["method"],
                     "confirmed_by": r["confirmed_by"], "margin_lower": r["margin_lower"],
                     "counterexample": r["counterexample"]})
    (out / "instances.json").write_text(json.dumps({
        "property": "every input code q with |q - center|_inf <= eps, 0 <= q <= qmax, keeps label (first-max "
                    "argmax rule; see network.json 'semantics')", "run_id": run_id, "instances": inst}, indent=1))
    (out / "recheck.py").write_text(RECHECK)
    files.update(instances=str(out / "instances.json"), recheck=str(out / "recheck.py"))
    return files


def run_seconds(t0: float) -> float:
    return time.perf_counter() - t0
