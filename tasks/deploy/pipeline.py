"""`forgeflow optimize` for an elastic family as catalog-backed steps (no Prefect here; ``steps.py`` wraps them).

supernet -> profile -> search -> plan -> accuracy (-> federated QAT) -> bundle (+ pipeline measurement) -> report.
Each function reads what it needs from the catalog, writes its results there under ``run_id`` and returns a small
JSON-able dict.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from forgeflow.tasks.deploy.family import Family, PlannedObjective, supernet_traces
from forgeflow.tasks.deploy.planner import ChainPlan, NoPlanError, host_stage_ms
from forgeflow.tasks.deploy.target import TargetView, host_view
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.supernet.supernet import ElasticSupernet

PRETRAINED = Path(__file__).resolve().parents[1] / "supernet" / "pretrained"
BUILTIN_FAMILIES = {"digits": PRETRAINED / "digits.safetensors"}
#: slack under the most accurate feasible subnet within which the fastest one is chosen
ACCURACY_SLACK_PP = 0.5


class FamilyError(ForgeflowError):
    """An unknown or unusable elastic family."""


def host_name() -> str:
    return f"{platform.processor() or platform.machine()} torch {torch.__version__}"


# ----------------------------------------------------------------------------------------------- supernet
def _config_key(spec: str, dataset: str | None) -> str:
    return hashlib.sha256(json.dumps([spec, dataset]).encode()).hexdigest()[:16]


def resolve_family(cat, run_id: str, spec: str, dataset: str | None, seed: int = 0) -> dict[str, Any]:
    """The trained supernet of ``spec``: the built-in ``digits`` family (shipped checkpoint, imported into the catalog
    once), ``train`` (the elastic family trained here by progressive shrinking on ``dataset``, once per dataset),
    or the id of a supernet already in the catalog. Returns its supernet_models record."""
    from forgeflow.tasks.supernet.pipeline import _config_json
    from forgeflow.tasks.supernet.train import load_dataset, load_state_arrays, subnet_accuracy, supernet_config_for

    name = spec.removeprefix("forgeflow:")
    data = load_dataset(dataset, seed=seed)
    try:
        rows = cat.read("supernet_models").to_pylist()
    except Exception:
        rows = []
    if name in BUILTIN_FAMILIES:
        from safetensors.numpy import load_file

        path = BUILTIN_FAMILIES[name]
        sid = family_supernet_id(spec, dataset)
        found = [r for r in rows if r["supernet_id"] == sid]
        if found:
            return found[-1] | {"cached": True}
        if dataset is not None:
            raise FamilyError("the built-in digits family was trained on scikit-learn's digits; use --supernet train "
                              "to train the elastic family on --data")
        cfg = supernet_config_for(data)
        net = load_state_arrays(ElasticSupernet(cfg), load_file(str(path))).eval()
        arrays = load_file(str(path))
        source = f"shipped checkpoint {path.name}"
    elif name == "train":
        from forgeflow.tasks.supernet.progressive import ShrinkSchedule, train_progressive
        from forgeflow.tasks.supernet.train import state_arrays

        sid = family_supernet_id(spec, dataset)
        found = [r for r in rows if r["supernet_id"] == sid]
        if found:
            return found[-1] | {"cached": True}
        torch.manual_seed(seed)
        cfg = supernet_config_for(data)
        net = ElasticSupernet(cfg)
        train_progressive(net, data, ShrinkSchedule.default_for(cfg.space, seed=seed))
        arrays = state_arrays(net)
        source = "trained here (progressive shrinking)"
    else:
        found = [r for r in rows if r["supernet_id"] == name]
        if not found:
            raise FamilyError(f"unknown family {spec!r}: expected 'digits' (built-in), 'train' (train the elastic "
                              f"family on --data) or the id of a supernet in catalog {cat.url}")
        return found[-1] | {"cached": True}
    sp = cfg.space
    row = {"supernet_id": sid, "dataset": dataset or "sklearn:digits", "config_json": _config_json(cfg),
           "weights_key": cat.put_arrays(arrays, run_id=run_id, description=f"elastic supernet ({source})"),
           "seed": seed, "epochs": 0, "random_subnets": 0, "n_train": len(data.x_train), "n_test": len(data.x_test),
           "train_seconds": float("nan"), "largest_accuracy_pct": subnet_accuracy(net, sp.largest(), data),
           "smallest_accuracy_pct": subnet_accuracy(net, sp.smallest(), data)}
    cat.append("supernet_models", [row], run_id=run_id)
    return row | {"cached": False, "source": source}


def family_supernet_id(spec: str, dataset: str | None) -> str:
    """The supernet id ``resolve_family`` gives ``spec``: the built-in family's by its checkpoint's content, a family
    trained here by its dataset's path, any other spec is the id itself."""
    name = spec.removeprefix("forgeflow:")
    if name in BUILTIN_FAMILIES:
        return "digits-" + hashlib.sha256(BUILTIN_FAMILIES[name].read_bytes()).hexdigest()[:12]
    if name == "train":
        return "trained-" + _config_key(name, str(Path(dataset).resolve()) if dataset else None)
    return name


def profile_id(supernet_id: str, host: str, microbatch: int) -> str:
    """Identity of a family's unit profile: the supernet, the host (processor and torch) and the microbatch."""
    return hashlib.sha256(json.dumps([supernet_id, host, microbatch]).encode()).hexdigest()[:16]


def cached_family(cat, spec: str, dataset: str | None, microbatch: int) -> dict[str, bool]:
    """Which of the family's target-independent results the catalog already holds for this host: the trained
    supernet, its unit profile at ``microbatch`` and its layer sensitivities (what a run would otherwise train,
    time and estimate; everything after them is seconds of work)."""
    sid = family_supernet_id(spec, dataset)

    def has(table: str, column: str, value: str) -> bool:
        try:
            return cat.read(table, filter=pc.field(column) == value, columns=[column]).num_rows > 0
        except Exception:
            return False

    return {"supernet": has("supernet_models", "supernet_id", sid),
            "profile": has("deploy_unit_profiles", "profile_id", profile_id(sid, host_name(), microbatch)),
            "traces": has("deploy_traces", "family", sid)}


def load_family_net(cat, record: dict[str, Any]) -> ElasticSupernet:
    from forgeflow.tasks.supernet.pipeline import load_supernet

    return load_supernet(cat, record)


def check_family_fits(spec: str, dataset: str | None, target: TargetView, cat=None) -> dict[str, Any]:
    """Before a run (nothing written): the family is known, its smallest subnet fits the target's memory at the
    smallest width, and the target's limits are not below what its fastest subnet can do. Raises ``FamilyError`` /
    ``NoPlanError`` with one line."""
    from forgeflow.tasks.deploy.chain import extract_chain
    from forgeflow.tasks.deploy.instance import _param_bytes
    from forgeflow.tasks.supernet.predictors import measure_many_ms
    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    name = spec.removeprefix("forgeflow:")
    data = load_dataset(dataset)
    if name not in BUILTIN_FAMILIES and name != "train":
        rows = []
        if cat is not None:
            try:
                rows = cat.read("supernet_models", filter=pc.field("supernet_id") == name).to_pylist()
            except Exception:
                rows = []
        if not rows:
            raise FamilyError(f"unknown family {spec!r}: expected 'digits' (built-in), 'train' (train the elastic "
                              f"family on --data) or the id of a supernet in the catalog")
    if name in BUILTIN_FAMILIES and dataset is not None:
        raise FamilyError("the built-in digits family was trained on scikit-learn's digits; use --supernet train "
                          "to train the elastic family on --data")
    net = ElasticSupernet(supernet_config_for(data)).eval()
    sp = net.config.space
    latency = None
    if any(n is not None for n in target.latency_models):
        from forgeflow.tasks.deploy.device_latency import TargetLatency, resolve

        if cat is None:
            raise FamilyError(f"target {target.name} takes latency from fitted device models: open a catalog")
        latency = TargetLatency.load(cat, resolve(cat, target, sp))
    chain, specs = extract_chain(net, sp.smallest())
    low = min(target.bits)
    need = [_param_bytes(u, low) for u in chain]
    caps = target.memory_bytes
    if max(need) > max(caps) or sum(need) > sum(caps):
        raise NoPlanError(f"no subnet of family {name!r} fits target {target.name}: its smallest subnet needs "
                          f"{sum(need):,.0f} bytes at {low} bits (largest unit {max(need):,.0f}), the devices hold "
                          f"{sum(caps):,.0f} ({max(caps):,.0f} the largest)")
    if target.min_accuracy_pct is not None and name in BUILTIN_FAMILIES:
        from safetensors.numpy import load_file

        from forgeflow.tasks.supernet.train import load_state_arrays, subnet_accuracy

        trained = load_state_arrays(ElasticSupernet(supernet_config_for(data)), load_file(str(BUILTIN_FAMILIES[name])))
        top = subnet_accuracy(trained, sp.largest(), data)
        if target.min_accuracy_pct > top:
            raise NoPlanError(f"infeasible accuracy floor {target.min_accuracy_pct:g} %: the most accurate subnet of "
                              f"family {name!r} (the largest) reaches {top:.2f} % on the held-out data")
    if target.latency_limit_ms is not None:
        x = (target.microbatch, data.in_channels, data.side, data.side)
        ms = float(measure_many_ms([(chain, x)], rounds=2, repeats=3)[0])
        if latency is not None:  # model-driven devices: their speed for this subnet, at the interval's lower end
            pred = latency.predict(sp.encode(sp.smallest()))
            target = replace(target, speed=tuple(
                s if n is None else float(pred[n]["lower_ms"][0]) / ms
                for s, n in zip(target.speed, target.latency_models)))
        best = min(target.time_scale(d, b) for d in range(target.k) for b in target.bits)
        floor = ms * best / target.k
        if floor > target.latency_limit_ms:
            raise NoPlanError(f"infeasible latency limit {target.latency_limit_ms:g} ms on target {target.name}: "
                              f"the fastest subnet needs about {floor:.3g} ms per microbatch even split evenly over "
                              f"{target.k} devices at the fastest width")
    return {"smallest_bytes": sum(need)}


def family_latency_models(cat, target: TargetView, dataset: str | None) -> dict[str, Any]:
    """The target's fitted device models checked against the family's space and pinned (``device_latency.resolve``);
    {} when the target names none."""
    if not any(n is not None for n in target.latency_models):
        return {}
    from forgeflow.tasks.deploy.device_latency import resolve
    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    return resolve(cat, target, supernet_config_for(load_dataset(dataset)).space)


# ----------------------------------------------------------------------------------------------- profile
def profile_family(cat, run_id: str, record: dict[str, Any], microbatch: int, dataset: str | None) -> dict[str, Any]:
    """The unit latency table of the family on this host at ``microbatch`` (measured once, then read back)."""
    from forgeflow.tasks.deploy.profile import family_units, profile_units
    from forgeflow.tasks.supernet.train import load_dataset

    host = host_name()
    pid = profile_id(record["supernet_id"], host, microbatch)
    try:
        rows = cat.read("deploy_unit_profiles", filter=pc.field("profile_id") == pid).to_pylist()
    except Exception:
        rows = []
    if rows:
        return {"profile_id": pid, "units": len(rows), "cached": True, "host": host}
    net = load_family_net(cat, record)
    data = load_dataset(dataset)
    units = family_units(net, data.side)
    table = profile_units(units, microbatch, data.in_channels)
    cat.append("deploy_unit_profiles", [{"profile_id": pid, "family": record["supernet_id"], "host": host,
                                         "microbatch": microbatch, "unit_key": k, "ms": v[0], "ms_fakequant": v[1]}
                                        for k, v in table.items()],
               run_id=run_id)
    return {"profile_id": pid, "units": len(table), "cached": False, "host": host}


def load_family(cat, record: dict[str, Any], profile: dict[str, Any], microbatch: int, dataset: str | None,
                traces: dict[str, float] | None = None) -> Family:
    from forgeflow.tasks.supernet.train import load_dataset

    net = load_family_net(cat, record)
    data = load_dataset(dataset)
    rows = cat.read("deploy_unit_profiles", filter=pc.field("profile_id") == profile["profile_id"]).to_pylist()
    unit_ms = {r["unit_key"]: r["ms"] for r in rows}
    unit_ms_fq = {r["unit_key"]: r["ms_fakequant"] for r in rows}
    if traces is None:
        traces = supernet_traces(net, data)
    return Family(net, data, unit_ms, traces, microbatch, unit_ms_fq, weights_id=str(record.get("weights_key") or ""))


def family_traces(cat, run_id: str, record: dict[str, Any], dataset: str | None) -> dict[str, Any]:
    """The supernet's per-layer Hessian traces: estimated once per family, then read back from the catalog."""
    from forgeflow.tasks.supernet.train import load_dataset

    fid = record["supernet_id"]
    try:
        rows = cat.read("deploy_traces", filter=pc.field("family") == fid).to_pylist()
    except Exception:
        rows = []
    if rows:
        return {"traces": {r["layer"]: r["trace_per_param"] for r in rows}, "traces_cached": True}
    traces = supernet_traces(load_family_net(cat, record), load_dataset(dataset))
    cat.append("deploy_traces", [{"family": fid, "layer": k, "trace_per_param": v} for k, v in traces.items()],
               run_id=run_id)
    return {"traces": traces, "traces_cached": False}


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str).encode()


# ----------------------------------------------------------------------------------------------- search
def choose(archs: list[str], acc: np.ndarray, lat: np.ndarray, target: TargetView,
           slack_pp: float = ACCURACY_SLACK_PP) -> tuple[int, str]:
    """Row of the subnet to deploy and why: among subnets with a plan (under the target's latency limit and accuracy
    floor, when it sets them), the fastest within ``slack_pp`` of the most accurate."""
    ok = np.isfinite(lat)
    why = []
    if target.latency_limit_ms is not None:
        ok &= lat <= target.latency_limit_ms
        why.append(f"certified bottleneck <= {target.latency_limit_ms:g} ms")
    if target.min_accuracy_pct is not None:
        ok &= acc >= target.min_accuracy_pct
        why.append(f"accuracy >= {target.min_accuracy_pct:g} %")
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise NoPlanError(f"no evaluated subnet meets target {target.name}'s limits ({', '.join(why) or 'memory'})")
    best = float(acc[idx].max())
    near = idx[acc[idx] >= best - slack_pp]
    pick = int(near[np.argmin(lat[near])])
    return pick, (f"the fastest of {near.size} subnet(s) within {slack_pp:g} pp of the most accurate feasible one "
                  f"({best:.2f} %)" + (f", under {' and '.join(why)}" if why else ""))


def accuracy_memo_key(record: dict[str, Any], dataset: str | None) -> str:
    """Identity of a family's subnet accuracies: the supernet (id and weights object), the data (by content) and the
    code that extracts, recalibrates and measures a subnet (``tasks.supernet``'s code version)."""
    from forgeflow.tasks.step_cache import code_version, file_digest

    blob = [record["supernet_id"], record.get("weights_key"), file_digest(dataset) if dataset else None,
            code_version("forgeflow.tasks.supernet.train")]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def known_accuracies(cat, memo_key: str) -> dict[str, float]:
    """Arch string -> accuracy % of every subnet measured before under ``memo_key`` (any target, any run)."""
    try:
        rows = cat.read("subnet_accuracies", filter=pc.field("memo_key") == memo_key,
                        columns=["arch", "accuracy_pct"]).to_pylist()
    except Exception:
        rows = []
    return {r["arch"]: float(r["accuracy_pct"]) for r in rows}


def search_subnet(cat, run_id: str, family: Family, target: TargetView, budget: int, seed: int = 0,
                  executor=None, memo_key: str | None = None, family_id: str = "", latency=None) -> dict[str, Any]:
    """Evolutionary search of the family on ``target``. With ``memo_key``, accuracies measured by earlier searches
    (on any target) are read from the catalog and only new subnets are measured (and then stored). ``latency``
    (``tasks.deploy.device_latency.TargetLatency``): the target's fitted device models set each candidate's device
    times; the front and the chosen subnet then carry each model's predicted latency and its 90 % interval."""
    from forgeflow.tasks.dask_fanout import SERIAL
    from forgeflow.tasks.supernet.search import run_search
    from forgeflow.tasks.supernet.train import subnet_accuracy

    data = family.data
    known = known_accuracies(cat, memo_key) if memo_key else {}
    objective = PlannedObjective(family, target, lambda arch: subnet_accuracy(family.net, arch, data), known=known,
                                 latency=latency)
    sp = family.net.config.space
    res = run_search(sp, objective.evaluate, budget, seed=seed, latency_limit_ms=target.latency_limit_ms,
                     executor=SERIAL if executor is None else executor, chunk_size=8)
    archs = [sp.to_string(g) for g in res.genes]
    acc, lat = np.asarray(res.accuracy, float), np.asarray(res.latency_ms, float)
    feasible = np.isfinite(lat)
    from forgeflow.tasks.supernet.pareto import non_dominated_mask

    front = np.zeros(len(archs), bool)
    if feasible.any():
        fi = np.flatnonzero(feasible)
        front[fi[non_dominated_mask(np.stack([-acc[fi], lat[fi]], axis=1))]] = True
    pick, why = choose(archs, acc, lat, target)
    measured = {a: float(v) for a, v in zip(archs, acc) if a not in known}
    if memo_key and measured:
        cat.append("subnet_accuracies", [{"memo_key": memo_key, "family": family_id, "arch": a, "accuracy_pct": v}
                                         for a, v in measured.items()], run_id=run_id)
    cat.append("deploy_candidates", [{
        "target": target.name, "target_digest": target.digest, "order": i, "arch": archs[i],
        "accuracy_pct": float(acc[i]), "bottleneck_ms": float(lat[i]), "ratio": None, "on_front": bool(front[i]),
        "chosen": i == pick} for i in range(len(archs))], run_id=run_id)
    order = np.argsort(lat)
    predicted = latency.predict(res.genes) if latency is not None else {}

    def device_ms(i: int) -> dict[str, Any]:
        if not predicted:
            return {}
        return {"device_latency_ms": {n: [float(p["latency_ms"][i]), float(p["lower_ms"][i]), float(p["upper_ms"][i])]
                                      for n, p in predicted.items()}}

    return {
        "status": res.status.value, "evaluations": int(res.evaluations), "seconds": float(res.seconds),
        "accuracies_measured": len(measured), "accuracies_reused": len(archs) - len(measured),
        "infeasible": int((~feasible).sum()),
        "front": [{"arch": archs[i], "accuracy_pct": float(acc[i]), "bottleneck_ms": float(lat[i])} | device_ms(i)
                  for i in order if front[i]],
        "candidates": [{"arch": archs[i], "accuracy_pct": float(acc[i]),
                        "bottleneck_ms": float(lat[i]) if math.isfinite(lat[i]) else None} for i in order],
        "chosen": {"arch": archs[pick], "accuracy_pct": float(acc[pick]), "bottleneck_ms": float(lat[pick])}
        | device_ms(pick),
        "why": why, "latency_limit_ms": target.latency_limit_ms,
    }


# ----------------------------------------------------------------------------------------------- plan
def plan_chosen(family: Family, arch_text: str, target: TargetView, latency=None) -> dict[str, Any]:
    """The chosen subnet planned on ``target`` (``latency``: its fitted device models, whose prediction and the
    plan's bottleneck over the prediction's 90 % interval come back as ``latency_source``)."""
    sp = family.net.config.space
    arch = sp.decode(sp.from_string(arch_text))
    plan, instance, units, info = family.plan_on(arch, target, latency, time_limit=20.0)
    host = host_view(len(plan.stages), target.microbatch)
    if info is not None:
        info["models"] = {n: dict(r) for n, r in latency.records.items()}
    return {"arch": arch_text, "plan": plan.to_json(), "instance": instance, "latency_source": info,
            "host_stage_ms": list(host_stage_ms(plan, family.host_unit_ms(arch, plan.bits),
                                                {u.name: host.transfer_ms(u.out_bytes) for u in units})),
            "units": [{"name": u.name, "host_ms": u.host_ms, "bytes_at": {str(b): v for b, v in u.bytes_at.items()},
                       "sensitivity_at": {str(b): v for b, v in u.sensitivity_at.items()},
                       "out_bytes": u.out_bytes, "layers": list(u.layers)} for u in units]}


# ----------------------------------------------------------------------------------------------- accuracy
def quantized_chain(family: Family, arch_text: str, plan: ChainPlan, act_bits: int = 8, state=None, act_qparams=None):
    """The chosen subnet as a chain with BN recalibrated (or with ``state``: fine-tuned weights), and the plan applied
    (fake-quantized weights per unit width, activations calibrated on training batches, or fixed to ``act_qparams``:
    the ranges a quantization-aware fine-tune trained with)."""
    from forgeflow.tasks.quantize.apply import quantize_model
    from forgeflow.tasks.supernet.train import accuracy_pct, recalibrate_bn

    sp = family.net.config.space
    arch = sp.decode(sp.from_string(arch_text))
    chain, specs = family.chain(arch)
    recalibrate_bn(chain, family.data.x_train)
    if state is not None:
        chain.load_state_dict(state)
    names = [s["name"] for s in specs]
    from forgeflow.tasks.quantize.layers import quantizable_modules

    layer_bits = {fqn: int(plan.bits[names[int(fqn.split(".")[0])]]) for fqn in quantizable_modules(chain)}
    calib = [family.data.x_train[i:i + 128] for i in range(0, 512, 128)]
    q = quantize_model(chain, layer_bits, act_bits=act_bits if any(b < 32 for b in layer_bits.values()) else None,
                       calibration=calib, act_qparams=act_qparams)
    return chain, specs, q, layer_bits


def check_accuracy(family: Family, arch_text: str, plan: ChainPlan) -> dict[str, Any]:
    from forgeflow.tasks.supernet.train import accuracy_pct

    chain, _, q, layer_bits = quantized_chain(family, arch_text, plan)
    d = family.data
    return {"accuracy_float_pct": accuracy_pct(chain, d.x_test, d.y_test),
            "accuracy_quantized_pct": accuracy_pct(q.model, d.x_test, d.y_test),
            "layer_bits": layer_bits, "n_test": len(d.x_test)}


def finetune_chosen(cat, run_id: str, family: Family, arch_text: str, plan: ChainPlan, clients: int, seed: int = 0,
                    executor=None) -> dict[str, Any]:
    """Federated QAT of the planned subnet over ``clients`` clients (tasks/deploy/finetune.py); the fine-tuned
    weights go to the catalog (``weights_key``), the rest is the step's summary."""
    from forgeflow.tasks.deploy.finetune import FinetuneConfig, federated_qat

    chain, specs, q, layer_bits = quantized_chain(family, arch_text, plan)
    out = federated_qat(chain, specs, layer_bits, q.act_qparams, family.data,
                        FinetuneConfig(clients=clients, seed=seed), executor=executor)
    state = out.pop("state")
    # the ranges the fine-tune trained with: the bundle quantizes the tuned weights with exactly these, so the
    # deployed model is the one whose accuracy ``accuracy_after_pct`` reports
    out["act_qparams"] = {k: [float(s), int(z)] for k, (s, z) in q.act_qparams.items()}
    out["weights_key"] = cat.put_arrays({k: v.numpy() for k, v in state.items()}, run_id=run_id,
                                        description=f"federated QAT fine-tune of {arch_text}")
    return out


def load_finetuned(cat, key: str | None):
    if not key:
        return None
    return {k: torch.from_numpy(np.asarray(v).copy()) for k, v in cat.get_arrays(key).items()}


# ----------------------------------------------------------------------------------------------- bundle
def export_bundle(family: Family, arch_text: str, planned: dict[str, Any], target: TargetView, out_dir: str | Path,
                  run_id: str, state=None, act_qparams=None) -> dict[str, Any]:
    """The bundle of the planned subnet (with ``state``: the fine-tuned weights, quantized by the same plan with the
    activation ranges ``act_qparams`` the fine-tune trained with)."""
    from forgeflow.tasks.deploy.bundle import sha256_file, write_bundle

    plan = ChainPlan.from_json(planned["plan"])
    chain, specs, q, layer_bits = quantized_chain(family, arch_text, plan, state=state, act_qparams=act_qparams)
    model = q.model
    names = [s["name"] for s in specs]
    bounds, start = [], 0
    for stage in plan.stages:
        bounds.append((start, start + len(stage)))
        start += len(stage)
    if [n for st in plan.stages for n in st] != names:
        raise ForgeflowError("plan stages do not cover the chain's units in order")
    stages, stage_units, stage_act = [], [], []
    for a, b in bounds:
        stages.append(torch.nn.Sequential(*list(model)[a:b]))  # renumbered from 0: the stage's own keys
        stage_units.append(specs[a:b])
        act = {}
        for fqn, qp in q.act_qparams.items():
            i, rest = fqn.split(".", 1)
            if a <= int(i) < b:
                act[f"{int(i) - a}.{rest}"] = qp
        stage_act.append(act)
    x = family.data.x_test[: target.microbatch]
    with torch.inference_mode():
        y = model(x)
    doc = {"run_id": run_id, "family": "elastic", "arch": arch_text, "finetuned": state is not None, "target": target.to_json(),
           "plan": plan.to_json(), "layer_bits": layer_bits,
           "predicted": {"target_stage_ms": list(plan.stage_ms), "host_stage_ms": planned["host_stage_ms"],
                         "bottleneck_ms": plan.bottleneck_ms, "lower_bound_ms": plan.lower_bound_ms,
                         "ratio": plan.to_json()["ratio"]},
           "latency_source": planned.get("latency_source")}
    path = write_bundle(out_dir, plan_json=doc, stages=stages, stage_units=stage_units, stage_act=stage_act,
                        act_bits=8 if q.act_qparams else None, check_input=x, check_output=y)
    return {"bundle": str(path), "stages": len(stages), "plan_sha256": sha256_file(Path(path) / "PLAN.json"),
            "boundaries": [list(model[:b](x).shape) for _, b in bounds[:-1]]}
