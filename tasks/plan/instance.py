"""The joint placement-and-precision instance and its JSON form (msr-fiddle's graph JSON plus bit options).

The documented format (README, "forgeflow plan") is msr-fiddle/dnn-partitioning's graph JSON with these additions:

* a node may carry ``bitOptions``: ``[{"bits": b, "latency": ms, "size": bytes, "sensitivity": x}, ...]``;
* a node's own ``fpgaLatency`` / ``size`` is its float option (32 bits) with sensitivity 0;
* ``maxFPGAs`` is k, ``maxSizePerFPGA`` the per-device memory, ``sensitivityBudget`` (optional) the largest allowed
  total sensitivity of the plan; ``maxCPUs`` is ignored (a pure pipeline);
* choosing an option replaces the node's ``fpgaLatency`` and ``size`` by the option's; edges are unchanged;
* heterogeneous pipelines (optional): ``stageDevices``, one entry per stage in pipeline order,
  ``{"name": str, "memory": bytes, "timeScale": {"<bits>": factor}, "nodeLatency": {"<node id>": [ms, ...]}}``:
  an option of width b takes ``latency x timeScale[b]`` on that device (factor 1 for widths not listed), or the
  explicit per-option list of ``nodeLatency`` (float option first, then ``bitOptions`` in order); ``memory``
  replaces ``maxSizePerFPGA`` for that stage.

``PlanInstance`` holds it as arrays: option ``j`` of node ``i`` (``j = 0`` is float) has ``bits[i, j]``,
``size[i, j]``, ``sens[i, j]`` and time ``time[s, i, j]`` on stage ``s``; ``valid[i, j]`` masks the padding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.plan.target import FLOAT_BITS, HardwareTarget, read_latency_table

#: latency_source(stage, device, node) -> float ms on that device, or None to fall back to host ms x speed_factor
LatencySource = Callable[[int, Any, Any], "float | None"]


@dataclass(frozen=True)
class PlanInstance:
    """A validated joint instance. ``base`` carries the graph (float figures, transfer costs, co-location classes,
    k); ``mem_caps[s]`` is stage s's memory (None: unbounded), ``budget`` the sensitivity budget (None: unbounded)."""

    name: str
    raw_ids: tuple[Any, ...]
    base: PartitionProblem
    bits: np.ndarray  # (n, J) int, 0 on padding
    size: np.ndarray  # (n, J)
    sens: np.ndarray  # (n, J)
    time: np.ndarray  # (k, n, J) ms of option j of node i on stage s
    valid: np.ndarray  # (n, J) bool
    mem_caps: tuple[float | None, ...]
    budget: float | None
    device_names: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.base.n

    @property
    def k(self) -> int:
        return self.base.k

    @property
    def homogeneous(self) -> bool:
        return len(set(self.mem_caps)) <= 1 and bool(np.all(self.time == self.time[:1]))

    def option_of_bits(self, i: int, b: int) -> int | None:
        hit = np.flatnonzero(self.valid[i] & (self.bits[i] == b))
        return int(hit[0]) if hit.size else None

    def uniform_choice(self, b: int) -> np.ndarray:
        """Every node at width ``b`` where it has that option, float elsewhere."""
        return np.array([self.option_of_bits(i, b) or 0 for i in range(self.n)], dtype=np.int64)

    def widths(self) -> list[int]:
        return sorted({int(b) for b in self.bits[self.valid]} - {FLOAT_BITS}, reverse=True)

    def min_sensitivity(self) -> float:
        return float(np.where(self.valid, self.sens, np.inf).min(axis=1).sum())

    def uniform4_sensitivity(self) -> float:
        """Total sensitivity with every node at 4 bits (nodes without a 4-bit option at their narrowest width)."""
        tot = 0.0
        for i in range(self.n):
            j = self.option_of_bits(i, 4)
            if j is None:
                opts = np.flatnonzero(self.valid[i])
                j = int(opts[np.argmin(self.bits[i, opts])])
            tot += float(self.sens[i, j])
        return tot

    def with_budget(self, budget: float | None) -> "PlanInstance":
        return _replace(self, budget=None if budget is None else float(budget))

    def with_k(self, k: int) -> "PlanInstance":
        """The same instance on ``k`` stages (equal devices; a heterogeneous list repeats its last device)."""
        k = int(k)
        idx = [min(s, self.k - 1) for s in range(k)]
        return _replace(self, base=self.base.with_k(k), time=self.time[idx], mem_caps=tuple(self.mem_caps[s] for s in idx),
                        device_names=tuple(self.device_names[s] for s in idx) if self.device_names else ())

    def validate(self) -> "PlanInstance":
        n, J = self.bits.shape
        for name, arr in (("option size", self.size), ("option sensitivity", self.sens)):
            bad = np.flatnonzero((self.valid & (~np.isfinite(arr) | (arr < 0))).any(axis=1))
            if bad.size:
                raise InvalidGraphError(f"node {self.raw_ids[int(bad[0])]!r} has a negative or non-finite {name}")
        bad = np.flatnonzero((self.valid[None] & (~np.isfinite(self.time) | (self.time < 0))).any(axis=(0, 2)))
        if bad.size:
            raise InvalidGraphError(f"node {self.raw_ids[int(bad[0])]!r} has a negative or non-finite option latency")
        if len(self.mem_caps) != self.k or self.time.shape != (self.k, n, J):
            raise InvalidGraphError(f"per-stage devices ({len(self.mem_caps)}) do not match k = {self.k}")
        for s, cap in enumerate(self.mem_caps):
            if cap is not None and (not math.isfinite(cap) or cap <= 0):
                raise InvalidGraphError(f"memory of stage {s} must be a positive number, got {cap}")
        if self.budget is not None and (not math.isfinite(self.budget) or self.budget < 0):
            raise InvalidGraphError(f"sensitivityBudget must be a non-negative number, got {self.budget}")
        return self

    # ------------------------------------------------------------------ JSON
    @classmethod
    def from_json_dict(cls, data: Any, *, name: str = "instance", k: int | None = None,
                       budget: float | None = None) -> "PlanInstance":
        where = f"instance {name!r}"
        if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list) \
                or not isinstance(data.get("edges"), list):
            raise InvalidGraphError(f"{where}: expected a JSON object with 'nodes' and 'edges' lists")
        if k is None and data.get("maxFPGAs") is None:
            raise InvalidGraphError(f"{where}: missing 'maxFPGAs' (the number of pipeline stages k)")
        kk = int(k if k is not None else _num(data["maxFPGAs"], "maxFPGAs", where))
        if kk < 1:
            raise InvalidGraphError(f"{where}: 'maxFPGAs' must be >= 1, got {kk}")
        stripped = {key: v for key, v in data.items() if key != "maxSizePerFPGA"}
        base = PartitionProblem.from_msr_dict(stripped, k=kk, name=name)
        nodes = data["nodes"]
        raw_ids = tuple(nd["id"] for nd in nodes)
        opts: list[list[tuple[int, float, float, float]]] = []
        for nd in nodes:
            nid = nd["id"]
            row = [(FLOAT_BITS, float(nd["fpgaLatency"]), float(nd.get("size", 0.0)), 0.0)]
            bo = nd.get("bitOptions", [])
            if not isinstance(bo, list):
                raise InvalidGraphError(f"{where}: node {nid!r}: 'bitOptions' must be a list")
            for o in bo:
                if not isinstance(o, Mapping):
                    raise InvalidGraphError(f"{where}: node {nid!r}: each bit option must be an object")
                for key in ("bits", "latency", "size", "sensitivity"):
                    if key not in o:
                        raise InvalidGraphError(f"{where}: node {nid!r}: bit option missing field '{key}'")
                b = o["bits"]
                if isinstance(b, bool) or not isinstance(b, (int, float)) or int(b) != b or not 1 <= b < FLOAT_BITS:
                    raise InvalidGraphError(f"{where}: node {nid!r}: bit option 'bits' must be an integer in "
                                            f"1..{FLOAT_BITS - 1}, got {b!r}")
                vals = [_num(o[key], f"bit option '{key}'", f"{where}: node {nid!r}")
                        for key in ("latency", "size", "sensitivity")]
                if any(v < 0 for v in vals):
                    raise InvalidGraphError(f"{where}: node {nid!r}: bit option {int(b)}: negative latency, size or "
                                            f"sensitivity")
                if any(int(b) == r[0] for r in row):
                    raise InvalidGraphError(f"{where}: node {nid!r}: two options of {int(b)} bits")
                row.append((int(b), *vals))
            opts.append(row)
        bits, lat, size, sens, valid = _pad(opts)
        devs = data.get("stageDevices")
        cap = data.get("maxSizePerFPGA")
        cap = None if cap is None else _num(cap, "maxSizePerFPGA", where)
        time = np.repeat(lat[None], kk, axis=0)
        names: list[str] = []
        caps: list[float | None] = [cap] * kk
        if devs is not None:
            if not isinstance(devs, list) or len(devs) != kk:
                raise InvalidGraphError(f"{where}: 'stageDevices' must list one device per stage ({kk})")
            index = {str(r): i for i, r in enumerate(raw_ids)}
            for s, d in enumerate(devs):
                if not isinstance(d, Mapping):
                    raise InvalidGraphError(f"{where}: stageDevices[{s}] must be an object")
                names.append(str(d.get("name", f"device{s}")))
                if d.get("memory") is not None:
                    caps[s] = _num(d["memory"], f"stageDevices[{s}].memory", where)
                for bkey, f in dict(d.get("timeScale", {})).items():
                    try:
                        b = int(bkey)
                    except ValueError:
                        raise InvalidGraphError(f"{where}: stageDevices[{s}].timeScale key {bkey!r} is not a bit "
                                                f"width") from None
                    f = _num(f, f"stageDevices[{s}].timeScale[{bkey}]", where)
                    time[s] = np.where(bits == b, lat * f, time[s])
                for nid, row in dict(d.get("nodeLatency", {})).items():
                    if str(nid) not in index:
                        raise InvalidGraphError(f"{where}: stageDevices[{s}].nodeLatency names unknown node {nid!r}")
                    i = index[str(nid)]
                    if not isinstance(row, list) or len(row) != int(valid[i].sum()):
                        raise InvalidGraphError(f"{where}: stageDevices[{s}].nodeLatency[{nid!r}] must list one "
                                                f"latency per option ({int(valid[i].sum())})")
                    time[s, i, : len(row)] = [_num(x, f"stageDevices[{s}].nodeLatency", where) for x in row]
        if budget is None and data.get("sensitivityBudget") is not None:
            budget = _num(data["sensitivityBudget"], "sensitivityBudget", where)
        meta = dict(data.get("forgeflowPlan", {})) if isinstance(data.get("forgeflowPlan"), Mapping) else {}
        inst = cls(name, raw_ids, base, bits, size, sens, time, valid, tuple(caps), budget, tuple(names), meta)
        return inst.validate()

    @classmethod
    def from_json(cls, path: str | Path, **kw) -> "PlanInstance":
        from forgeflow.tasks.files import read_json

        p = Path(path)
        data = read_json(p, "instance", InvalidGraphError)
        return cls.from_json_dict(data, name=kw.pop("name", p.stem), **kw)

    def to_json_dict(self) -> dict[str, Any]:
        """The documented JSON form (round-trips through ``from_json_dict``)."""
        b = self.base
        het = not self.homogeneous
        ref = 0 if not het else None
        nodes = []
        cls_of: dict[int, int] = {}
        for ci, cl in enumerate(b.classes):
            if len(cl) > 1:
                for i in cl:
                    cls_of[i] = ci
        lat = self.time[0] if ref == 0 else self._reference_latency()
        for i in range(self.n):
            rec: dict[str, Any] = {"id": self.raw_ids[i], "name": str(self.meta.get("names", {}).get(
                str(self.raw_ids[i]), self.raw_ids[i])), "fpgaLatency": float(lat[i, 0]),
                "size": float(self.size[i, 0]), "cpuLatency": 0.0, "supportedOnFpga": True, "isBackwardNode": False}
            if i in cls_of:
                rec["colorClass"] = cls_of[i]
            opts = [{"bits": int(self.bits[i, j]), "latency": float(lat[i, j]), "size": float(self.size[i, j]),
                     "sensitivity": float(self.sens[i, j])} for j in range(1, self.bits.shape[1]) if self.valid[i, j]]
            if opts:
                rec["bitOptions"] = opts
            nodes.append(rec)
        edges = [{"sourceId": self.raw_ids[u], "destId": self.raw_ids[v], "cost": float(b.c[u])} for u, v in b.edges]
        out: dict[str, Any] = {"maxFPGAs": self.k, "maxCPUs": 0}
        if not het and self.mem_caps and self.mem_caps[0] is not None:
            out["maxSizePerFPGA"] = float(self.mem_caps[0])
        if self.budget is not None:
            out["sensitivityBudget"] = float(self.budget)
        out["nodes"] = nodes
        out["edges"] = edges
        if het:
            out["stageDevices"] = [
                {"name": self.device_names[s] if self.device_names else f"device{s}", "memory": self.mem_caps[s],
                 "nodeLatency": {str(self.raw_ids[i]): [float(self.time[s, i, j]) for j in np.flatnonzero(self.valid[i])]
                                 for i in range(self.n)}}
                for s in range(self.k)]
        out["forgeflowPlan"] = {key: v for key, v in self.meta.items() if key != "names"}
        return out

    def _reference_latency(self) -> np.ndarray:
        return self.time.min(axis=0)

    def dump(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_json_dict(), indent=1) + "\n")
        return p


def _replace(inst: PlanInstance, **kw) -> PlanInstance:
    from dataclasses import replace

    return replace(inst, **kw)


def _num(v: Any, what: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise InvalidGraphError(f"{where}: '{what}' must be a finite number, got {v!r}")
    return float(v)


def _pad(opts: list[list[tuple[int, float, float, float]]]):
    n, J = len(opts), max(len(r) for r in opts) if opts else 1
    bits = np.zeros((n, J), dtype=np.int64)
    lat = np.zeros((n, J))
    size = np.zeros((n, J))
    sens = np.zeros((n, J))
    valid = np.zeros((n, J), dtype=bool)
    for i, row in enumerate(opts):
        for j, (b, t, m, s) in enumerate(row):
            bits[i, j], lat[i, j], size[i, j], sens[i, j], valid[i, j] = b, t, m, s, True
    return bits, lat, size, sens, valid


# ---------------------------------------------------------------------- building from a profiled model
def quantized_size(size_bytes: float, param_bytes: float, bits: int) -> float:
    """A node's memory with its float32 weights stored at ``bits`` (everything else unchanged)."""
    wbytes = min(float(param_bytes), float(size_bytes))
    return float(size_bytes) - wbytes + wbytes * bits / FLOAT_BITS


def build_instance(graph, sensitivities: Mapping[str, Mapping[int, float]], target: HardwareTarget, *,
                   k: int | None = None, budget: float | None = None, latency_source: LatencySource | None = None,
                   sensitivity_source: str = "given") -> PlanInstance:
    """The joint instance of a profiled ``graph`` (a ``CostGraph``) on ``target``.

    ``sensitivities`` maps a layer (node id or module name) to ``{bits: sensitivity}``; every node found there gets
    one option per width (its weights stored at that width, its time divided by the device's speed-up for the width).
    Node time on a device is ``latency_source(stage, device, node)`` when given (the hook for fitted device models),
    else the device's ``latency_table`` entry (node id, module or op), else host ms x ``speed_factor``. Transfers cost
    ``link latency + bytes / bandwidth`` on the slowest link. The budget is ``budget`` if given, else the target's.
    """
    from forgeflow.tasks.profiling.graph import CostGraph

    if not isinstance(graph, CostGraph):
        raise InvalidGraphError("build_instance needs a profiled CostGraph")
    tgt = target.with_count(k) if k is not None and k != target.k else target
    devices = tgt.device_list
    link = tgt.slowest_link
    tables = [read_latency_table(d.latency_table) if d.latency_table else None for d in devices]
    widths_of: dict[str, dict[int, float]] = {}
    for nd in graph.nodes:
        hit = sensitivities.get(nd.id, sensitivities.get(nd.module))
        if hit:
            widths_of[nd.id] = {int(b): float(v) for b, v in hit.items() if int(b) < FLOAT_BITS}
    opts: list[list[tuple[int, float, float, float]]] = []
    for nd in graph.nodes:
        row = [(FLOAT_BITS, nd.latency_ms, float(nd.size_bytes), 0.0)]
        for b in sorted(widths_of.get(nd.id, {}), reverse=True):
            row.append((b, nd.latency_ms, quantized_size(nd.size_bytes, nd.param_bytes, b), widths_of[nd.id][b]))
        opts.append(row)
    bits, _, size, sens, valid = _pad(opts)
    time = np.zeros((len(devices),) + bits.shape)
    for s, dev in enumerate(devices):
        if dev.latency_model is not None and latency_source is None:
            raise InvalidGraphError(f"device {s} of target {tgt.name} takes latency from fitted model "
                                    f"{dev.latency_model!r} (architectures of a search space): a fixed model's "
                                    "operators need a speed_factor or latency_table")
        for i, nd in enumerate(graph.nodes):
            ms = latency_source(s, dev, nd) if latency_source is not None else None
            if ms is None and tables[s] is not None:
                tb = tables[s]
                ms = tb.get(nd.id, tb.get(nd.module, tb.get(nd.op)))
            if ms is None:
                ms = nd.latency_ms * dev.speed_factor
            for j in np.flatnonzero(valid[i]):
                time[s, i, j] = float(ms) / dev.speedup(int(bits[i, j]))
    index = {nd.id: i for i, nd in enumerate(graph.nodes)}
    c = np.zeros(len(graph.nodes))
    edges = []
    for e in graph.edges:
        u, v = index[e.src], index[e.dst]
        edges.append((u, v))
        c[u] = max(c[u], link.transfer_ms(e.bytes))
    from forgeflow.tasks.partition.adapters import colocation_classes

    base = PartitionProblem(graph.name, tuple(nd.id for nd in graph.nodes), time[0, :, 0].copy(), size[:, 0].copy(),
                            c, tuple(edges), colocation_classes(graph), len(devices), None,
                            {"graph_id": graph.graph_id}).validate()
    meta = {"target": tgt.name, "graph_id": graph.graph_id, "sensitivity_source": sensitivity_source,
            "names": {nd.id: nd.module for nd in graph.nodes}}
    inst = PlanInstance(graph.name, tuple(nd.id for nd in graph.nodes), base, bits, size, sens, time, valid,
                        tuple(d.memory_bytes for d in devices), None, tuple(d.name for d in devices), meta)
    if budget is None:
        b = tgt.budget
        budget = b.max_sensitivity if b.max_sensitivity is not None else b.fraction_of_uniform4 * \
            inst.uniform4_sensitivity()
    return inst.with_budget(budget).validate()
