"""Write a ``CostGraph`` to the catalog (tables ``graphs``, ``graph_nodes``, ``graph_edges``) and read it back.

The rows are built from the graph alone (``graph_rows``), so a graph read back is equal to the one written, with the
same ``graph_id``. The graph is validated when it is built, so nothing invalid reaches the catalog.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from forgeflow.catalog import Catalog
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node


class GraphNotFoundError(ForgeflowError):
    """No graph with the requested id in the catalog."""


def graph_rows(graph: CostGraph) -> dict[str, list[dict[str, Any]]]:
    """The rows of the three tables for ``graph`` (without ``run_id``, which the catalog adds)."""
    gid = graph.graph_id
    m = graph.meta
    timing = m.get("timing") if isinstance(m.get("timing"), dict) else {}
    ctx = timing.get("context") if isinstance(timing.get("context"), dict) else {}
    link = m.get("link") if isinstance(m.get("link"), dict) else {}
    shape = m.get("input_shape")
    head = {
        "graph_id": gid,
        "structure_id": graph.structure_id,
        "name": graph.name,
        "source": m.get("source"),
        "model": m.get("model"),
        "input_shape": [int(d) for d in shape] if isinstance(shape, list) else None,
        "dtype": m.get("dtype"),
        "granularity": m.get("granularity"),
        "capture": m.get("capture"),
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "flops": graph.total_flops,
        "params": m.get("params"),
        "param_bytes": graph.total_param_bytes,
        "latency_sum_ms": graph.total_latency_ms,
        "whole_model_ms": timing.get("whole_model_ms"),
        "node_sum_ratio": timing.get("node_sum_ratio"),
        "repeats": timing.get("repeats"),
        "warmup": timing.get("warmup"),
        "link": link.get("name"),
        "link_bandwidth": link.get("bandwidth_bytes_per_s"),
        "link_latency": link.get("latency_s"),
        "cpu_model": ctx.get("cpu_model"),
        "torch_threads": ctx.get("torch_threads"),
        "torch_version": ctx.get("torch_version"),
        "max_size_per_device": graph.max_size_per_device,
        "max_devices": graph.max_devices,
        "meta": json.dumps(graph.meta, sort_keys=True),
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    nodes = []
    for i, nd in enumerate(graph.nodes):
        row = asdict(nd)
        row["node_id"] = row.pop("id")
        nodes.append({"graph_id": gid, "position": i, **row})
    edges = [{"graph_id": gid, "position": i, **asdict(e)} for i, e in enumerate(graph.edges)]
    return {"graphs": [head], "graph_nodes": nodes, "graph_edges": edges}


def write_graph(cat: Catalog, graph: CostGraph, run_id: str) -> dict[str, Any]:
    """Append ``graph`` under ``run_id``; returns ``{"graph_id", "files": {table: key}}``. Nodes and edges are
    written before the ``graphs`` row, so a reader that finds the row finds the whole graph."""
    rows = graph_rows(graph)
    files = {}
    # keyed by the graph's structure (not its measured times): a step retried after a worker died mid-write
    # replaces these files rather than adding a second copy of the graph
    item = getattr(graph, "structure_id", None) or graph.graph_id
    for table in ("graph_nodes", "graph_edges", "graphs"):
        files[table] = cat.append(table, rows[table], run_id=run_id, idempotency_key=f"graph:{item}:{table}",
                                  description=f"{table} of graph {graph.graph_id} ({graph.name})")
    return {"graph_id": graph.graph_id, "files": files}


def read_graph(cat: Catalog, graph_id: str) -> CostGraph:
    """The graph with ``graph_id`` (the latest copy if it was written more than once)."""
    head = cat.read("graphs", filter=pc.field("graph_id") == graph_id)
    if head.num_rows == 0:
        raise GraphNotFoundError(f"no graph {graph_id!r} in catalog {cat.url}")
    h = head.sort_by([("created_at", "descending")]).slice(0, 1).to_pylist()[0]
    run = h["run_id"]
    flt = (pc.field("graph_id") == graph_id) & (pc.field("run_id") == run)
    nrows = sorted(cat.read("graph_nodes", filter=flt).to_pylist(), key=lambda r: r["position"])
    erows = sorted(cat.read("graph_edges", filter=flt).to_pylist(), key=lambda r: r["position"])
    nodes = tuple(Node(id=r["node_id"], op=r["op"], module=r["module"], flops=int(r["flops"]),
                       param_bytes=int(r["param_bytes"]), output_bytes=int(r["output_bytes"]),
                       latency_ms=float(r["latency_ms"]), latency_spread_ms=float(r["latency_spread_ms"]),
                       size_bytes=float(r["size_bytes"]), color_class=r["color_class"],
                       output_cost_ms=float(r["output_cost_ms"]), cpu_latency_ms=float(r["cpu_latency_ms"]),
                       supported_on_accel=bool(r["supported_on_accel"]), is_backward=bool(r["is_backward"]))
                  for r in nrows)
    edges = tuple(Edge(r["src"], r["dst"], int(r["bytes"]), float(r["cost_ms"])) for r in erows)
    g = CostGraph(h["name"], nodes, edges, h["max_size_per_device"], h["max_devices"], json.loads(h["meta"]))
    if g.graph_id != graph_id:
        raise ForgeflowError(f"graph {graph_id!r} in catalog {cat.url} is incomplete or corrupted "
                             f"(rows hash to {g.graph_id})")
    return g


def list_graphs(cat: Catalog) -> pa.Table:
    cols = ["graph_id", "name", "source", "model", "granularity", "nodes", "edges", "flops", "params", "created_at",
            "run_id"]
    return cat.read("graphs", columns=cols).sort_by([("created_at", "descending")])
