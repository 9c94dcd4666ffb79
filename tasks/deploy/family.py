"""An elastic family ready to deploy: the trained supernet, its data, its unit latency table and layer sensitivities.

Sensitivity of a subnet's layer at ``b`` bits is HAWQ's ``tr(H)/n * ||Q_b(W) - W||^2``. The Hessian trace per
parameter is estimated once per supernet (Hutchinson, on the largest subnet, whose weights every subnet slices) and
reused for every candidate: a per-candidate estimate costs ~100 double-backward passes, too much inside a search,
while the perturbation ``||Q_b(W) - W||^2`` is computed exactly on each candidate's own slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from forgeflow.tasks.deploy.chain import extract_chain
from forgeflow.tasks.deploy.instance import UnitCost, build_instance, unit_costs
from forgeflow.tasks.deploy.planner import ChainPlan, plan_instance
from forgeflow.tasks.deploy.profile import chain_keys
from forgeflow.tasks.quantize.fakequant import weight_perturbation
from forgeflow.tasks.quantize.layers import quantizable_modules
from forgeflow.tasks.supernet.space import ElasticArch
from forgeflow.tasks.supernet.supernet import ElasticSupernet
from forgeflow.tasks.supernet.train import Dataset


def supernet_traces(net: ElasticSupernet, data: Dataset, batch: int = 64, samples: int = 8, seed: int = 0
                    ) -> dict[str, float]:
    """Supernet layer FQN -> Hessian trace per parameter, on the largest subnet (Hutchinson)."""
    from forgeflow.tasks.quantize.sensitivity import hutchinson_traces

    torch.manual_seed(seed)
    net.set_active(net.config.space.largest())
    tr = hutchinson_traces(net.eval(), [(data.x_train[:batch], data.y_train[:batch])], max_samples=samples,
                           min_samples=samples, probes_per_batch=samples, seed=seed)
    mods = quantizable_modules(net)
    return {n: float(tr[n][0]) / mods[n].weight.numel() for n in mods}


def _supernet_layer(specs: list[dict], fqn: str) -> str:
    """Chain layer ``"<unit>.<path>"`` -> the supernet layer whose weights it slices."""
    unit, _, path = fqn.partition(".")
    spec = specs[int(unit)]
    if spec["kind"] == "stem":
        return "stem"
    if spec["kind"] == "head":
        return "head"
    s, b = spec["name"][1:].split("b")
    return f"stages.{s}.{b}.{path}"


_PERTURBATIONS: dict[tuple, float] = {}  # (weights id, supernet layer, slice shape, bits) -> ||Q_b(W) - W||^2


@dataclass
class Family:
    net: ElasticSupernet
    data: Dataset
    unit_ms: Mapping[str, float]  # unit key -> host ms per microbatch (tasks/deploy/profile.py)
    traces: Mapping[str, float]  # supernet layer -> trace per parameter
    microbatch: int
    unit_ms_fakequant: Mapping[str, float] | None = None  # the same units with fake-quantized inputs (host runs)
    weights_id: str = ""  # identity of the supernet's weights (catalog object key); "" = no sharing across copies

    def host_unit_ms(self, arch: ElasticArch, bits_of: Mapping[str, int]) -> dict[str, float]:
        """Unit name -> ms this host takes for it in a bundle stage (fake-quantized inputs where bits < 32)."""
        out = {}
        for key, spec, _ in chain_keys(self.net, arch, self.data.side):
            q = bits_of.get(spec["name"], 32) < 32 and self.unit_ms_fakequant is not None
            out[spec["name"]] = (self.unit_ms_fakequant if q else self.unit_ms)[key]
        return out

    def chain(self, arch: ElasticArch) -> tuple[nn.Sequential, list[dict[str, Any]]]:
        return extract_chain(self.net, arch)

    def costs(self, arch: ElasticArch, bits) -> tuple[nn.Sequential, list[dict], list[UnitCost]]:
        chain, specs = self.chain(arch)
        keys = chain_keys(self.net, arch, self.data.side)
        host = [self.unit_ms[k] for k, _, _ in keys]
        mods = quantizable_modules(chain)
        cache: dict[tuple[str, int], float] = {}

        def layer_cost(fqn: str, b: int) -> float:
            if (fqn, b) not in cache:
                layer = _supernet_layer(specs, fqn)
                t = max(self.traces.get(layer, 0.0), 0.0)
                cache[(fqn, b)] = t * self.perturbation(layer, mods[fqn].weight, b)
            return cache[(fqn, b)]

        shape = (self.microbatch, self.data.in_channels, self.data.side, self.data.side)
        units = unit_costs(chain, [s["name"] for s in specs], host, layer_cost, bits, self.microbatch, shape)
        return chain, specs, units

    def perturbation(self, layer: str, weight: torch.Tensor, bits: int) -> float:
        """``||Q_b(W) - W||^2`` of a subnet's slice of supernet ``layer``. Subnets share slices (a block at one
        expand ratio and kernel size is the same slice in every subnet that has it), and a slice is fixed by its
        layer and shape, so the value is kept per process for these weights: the search's candidates, on whatever
        worker and in whichever chunk, compute each slice once."""
        if not self.weights_id:
            return weight_perturbation(weight, bits)
        key = (self.weights_id, layer, tuple(weight.shape), int(bits))
        if key not in _PERTURBATIONS:
            if len(_PERTURBATIONS) > 100_000:
                _PERTURBATIONS.clear()
            _PERTURBATIONS[key] = weight_perturbation(weight, bits)
        return _PERTURBATIONS[key]

    def plan(self, arch: ElasticArch, target, time_limit: float = 5.0) -> tuple[ChainPlan, dict, list[UnitCost]]:
        plan, instance, units, _ = self.plan_on(arch, target, None, time_limit)
        return plan, instance, units

    def plan_on(self, arch: ElasticArch, target, latency=None, time_limit: float = 5.0
                ) -> tuple[ChainPlan, dict, list[UnitCost], dict | None]:
        """``plan`` with the target's fitted device models (``latency``: ``tasks.deploy.device_latency.TargetLatency``)
        setting the model-driven devices' speed for this subnet; the last item is the prediction (None without)."""
        _, _, units = self.costs(arch, target.bits)
        info = None
        if latency is not None:
            target, info = latency.apply(target, self.net.config.space.encode(arch), sum(u.host_ms for u in units))
        instance = build_instance(units, target, arch.to_string())
        plan = plan_instance(instance, time_limit=time_limit)
        if info is not None:
            from forgeflow.tasks.deploy.device_latency import bottleneck_interval

            info["bottleneck_interval_ms"] = list(bottleneck_interval(plan, units, target, info))
        return plan, instance, units, info


class PlannedObjective:
    """Search objective: [accuracy % of the extracted subnet, certified pipeline bottleneck ms on the target].
    The planner is memoised per candidate; a candidate no plan fits gets ``inf`` latency (never on the front).
    Accuracy does not depend on the target: ``known`` (read from the catalog's ``subnet_accuracies``) answers it for
    every subnet an earlier search measured, so a search on a new target only plans those."""

    def __init__(self, family: Family, target, accuracy, known: Mapping[str, float] | None = None,
                 latency=None) -> None:
        self.family, self.target, self.accuracy, self.latency = family, target, accuracy, latency
        self.known = dict(known or {})  # arch string -> accuracy % measured before (on any target)
        self.space = family.net.config.space
        self.memo: dict[str, dict[str, Any]] = {}

    def plan_of(self, arch: ElasticArch) -> dict[str, Any]:
        from forgeflow.tasks.deploy.planner import NoPlanError

        key = arch.to_string()
        if key not in self.memo:
            try:
                plan, _, _, info = self.family.plan_on(arch, self.target, self.latency)
                self.memo[key] = {"bottleneck_ms": plan.bottleneck_ms, "ratio": plan.ratio, "plan": plan.to_json(),
                                  "latency_source": info}
            except NoPlanError as exc:
                self.memo[key] = {"bottleneck_ms": float("inf"), "ratio": None, "error": str(exc)}
        return self.memo[key]

    def evaluate(self, genes) -> np.ndarray:
        g = self.space.validate(genes)
        torch.set_num_threads(1)
        out = []
        for row in g:
            arch = self.space.decode(row)
            acc = self.known.get(arch.to_string())
            out.append([self.accuracy(arch) if acc is None else acc, self.plan_of(arch)["bottleneck_ms"]])
        return np.asarray(out, dtype=float)
