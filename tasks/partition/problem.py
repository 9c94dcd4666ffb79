"""The max-throughput pipeline-partitioning problem as plain arrays.

A DAG with node compute time ``w`` (ms), node size ``m`` (memory units, e.g. bytes), a transfer cost ``c`` (ms)
for each node's output, and co-location classes. Nodes are assigned to at most ``k`` ordered stages so that every
edge runs from a stage to the same or a later one, nodes of one class share a stage, and each stage's summed size
fits ``mem_cap``. A stage costs  sum(w over its nodes) + c_u for each node u in it whose output leaves it (once)
+ c_u for each node u outside it with an edge into it (once per receiving stage). The objective is the largest
stage cost (the bottleneck). This is the throughput cost model of msr-fiddle/dnn-partitioning with no CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from forgeflow.tasks.errors import InvalidGraphError


@dataclass(frozen=True)
class PartitionProblem:
    """An instance. Index ``i`` refers to node ``node_ids[i]`` (the id as written in the input)."""

    name: str
    node_ids: tuple[str, ...]
    w: np.ndarray  # (n,) compute time in ms
    m: np.ndarray  # (n,) size (memory units of mem_cap)
    c: np.ndarray  # (n,) transfer time in ms of node i's output when it leaves its stage
    edges: tuple[tuple[int, int], ...]  # (u, v): u's output is consumed by v
    classes: tuple[tuple[int, ...], ...]  # co-location classes partitioning range(n) (singletons included)
    k: int
    mem_cap: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.node_ids)

    def with_k(self, k: int) -> "PartitionProblem":
        return PartitionProblem(self.name, self.node_ids, self.w, self.m, self.c, self.edges, self.classes, int(k),
                                self.mem_cap, self.meta)

    def with_mem_cap(self, mem_cap: float | None) -> "PartitionProblem":
        return PartitionProblem(self.name, self.node_ids, self.w, self.m, self.c, self.edges, self.classes, self.k,
                                mem_cap, self.meta)

    def successors(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for u, v in self.edges:
            out[u].append(v)
        return out

    def predecessors(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for u, v in self.edges:
            out[v].append(u)
        return out

    def topological_order(self) -> list[int]:
        """Kahn's order (smallest index first among ready nodes); raises on a cycle."""
        from forgeflow.tasks.profiling.graph import kahn_order

        order, _ = kahn_order(self.successors())
        if len(order) != self.n:
            raise InvalidGraphError(f"graph {self.name!r} has a cycle ({self.n - len(order)} nodes on or after it)")
        return order

    def validate(self) -> "PartitionProblem":
        """Check the instance; raise InvalidGraphError naming the first problem found."""
        n = self.n
        if n == 0:
            raise InvalidGraphError(f"graph {self.name!r} has no nodes: nothing to partition")
        if self.k < 1:
            raise InvalidGraphError(f"number of stages k must be >= 1, got {self.k}")
        for name, arr in (("w (compute time)", self.w), ("m (size)", self.m), ("c (transfer cost)", self.c)):
            if arr.shape != (n,):
                raise InvalidGraphError(f"{name} has shape {arr.shape}, expected ({n},)")
            bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
            if bad.size:
                i = int(bad[0])
                raise InvalidGraphError(f"node {self.node_ids[i]!r} has a negative or non-finite {name}: {arr[i]}")
        if len(set(self.node_ids)) != n:
            raise InvalidGraphError("duplicate node ids")
        for u, v in self.edges:
            if not (0 <= u < n and 0 <= v < n):
                raise InvalidGraphError(f"edge ({u}, {v}) refers to a node that does not exist")
            if u == v:
                raise InvalidGraphError(f"self-loop on node {self.node_ids[u]!r}")
        seen = sorted(i for cls in self.classes for i in cls)
        if seen != list(range(n)):
            raise InvalidGraphError("co-location classes must partition the node set")
        self.topological_order()
        if self.mem_cap is not None:
            if not math.isfinite(self.mem_cap) or self.mem_cap <= 0:
                raise InvalidGraphError(f"memory cap must be a positive number, got {self.mem_cap}")
            big = max((float(self.m[list(cls)].sum()), cls) for cls in self.classes)
            if big[0] > self.mem_cap:
                ids = [self.node_ids[i] for i in big[1][:5]]
                raise InvalidGraphError(
                    f"memory cap {self.mem_cap:g} is below the size {big[0]:g} of the co-location class of nodes {ids}"
                )
        return self

    # ---------------------------------------------------------------- I/O
    @classmethod
    def from_arrays(cls, w, m, c, edges, k, *, classes=None, mem_cap=None, node_ids=None, name="graph"):
        n = len(w)
        ids = tuple(str(i) for i in (node_ids if node_ids is not None else range(n)))
        cl = tuple(tuple(int(i) for i in g) for g in classes) if classes is not None else tuple((i,) for i in range(n))
        return cls(name, ids, np.asarray(w, dtype=float), np.asarray(m, dtype=float), np.asarray(c, dtype=float),
                   tuple((int(u), int(v)) for u, v in edges), cl, int(k), mem_cap).validate()

    @classmethod
    def from_msr_dict(cls, data: Mapping[str, Any], *, k: int | None = None, mem_cap: float | None = None,
                      name: str = "graph") -> "PartitionProblem":
        """Build from msr-fiddle/dnn-partitioning JSON (fpgaLatency=w, size=m, edge cost=c of its source).

        A node without ``colorClass`` is in a class of its own. ``k`` defaults to ``maxFPGAs`` and ``mem_cap`` to
        ``maxSizePerFPGA``.
        """
        try:
            nodes = data["nodes"]
            edges = data["edges"]
            ids = [n["id"] for n in nodes]
            index = {nid: i for i, nid in enumerate(ids)}
            w = [float(n["fpgaLatency"]) for n in nodes]
            m = [float(n.get("size", 0.0)) for n in nodes]
        except (KeyError, TypeError) as exc:
            raise InvalidGraphError(f"malformed msr graph {name!r}: missing field {exc}") from None
        if len(index) != len(ids):
            raise InvalidGraphError(f"malformed msr graph {name!r}: duplicate node ids")
        c = [0.0] * len(ids)
        e: list[tuple[int, int]] = []
        for ed in edges:
            try:
                s, d = ed["sourceId"], ed["destId"]
                cost = float(ed["cost"])
            except (KeyError, TypeError) as exc:
                raise InvalidGraphError(f"malformed msr graph {name!r}: edge missing field {exc}") from None
            if s not in index or d not in index:
                raise InvalidGraphError(f"msr graph {name!r}: edge {s} -> {d} refers to a node that does not exist")
            e.append((index[s], index[d]))
            c[index[s]] = max(c[index[s]], cost)
        groups: dict[Any, list[int]] = {}
        classes: list[tuple[int, ...]] = []
        for i, nd in enumerate(nodes):
            if nd.get("colorClass") is None:
                classes.append((i,))
            else:
                groups.setdefault(nd["colorClass"], []).append(i)
        classes.extend(tuple(g) for g in groups.values())
        kk = int(k if k is not None else data.get("maxFPGAs", 1))
        cap = mem_cap if mem_cap is not None else data.get("maxSizePerFPGA")
        return cls(name, tuple(str(i) for i in ids), np.asarray(w), np.asarray(m), np.asarray(c), tuple(e),
                   tuple(classes), kk, float(cap) if cap is not None else None,
                   {"maxFPGAs": data.get("maxFPGAs")}).validate()

    @classmethod
    def from_msr_json(cls, path: str | Path, **kw) -> "PartitionProblem":
        from forgeflow.tasks.files import read_json

        p = Path(path)
        data = read_json(p, "graph", InvalidGraphError)
        return cls.from_msr_dict(data, name=kw.pop("name", p.stem), **kw)
