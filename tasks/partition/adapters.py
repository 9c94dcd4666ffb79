"""Turn a profiled or imported ``CostGraph`` into a ``PartitionProblem``.

Mapping (as for msr-fiddle graphs): w = ``latency_ms``, m = ``size_bytes``, c_u = the transfer time of u's output
(``output_cost_ms``, or the largest ``cost_ms`` of its out-edges when that is larger), co-location classes from
``color_class`` (a node without one is a class of its own), memory cap = ``max_size_per_device`` unless given, and k
defaults to ``max_devices``.
"""

from __future__ import annotations

import numpy as np

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.profiling.graph import CostGraph


def problem_from_graph(graph: CostGraph, k: int | None = None, mem_cap: float | None = None) -> PartitionProblem:
    """The partitioning instance of ``graph`` for at most ``k`` stages (validated; raises InvalidGraphError)."""
    kk = k if k is not None else graph.max_devices
    if kk is None:
        raise InvalidGraphError(f"graph {graph.name!r} names no device count: give the number of stages")
    index = {nd.id: i for i, nd in enumerate(graph.nodes)}
    w = np.array([nd.latency_ms for nd in graph.nodes], dtype=float)
    m = np.array([nd.size_bytes for nd in graph.nodes], dtype=float)
    c = np.array([nd.output_cost_ms for nd in graph.nodes], dtype=float)
    edges = []
    for e in graph.edges:
        u, v = index[e.src], index[e.dst]
        edges.append((u, v))
        c[u] = max(c[u], float(e.cost_ms))
    classes = colocation_classes(graph)
    cap = mem_cap if mem_cap is not None else graph.max_size_per_device
    return PartitionProblem(graph.name, tuple(nd.id for nd in graph.nodes), w, m, c, tuple(edges), tuple(classes),
                            int(kk), float(cap) if cap is not None else None,
                            {"maxFPGAs": graph.max_devices, "graph_id": graph.graph_id}).validate()


def colocation_classes(graph: CostGraph) -> tuple[tuple[int, ...], ...]:
    """Node indices that must share a stage: one class per ``color_class`` name, a class of its own for every node
    without one (the form ``PartitionProblem.classes`` takes)."""
    classes: list[tuple[int, ...]] = []
    named: dict[str, list[int]] = {}
    for i, nd in enumerate(graph.nodes):
        if nd.color_class is None:
            classes.append((i,))
        else:
            named.setdefault(nd.color_class, []).append(i)
    return tuple(classes) + tuple(tuple(g) for g in named.values())
