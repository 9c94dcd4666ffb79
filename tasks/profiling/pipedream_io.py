"""Import PipeDream profiler graphs (``graph.txt``) as a ``CostGraph``.

The format (PipeDream's ``graph.Graph.__str__``): one line per node

    node4 -- Conv2d(3, 64, kernel_size=(7, 7), ...) -- forward_compute_time=1.234, backward_compute_time=2.5, \
activation_size=3211264.0, parameter_size=37632.000

optionally followed by `` -- stage_id=N``, where ``activation_size`` may be a list ``[a; b]`` for a node with
several outputs (their sum is used, as PipeDream does); then one line per edge, indented with a tab:
``\\tnode4 -- node5``. Times are milliseconds, sizes bytes.

Mapping: ``latency_ms`` = forward time (or forward + backward with ``training=True``, PipeDream's own optimizer
objective), ``param_bytes`` = ``size_bytes`` = parameter size, ``output_bytes`` = activation size, ``op`` = the
module class in the description, and every edge's cost is the link's transfer time for the source's activations
(twice that when training: the activations go forward and their gradients come back).
Descriptions and stage ids are kept in ``meta["pipedream"]``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node
from forgeflow.tasks.profiling.links import LinkProfile, get_link

_META_KEYS = ("forward_compute_time", "backward_compute_time", "activation_size", "parameter_size")
_OP = re.compile(r"^\s*([A-Za-z_][\w.]*)")


def load_pipedream_graph(path: str | os.PathLike[str], *, link: str | LinkProfile | None = None,
                         training: bool = False, name: str | None = None) -> CostGraph:
    """Read a PipeDream ``graph.txt``; ``link`` prices the transfers (default ``links.DEFAULT_LINK``)."""
    from forgeflow.tasks.files import read_text

    p = Path(path)
    text = read_text(p, "graph", InvalidGraphError)
    return parse_pipedream_graph(text, link=link, training=training,
                                 name=name or (p.parent.name if p.stem == "graph" and p.parent.name else p.stem),
                                 source=p.name)


def parse_pipedream_graph(text: str, *, link: str | LinkProfile | None = None, training: bool = False,
                          name: str = "graph", source: str | None = None) -> CostGraph:
    lk = get_link(link)
    where = f"PipeDream graph {source or name!r}"
    records: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    edge_pairs: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if raw.startswith("\t"):
            parts = raw.strip().split(" -- ")
            if len(parts) != 2 or not all(parts):
                raise InvalidGraphError(f"{where}, line {lineno}: edge line must be '<tab>nodeA -- nodeB', "
                                        f"got {raw.strip()!r}")
            edge_pairs.append((parts[0].strip(), parts[1].strip()))
            continue
        nid, rec = _parse_node_line(raw.strip(), where, lineno)
        if nid in records:
            raise InvalidGraphError(f"{where}, line {lineno}: duplicate node id {nid!r}")
        records[nid] = rec
        order.append(nid)
    if not records:
        raise InvalidGraphError(f"{where}: no node lines found")

    factor = 2.0 if training else 1.0
    nodes = []
    for nid in order:
        r = records[nid]
        act = r["activation_size"]
        nodes.append(Node(
            id=nid, op=r["op"], module="",
            flops=0,
            param_bytes=int(round(r["parameter_size"])),
            output_bytes=int(math.ceil(act)),
            latency_ms=r["forward_compute_time"] + (r["backward_compute_time"] if training else 0.0),
            size_bytes=r["parameter_size"],
            output_cost_ms=factor * lk.transfer_ms(act),
            cpu_latency_ms=0.0,
        ))
    edges = []
    seen: set[tuple[str, str]] = set()
    for s, d in edge_pairs:
        for x in (s, d):
            if x not in records:
                raise InvalidGraphError(f"{where}: edge {s} -> {d} refers to node {x!r}, which has no node line")
        if (s, d) in seen:  # PipeDream writes an edge once per in-edge; a repeated line is the same edge
            continue
        seen.add((s, d))
        act = records[s]["activation_size"]
        edges.append(Edge(s, d, int(math.ceil(act)), factor * lk.transfer_ms(act)))
    meta = {
        "source": "pipedream", "source_file": source, "training": training,
        "link": {"name": lk.name, "bandwidth_bytes_per_s": lk.bandwidth_bytes_per_s, "latency_s": lk.latency_s},
        "pipedream": {
            "descriptions": {nid: records[nid]["desc"] for nid in order},
            "backward_ms": {nid: records[nid]["backward_compute_time"] for nid in order},
            "stage_ids": {nid: records[nid]["stage_id"] for nid in order if records[nid]["stage_id"] is not None},
        },
    }
    return CostGraph(name, tuple(nodes), tuple(edges), meta=meta)


def _parse_node_line(line: str, where: str, lineno: int) -> tuple[str, dict[str, Any]]:
    tokens = line.split(" -- ")
    # The description is a module repr and could itself contain " -- "; the metadata token is found by its key.
    meta_at = next((i for i, t in enumerate(tokens) if t.startswith("forward_compute_time=")), None)
    if len(tokens) < 3 or meta_at is None or meta_at < 2:
        raise InvalidGraphError(f"{where}, line {lineno}: expected 'nodeN -- DESCRIPTION -- forward_compute_time=F, "
                                f"backward_compute_time=B, activation_size=A, parameter_size=P', got {line[:120]!r}")
    nid = tokens[0].strip()
    desc = " -- ".join(tokens[1:meta_at])
    values: dict[str, float] = {}
    for item in tokens[meta_at].split(", "):
        key, sep, val = item.partition("=")
        if not sep:
            raise InvalidGraphError(f"{where}, line {lineno}: malformed field {item!r} in node {nid!r}")
        key = key.strip()
        try:
            if val.strip().startswith("["):
                parts = [x for x in val.strip().lstrip("[").rstrip("]").split(";") if x.strip()]
                values[key] = math.fsum(float(x) for x in parts)
            else:
                values[key] = float(val)
        except ValueError:
            raise InvalidGraphError(f"{where}, line {lineno}: {key} of node {nid!r} is not a number: {val!r}") \
                from None
    missing = [k for k in _META_KEYS if k not in values]
    if missing:
        raise InvalidGraphError(f"{where}, line {lineno}: node {nid!r} is missing {', '.join(missing)}")
    for k in _META_KEYS:
        if not math.isfinite(values[k]) or values[k] < 0:
            raise InvalidGraphError(f"{where}, line {lineno}: node {nid!r} has {k}={values[k]!r}; "
                                    "expected a finite number >= 0")
    stage_id = None
    for extra in tokens[meta_at + 1:]:
        key, sep, val = extra.partition("=")
        if key.strip() == "stage_id" and sep:
            try:
                stage_id = int(val)
            except ValueError:
                raise InvalidGraphError(f"{where}, line {lineno}: stage_id of node {nid!r} is not an integer") \
                    from None
    m = _OP.match(desc)
    return nid, {**{k: values[k] for k in _META_KEYS}, "desc": desc, "op": m.group(1) if m else desc.strip(),
                 "stage_id": stage_id}


def format_pipedream_graph(graph: CostGraph) -> str:
    """``graph`` in PipeDream's ``graph.txt`` form (forward time = ``latency_ms``; descriptions, backward times and
    stage ids from ``meta["pipedream"]`` when the graph came from PipeDream, else the op name and 0)."""
    pd = graph.meta.get("pipedream", {}) if isinstance(graph.meta.get("pipedream"), dict) else {}
    descs, bwd, stages = pd.get("descriptions", {}), pd.get("backward_ms", {}), pd.get("stage_ids", {})
    training = bool(graph.meta.get("training")) and graph.meta.get("source") == "pipedream"
    lines = []
    for nd in graph.nodes:
        b = float(bwd.get(nd.id, 0.0))
        fwd = nd.latency_ms - b if training else nd.latency_ms
        line = (f"{nd.id} -- {descs.get(nd.id, nd.op or nd.id)} -- forward_compute_time={fwd!r}, "
                f"backward_compute_time={b!r}, activation_size={float(nd.output_bytes)!r}, "
                f"parameter_size={float(nd.param_bytes)!r}")
        if nd.id in stages:
            line += f" -- stage_id={stages[nd.id]}"
        lines.append(line)
    lines.extend(f"\t{e.src} -- {e.dst}" for e in graph.edges)
    return "\n".join(lines) + "\n"
