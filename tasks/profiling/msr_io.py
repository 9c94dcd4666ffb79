"""Import and export the JSON graph format of msr-fiddle/dnn-partitioning.

The format: ``{"maxSizePerFPGA": float, "maxFPGAs": int, "maxCPUs": int, "nodes": [...], "edges": [...]}`` with
nodes ``{id: int, name, fpgaLatency, cpuLatency, size, colorClass?, supportedOnFpga, isBackwardNode, layerId?}`` and
edges ``{sourceId, destId, cost, size}``, where ``cost`` is the time (ms) to move the source node's output off its
device and ``size`` its bytes.

Mapping to ``CostGraph``: fpgaLatency = ``latency_ms``, cpuLatency = ``cpu_latency_ms``, size = ``size_bytes``,
colorClass = ``color_class`` (a string; None when absent), supportedOnFpga = ``supported_on_accel``,
isBackwardNode = ``is_backward``, name = ``module``; an edge's cost = ``cost_ms`` and its size = ``bytes``; a node's
``output_cost_ms`` is the largest cost of its out-edges (msr charges one transfer per output).

Round trips are exact both ways: a graph exported here carries its forgeflow-only fields (op, FLOPs, parameter and
activation bytes, spread, string node ids, meta) under a ``"forgeflow"`` key that msr's tools ignore, and msr fields
with no ``CostGraph`` counterpart (``maxCPUs``, ``layerId``, fractional edge sizes, ``name`` when it differs from
the module) are kept in ``meta["msr"]`` on import and written back on export.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node

_INT_ID = re.compile(r"^(0|[1-9][0-9]*)$")


# ---------------------------------------------------------------- import
def load_msr_json(path: str | os.PathLike[str], name: str | None = None) -> CostGraph:
    """Read an msr-fiddle JSON file into a validated ``CostGraph`` named ``name`` (default: the file's stem)."""
    from forgeflow.tasks.files import read_json

    p = Path(path)
    data = read_json(p, "graph", InvalidGraphError)
    return graph_from_msr_dict(data, name=name or p.stem, source=str(p))


def graph_from_msr_dict(data: Any, *, name: str = "graph", source: str | None = None) -> CostGraph:
    where = f"msr graph {source or name!r}"
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list) \
            or not isinstance(data.get("edges"), list):
        raise InvalidGraphError(f"{where}: expected a JSON object with 'nodes' and 'edges' lists")
    ff = data.get("forgeflow") if isinstance(data.get("forgeflow"), Mapping) else None
    msr_extra: dict[str, Any] = {}
    if "maxCPUs" in data:
        msr_extra["maxCPUs"] = data["maxCPUs"]
    nodes, id_map, names, layer_ids = _read_nodes(data["nodes"], where)
    edges, fractional, out_cost = _read_edges(data["edges"], id_map, where)
    # output_cost_ms comes from the edges unless the file carried it explicitly (a forgeflow export).
    nodes = [nd if _has_ff_field(data["nodes"][i], "output_cost_ms")
             else _with(nd, output_cost_ms=out_cost.get(nd.id, 0.0)) for i, nd in enumerate(nodes)]
    if names:
        msr_extra["names"] = names
    if layer_ids:
        msr_extra["layer_ids"] = layer_ids
    if fractional:
        msr_extra["edge_sizes"] = fractional
    meta: dict[str, Any] = (dict(ff.get("meta", {})) if ff
                             else {"source": "msr", "source_file": Path(source).name if source else None})
    meta.pop("msr", None)
    if msr_extra:
        meta["msr"] = msr_extra
    max_size = data.get("maxSizePerFPGA")
    max_dev = data.get("maxFPGAs")
    try:
        return CostGraph(
            name=str(ff.get("name", name)) if ff else name,
            nodes=tuple(nodes),
            edges=tuple(edges),
            max_size_per_device=None if max_size is None else float(max_size),
            max_devices=None if max_dev is None else int(max_dev),
            meta=meta,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidGraphError(f"{where}: {exc}") from None


def _read_nodes(raw: list, where: str) -> tuple[list[Node], dict[Any, str], dict[str, str], dict[str, Any]]:
    """The nodes, the map from the file's ids to ours, msr names that differ from ours, and msr layer ids."""
    names: dict[str, str] = {}
    layer_ids: dict[str, Any] = {}
    id_map: dict[Any, str] = {}
    nodes: list[Node] = []
    for i, nd in enumerate(raw):
        if not isinstance(nd, Mapping):
            raise InvalidGraphError(f"{where}: node #{i} is not an object")
        try:
            raw_id = nd["id"]
            fx = nd.get("forgeflow") if isinstance(nd.get("forgeflow"), Mapping) else {}
            nid = str(fx.get("id", raw_id))
            if raw_id in id_map:
                raise InvalidGraphError(f"{where}: duplicate node id {raw_id!r}")
            id_map[raw_id] = nid
            msr_name = nd.get("name")
            module = str(fx.get("module", msr_name if msr_name is not None else ""))
            if msr_name is not None and msr_name != module and msr_name != nid:
                names[nid] = msr_name
            if "layerId" in nd:
                layer_ids[nid] = nd["layerId"]
            cc = nd.get("colorClass")
            nodes.append(Node(
                id=nid,
                op=str(fx.get("op", "")),
                module=module,
                flops=_as_int(fx.get("flops", 0), "flops", where, nid),
                param_bytes=_as_int(fx.get("param_bytes", 0), "param_bytes", where, nid),
                output_bytes=_as_int(fx.get("output_bytes", 0), "output_bytes", where, nid),
                latency_ms=_as_float(nd["fpgaLatency"], "fpgaLatency", where, nid),
                latency_spread_ms=_as_float(fx.get("latency_spread_ms", 0.0), "latency_spread_ms", where, nid),
                size_bytes=_as_float(nd.get("size", 0.0), "size", where, nid),
                color_class=None if cc is None else str(cc),
                output_cost_ms=_as_float(fx.get("output_cost_ms", 0.0), "output_cost_ms", where, nid)
                if "output_cost_ms" in fx else 0.0,
                cpu_latency_ms=_as_float(nd.get("cpuLatency", 0.0), "cpuLatency", where, nid),
                supported_on_accel=bool(nd.get("supportedOnFpga", True)),
                is_backward=bool(nd.get("isBackwardNode", False)),
            ))
        except KeyError as exc:
            raise InvalidGraphError(f"{where}: node #{i} is missing field {exc}") from None
        except TypeError as exc:
            raise InvalidGraphError(f"{where}: node #{i} is malformed: {exc}") from None
    return nodes, id_map, names, layer_ids


def _read_edges(raw: list, id_map: dict[Any, str], where: str
                ) -> tuple[list[Edge], dict[str, float], dict[str, float]]:
    """The edges, msr's sub-byte edge sizes (kept to write them back), and each source's largest edge cost."""
    edges: list[Edge] = []
    fractional: dict[str, float] = {}
    out_cost: dict[str, float] = {}
    for j, ed in enumerate(raw):
        if not isinstance(ed, Mapping):
            raise InvalidGraphError(f"{where}: edge #{j} is not an object")
        try:
            s, d = ed["sourceId"], ed["destId"]
            cost = _as_float(ed["cost"], "cost", where, f"edge #{j}")
            size = _as_float(ed.get("size", 0.0), "size", where, f"edge #{j}")
        except KeyError as exc:
            raise InvalidGraphError(f"{where}: edge #{j} is missing field {exc}") from None
        except TypeError as exc:
            raise InvalidGraphError(f"{where}: edge #{j} is malformed: {exc}") from None
        if s not in id_map or d not in id_map:
            missing = s if s not in id_map else d
            raise InvalidGraphError(f"{where}: edge {s!r} -> {d!r} refers to node {missing!r}, which does not exist")
        src, dst = id_map[s], id_map[d]
        nbytes = math.ceil(size)  # msr writes sub-byte sizes for bool tensors (0.125 = one bit)
        if nbytes != size:
            fractional[f"{src}>{dst}"] = size
        edges.append(Edge(src, dst, nbytes, cost))
        out_cost[src] = max(out_cost.get(src, 0.0), cost)
    return edges, fractional, out_cost


def _has_ff_field(nd: Mapping[str, Any], key: str) -> bool:
    fx = nd.get("forgeflow")
    return isinstance(fx, Mapping) and key in fx


def _with(nd: Node, **kw: Any) -> Node:
    from dataclasses import replace

    return replace(nd, **kw)


def _as_float(v: Any, what: str, where: str, nid: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidGraphError(f"{where}: {nid} has non-numeric {what}={v!r}")
    return float(v)


def _as_int(v: Any, what: str, where: str, nid: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
        raise InvalidGraphError(f"{where}: {nid} has non-integer {what}={v!r}")
    return int(v)


# ---------------------------------------------------------------- export
def graph_to_msr_dict(graph: CostGraph) -> dict[str, Any]:
    """The msr-fiddle form of ``graph``. Node ids that are all canonical non-negative integers are kept; otherwise
    nodes are numbered by position (msr's tools need integer ids) and the string id travels in ``forgeflow.id``."""
    msr = graph.meta.get("msr", {}) if isinstance(graph.meta.get("msr"), Mapping) else {}
    int_ids = all(_INT_ID.match(nd.id) for nd in graph.nodes)
    num = {nd.id: (int(nd.id) if int_ids else i) for i, nd in enumerate(graph.nodes)}
    names = msr.get("names", {})
    layer_ids = msr.get("layer_ids", {})
    edge_sizes = msr.get("edge_sizes", {})
    nodes = []
    for nd in graph.nodes:
        rec: dict[str, Any] = {
            "name": names.get(nd.id, nd.module or nd.id),
            "id": num[nd.id],
            "supportedOnFpga": bool(nd.supported_on_accel),
            "cpuLatency": nd.cpu_latency_ms,
            "fpgaLatency": nd.latency_ms,
            "isBackwardNode": bool(nd.is_backward),
        }
        if nd.color_class is not None:
            rec["colorClass"] = int(nd.color_class) if _INT_ID.match(nd.color_class) else nd.color_class
        if nd.id in layer_ids:
            rec["layerId"] = layer_ids[nd.id]
        rec["size"] = nd.size_bytes
        fx: dict[str, Any] = {"module": nd.module, "output_cost_ms": nd.output_cost_ms}
        if not int_ids:
            fx["id"] = nd.id
        for key in ("op", "flops", "param_bytes", "output_bytes", "latency_spread_ms"):
            val = getattr(nd, key)
            if val:
                fx[key] = val
        rec["forgeflow"] = fx
        nodes.append(rec)
    edges = [{"sourceId": num[e.src], "destId": num[e.dst], "cost": e.cost_ms,
              "size": float(edge_sizes.get(f"{e.src}>{e.dst}", e.bytes))} for e in graph.edges]
    out: dict[str, Any] = {}
    if graph.max_size_per_device is not None:
        out["maxSizePerFPGA"] = graph.max_size_per_device
    if graph.max_devices is not None:
        out["maxFPGAs"] = graph.max_devices
    if "maxCPUs" in msr:
        out["maxCPUs"] = msr["maxCPUs"]
    out["nodes"] = nodes
    out["edges"] = edges
    out["forgeflow"] = {"name": graph.name, "meta": {k: v for k, v in graph.meta.items() if k != "msr"},
                        "graph_id": graph.graph_id}
    return out


def dump_msr_json(graph: CostGraph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` as msr-fiddle JSON (atomically: a temporary file renamed into place). Returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(graph_to_msr_dict(graph), indent=1, allow_nan=False))
    os.replace(tmp, p)
    return p
