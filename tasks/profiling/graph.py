"""The cost graph: one node per operator (or layer) with its FLOPs, bytes and measured time, one edge per tensor.

Every optimizer downstream (pipeline partitioning, quantization budgets, supernet latency) reads this object; the
profiler (``tasks.profiling.profile``) and the importers (``msr_io``, ``pipedream_io``) all produce it, so an imported
graph and a profiled one are the same thing.

Units: FLOPs count a multiply-add as 2; bytes are bytes; times are milliseconds.
A ``CostGraph`` is validated when it is built (``InvalidGraphError`` names the first problem), so any instance in
hand is a DAG with unique node ids, edges between existing nodes and finite non-negative costs.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from forgeflow.tasks.errors import InvalidGraphError

#: Bump when the canonical form hashed by ``graph_id`` changes meaning.
GRAPH_FORMAT_VERSION = 1



def kahn_order(successors: list[list[int]]) -> tuple[list[int], list[int]]:
    """Kahn's topological order of nodes ``0..n-1`` given each node's successors, the smallest ready index first (a
    graph already in topological order comes back unchanged). Returns the order and each node's remaining
    in-degree: an order shorter than n means a cycle, through the nodes left with a positive in-degree."""
    indeg = [0] * len(successors)
    for succ in successors:
        for v in succ:
            indeg[v] += 1
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        u = heapq.heappop(ready)
        order.append(u)
        for v in successors[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(ready, v)
    return order, indeg

@dataclass(frozen=True)
class Node:
    """One operator (or a group of them in a layer view).

    ``latency_ms`` is the measured (median) or imported compute time on the accelerator the graph was profiled for,
    ``latency_spread_ms`` the repeat-to-repeat spread of that measurement (interquartile range), ``size_bytes`` the
    memory the node pins on the device that runs it (parameters for a profiled graph; msr's ``size``),
    ``output_cost_ms`` the time to ship its output to another device, ``cpu_latency_ms`` its time on the host CPU
    (msr's ``cpuLatency``), ``color_class`` a co-location class (nodes of one class share a device).
    """

    id: str
    op: str
    module: str
    flops: int
    param_bytes: int
    output_bytes: int
    latency_ms: float
    latency_spread_ms: float = 0.0
    size_bytes: float = 0.0
    color_class: str | None = None
    output_cost_ms: float = 0.0
    cpu_latency_ms: float = 0.0
    supported_on_accel: bool = True
    is_backward: bool = False


@dataclass(frozen=True)
class Edge:
    """The output of ``src`` consumed by ``dst``: ``bytes`` of tensor data, ``cost_ms`` to move it between devices."""

    src: str
    dst: str
    bytes: int
    cost_ms: float


_NODE_INT_FIELDS = ("flops", "param_bytes", "output_bytes")
_NODE_FLOAT_FIELDS = ("latency_ms", "latency_spread_ms", "size_bytes", "output_cost_ms", "cpu_latency_ms")


def _canonical_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Meta as plain JSON values (tuples become lists), so a graph survives a JSON round trip unchanged."""
    try:
        return json.loads(json.dumps(dict(meta), sort_keys=True, default=_json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise InvalidGraphError(f"graph meta is not JSON-serialisable: {exc}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


@dataclass(frozen=True, eq=True)
class CostGraph:
    """A validated DAG of ``Node`` and ``Edge``, with optional device limits (msr's maxSizePerFPGA / maxFPGAs).

    Node order is meaningful: for a profiled graph it is program order (a topological order). ``meta`` holds the
    provenance (capture method, input shape, dtype, measurement context, totals) as plain JSON values.
    """

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    max_size_per_device: float | None = None
    max_devices: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        object.__setattr__(self, "meta", _canonical_meta(self.meta))
        self._validate()

    # ------------------------------------------------------------ validation
    def _validate(self) -> None:
        where = f"graph {self.name!r}"
        ids: set[str] = set()
        for nd in self.nodes:
            if not isinstance(nd, Node):
                raise InvalidGraphError(f"{where}: expected Node, got {type(nd).__name__}")
            if not isinstance(nd.id, str) or not nd.id:
                raise InvalidGraphError(f"{where}: node id must be a non-empty string, got {nd.id!r}")
            if nd.id in ids:
                raise InvalidGraphError(f"{where}: duplicate node id {nd.id!r}")
            ids.add(nd.id)
            if nd.color_class is not None and not isinstance(nd.color_class, str):
                raise InvalidGraphError(f"{where}: node {nd.id!r} has color_class={nd.color_class!r}; "
                                        "expected a string or None")
            for f in _NODE_INT_FIELDS:
                v = getattr(nd, f)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise InvalidGraphError(f"{where}: node {nd.id!r} has {f}={v!r}; expected an integer >= 0")
            for f in _NODE_FLOAT_FIELDS:
                v = getattr(nd, f)
                if not _finite_nonneg(v):
                    raise InvalidGraphError(f"{where}: node {nd.id!r} has {f}={v!r}; expected a finite number >= 0")
        seen_pairs: set[tuple[str, str]] = set()
        for e in self.edges:
            if not isinstance(e, Edge):
                raise InvalidGraphError(f"{where}: expected Edge, got {type(e).__name__}")
            if e.src not in ids or e.dst not in ids:
                missing = e.src if e.src not in ids else e.dst
                raise InvalidGraphError(f"{where}: edge {e.src!r} -> {e.dst!r} refers to node {missing!r}, "
                                        "which does not exist (dangling edge)")
            if e.src == e.dst:
                raise InvalidGraphError(f"{where}: self-loop on node {e.src!r}")
            if (e.src, e.dst) in seen_pairs:
                raise InvalidGraphError(f"{where}: duplicate edge {e.src!r} -> {e.dst!r}")
            seen_pairs.add((e.src, e.dst))
            if isinstance(e.bytes, bool) or not isinstance(e.bytes, int) or e.bytes < 0:
                raise InvalidGraphError(f"{where}: edge {e.src!r} -> {e.dst!r} has bytes={e.bytes!r}; "
                                        "expected an integer >= 0")
            if not _finite_nonneg(e.cost_ms):
                raise InvalidGraphError(f"{where}: edge {e.src!r} -> {e.dst!r} has cost_ms={e.cost_ms!r}; "
                                        "expected a finite number >= 0")
        if self.max_size_per_device is not None and not (_finite_nonneg(self.max_size_per_device)
                                                         and self.max_size_per_device > 0):
            raise InvalidGraphError(f"{where}: max_size_per_device must be a positive number, "
                                    f"got {self.max_size_per_device!r}")
        if self.max_devices is not None and (isinstance(self.max_devices, bool)
                                             or not isinstance(self.max_devices, int) or self.max_devices < 1):
            raise InvalidGraphError(f"{where}: max_devices must be an integer >= 1, got {self.max_devices!r}")
        self.topological_order()  # raises on a cycle

    # ------------------------------------------------------------ structure
    def __hash__(self) -> int:
        return hash(self.graph_id)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(nd.id for nd in self.nodes)

    def node(self, node_id: str) -> Node:
        for nd in self.nodes:
            if nd.id == node_id:
                return nd
        raise KeyError(node_id)

    def index(self) -> dict[str, int]:
        """Node id -> position in ``nodes``."""
        return {nd.id: i for i, nd in enumerate(self.nodes)}

    def successors(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {nd.id: [] for nd in self.nodes}
        for e in self.edges:
            out[e.src].append(e.dst)
        return out

    def predecessors(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {nd.id: [] for nd in self.nodes}
        for e in self.edges:
            out[e.dst].append(e.src)
        return out

    def topological_order(self) -> list[str]:
        """Node ids in Kahn's order, earliest position in ``nodes`` first among ready nodes (so a graph already in
        topological order comes back unchanged). Raises InvalidGraphError on a cycle, naming nodes on it."""
        pos = {nd.id: i for i, nd in enumerate(self.nodes)}
        succ: list[list[int]] = [[] for _ in self.nodes]
        for e in self.edges:
            succ[pos[e.src]].append(pos[e.dst])
        order, indeg = kahn_order(succ)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i].id for i, d in enumerate(indeg) if d > 0][:5]
            raise InvalidGraphError(f"graph {self.name!r} has a cycle through nodes such as {stuck}")
        return [self.nodes[i].id for i in order]

    # ------------------------------------------------------------ totals
    @property
    def total_flops(self) -> int:
        return sum(nd.flops for nd in self.nodes)

    @property
    def total_param_bytes(self) -> int:
        return sum(nd.param_bytes for nd in self.nodes)

    @property
    def total_latency_ms(self) -> float:
        return math.fsum(nd.latency_ms for nd in self.nodes)

    # ------------------------------------------------------------ identity and serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; ``CostGraph.from_dict(g.to_dict()) == g``."""
        return {
            "format": GRAPH_FORMAT_VERSION,
            "name": self.name,
            "max_size_per_device": self.max_size_per_device,
            "max_devices": self.max_devices,
            "meta": self.meta,
            "nodes": [asdict(nd) for nd in self.nodes],
            "edges": [asdict(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CostGraph":
        try:
            node_keys = {f.name for f in fields(Node)}
            edge_keys = {f.name for f in fields(Edge)}
            nodes = tuple(Node(**{k: v for k, v in nd.items() if k in node_keys}) for nd in data["nodes"])
            edges = tuple(Edge(**{k: v for k, v in e.items() if k in edge_keys}) for e in data["edges"])
            return cls(str(data["name"]), nodes, edges, data.get("max_size_per_device"), data.get("max_devices"),
                       data.get("meta") or {})
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidGraphError(f"malformed graph record: {exc}") from None

    @property
    def graph_id(self) -> str:
        """Content hash (sha256 hex, 16 chars) of everything in the graph: two graphs with the same id are equal."""
        return _digest(self.to_dict())

    @property
    def structure_id(self) -> str:
        """Hash of what does not depend on measurement: node ids, ops, modules, FLOPs and bytes, edges and their
        bytes. Two profiles of one model at one input shape share it while their ``graph_id`` differ."""
        return _digest({
            "format": GRAPH_FORMAT_VERSION,
            "nodes": [(nd.id, nd.op, nd.module, nd.flops, nd.param_bytes, nd.output_bytes) for nd in self.nodes],
            "edges": [(e.src, e.dst, e.bytes) for e in self.edges],
        })

    def replace_meta(self, **updates: Any) -> "CostGraph":
        return CostGraph(self.name, self.nodes, self.edges, self.max_size_per_device, self.max_devices,
                         {**self.meta, **updates})


def _finite_nonneg(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) and v >= 0


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------- layer view
def module_prefix(module: str, depth: int) -> str:
    """The first ``depth`` components of a dotted module path (``"layer1.0.conv1"``, 2 -> ``"layer1.0"``)."""
    if depth < 1:
        raise InvalidGraphError(f"layer depth must be >= 1, got {depth}")
    return ".".join(module.split(".")[:depth]) if module else ""


def layer_view(graph: CostGraph, depth: int = 1) -> CostGraph:
    """Group operator nodes by their module path cut at ``depth``.

    Groups are maximal runs of consecutive nodes with the same prefix along the graph's topological order (program
    order for a profiled graph). Runs of one order are intervals, so the grouped graph is always a DAG; a module
    entered twice (a shared ReLU, a re-used block) gives two groups, ``name`` and ``name@2``, in execution order.
    Nodes outside any module (top-level functions such as ``flatten``) form a group named for their first node.

    Per group: FLOPs, parameter bytes, size and latencies are sums (the spread sum is an upper bound), the output
    is what leaves the group: ``output_bytes`` and ``output_cost_ms`` sum over member nodes with an edge to another
    group. Edges between groups carry, per source group member with an edge into the destination group, its bytes
    and cost once. The node id is the group name; ``op`` lists the member ops (``"conv2d+batch_norm+relu"``).
    """
    order = graph.topological_order()
    by_id = {nd.id: nd for nd in graph.nodes}
    runs: list[tuple[str, list[str]]] = []
    for nid in order:
        key = module_prefix(by_id[nid].module, depth) or nid
        if runs and runs[-1][0] == key and by_id[nid].module:
            runs[-1][1].append(nid)
        else:
            runs.append((key, [nid]))
    seen: dict[str, int] = {}
    used: set[str] = set()
    group_of: dict[str, str] = {}
    groups: list[tuple[str, list[str]]] = []
    for key, members in runs:
        seen[key] = seen.get(key, 0) + 1
        gid = key if seen[key] == 1 else f"{key}@{seen[key]}"
        while gid in used:  # a module literally named like another group's "x@2"
            gid += "_"
        used.add(gid)
        groups.append((gid, members))
        for m in members:
            group_of[m] = gid

    # The per-edge bytes/cost of a source node are the same tensor for all its consumers: count each source once per
    # (source group, destination group) pair.
    leaving: dict[str, set[str]] = {}
    pair_sources: dict[tuple[str, str], dict[str, Edge]] = {}
    for e in graph.edges:
        gs, gd = group_of[e.src], group_of[e.dst]
        if gs == gd:
            continue
        leaving.setdefault(gs, set()).add(e.src)
        pair_sources.setdefault((gs, gd), {}).setdefault(e.src, e)

    new_nodes = []
    for gid, members in groups:
        mnodes = [by_id[m] for m in members]
        out_members = leaving.get(gid, set())
        classes = {nd.color_class for nd in mnodes if nd.color_class is not None}
        ops: list[str] = []
        for nd in mnodes:
            if nd.op not in ops:
                ops.append(nd.op)
        new_nodes.append(Node(
            id=gid,
            op="+".join(ops),
            module=module_prefix(mnodes[0].module, depth) if mnodes[0].module else "",
            flops=sum(nd.flops for nd in mnodes),
            param_bytes=sum(nd.param_bytes for nd in mnodes),
            output_bytes=sum(by_id[m].output_bytes for m in sorted(out_members)),
            latency_ms=math.fsum(nd.latency_ms for nd in mnodes),
            latency_spread_ms=math.fsum(nd.latency_spread_ms for nd in mnodes),
            size_bytes=math.fsum(nd.size_bytes for nd in mnodes),
            color_class=sorted(classes)[0] if len(classes) == 1 else None,
            output_cost_ms=math.fsum(by_id[m].output_cost_ms for m in sorted(out_members)),
            cpu_latency_ms=math.fsum(nd.cpu_latency_ms for nd in mnodes),
            supported_on_accel=all(nd.supported_on_accel for nd in mnodes),
            is_backward=all(nd.is_backward for nd in mnodes),
        ))
    new_edges = []
    for (gs, gd), srcs in pair_sources.items():
        es = [srcs[s] for s in sorted(srcs)]
        new_edges.append(Edge(gs, gd, sum(e.bytes for e in es), math.fsum(e.cost_ms for e in es)))
    meta = {**graph.meta, "granularity": "layer", "layer_depth": depth, "operator_graph_id": graph.graph_id,
            "members": {gid: members for gid, members in groups}}
    return CostGraph(graph.name, tuple(new_nodes), tuple(new_edges), graph.max_size_per_device, graph.max_devices,
                     meta)
