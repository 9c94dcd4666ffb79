"""Profile a model into a ``CostGraph``: capture, cost, time, assemble.

``profile_model("torchvision:resnet50", (1, 3, 224, 224))`` builds the model (``weights=None``), checks that it
accepts the input, captures its graph (``capture.py``), counts FLOPs and bytes per node (``costs.py``), times every
node and the whole model (``timing.py``), prices every edge on a link profile (``links.py``) and returns the graph
(at operator granularity, or grouped by module path with ``granularity="layer"``).

What becomes a node: graph inputs (op ``input``) and every call whose output holds a tensor. Parameter reads
(``get_attr``) are folded into the node that first uses them (their bytes become its parameters); shape arithmetic
and asserts (no tensor output) are folded too: their time goes to the next node in execution order, and a consumer
that depended on one through them keeps a zero-byte edge from the tensor node it came from, so precedence survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import fx, nn

from forgeflow.tasks.config import Config
from forgeflow.tasks.profiling.capture import capture_graph, run_eager
from forgeflow.tasks.profiling.costs import NodeCost, counting_conditions, flop_counter, node_costs
from forgeflow.tasks.profiling.errors import ProfileConfigError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node, layer_view
from forgeflow.tasks.profiling.links import LinkProfile, get_link
from forgeflow.tasks.profiling.shape import parse_shape  # noqa: F401  (the one parser; re-exported)
from forgeflow.tasks.profiling.timing import TimingResult, time_graph

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
GRANULARITIES = ("op", "layer")

#: progress(stage, done, total); stages: "build", "capture", "costs", "timing", "assemble"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProfileConfig(Config):
    """Everything that determines a profile except the model. ``input_shape`` includes the batch dimension;
    ``batch`` (if set) replaces it. ``threads=None`` keeps torch's current thread count."""

    input_shape: tuple[int, ...] | None = None
    dtype: str = "float32"
    batch: int | None = None
    granularity: str = "op"
    layer_depth: int = 2
    repeats: int = 5
    warmup: int = 2
    link: str = "pcie4_x16"
    capture: str = "auto"
    threads: int | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> "ProfileConfig":
        if self.dtype not in DTYPES:
            raise ProfileConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.granularity not in GRANULARITIES:
            raise ProfileConfigError(f"granularity must be 'op' or 'layer'; got {self.granularity!r}")
        if self.layer_depth < 1:
            raise ProfileConfigError(f"layer depth must be >= 1; got {self.layer_depth}")
        if self.repeats < 1:
            raise ProfileConfigError(f"repeats must be >= 1; got {self.repeats}")
        if self.warmup < 0:
            raise ProfileConfigError(f"warmup must be >= 0; got {self.warmup}")
        if self.batch is not None and self.batch < 1:
            raise ProfileConfigError(f"batch must be >= 1; got {self.batch}")
        if self.threads is not None and self.threads < 1:
            raise ProfileConfigError(f"threads must be >= 1; got {self.threads}")
        if self.input_shape is not None:
            if len(self.input_shape) < 1 or any((not isinstance(d, int)) or d < 1 for d in self.input_shape):
                raise ProfileConfigError(f"input shape must be positive integers; got {self.input_shape}")
        get_link(self.link)
        return self

    def shape_for(self, spec: str) -> tuple[int, ...]:
        from forgeflow.tasks.models.spec import default_input_shape

        shape = tuple(self.input_shape) if self.input_shape is not None else tuple(default_input_shape(spec))
        if self.batch is not None:
            shape = (int(self.batch),) + shape[1:]
        return shape


def profile_model(spec: str, input_shape: Sequence[int] | None = None, dtype: str = "float32",
                  batch: int | None = None, granularity: str = "op", repeats: int = 5, warmup: int = 2,
                  link: str | LinkProfile | None = None, *, layer_depth: int = 2, capture: str = "auto",
                  threads: int | None = None, model_kwargs: Mapping[str, Any] | None = None,
                  model: nn.Module | None = None, progress: Progress | None = None) -> CostGraph:
    """Profile the model named by ``spec`` (see ``tasks.models.spec``) into a validated ``CostGraph``.

    ``model`` may be passed to profile an already-built module (``spec`` then only names it). Raises
    ``UnknownModelError`` (bad spec or a factory that raises), ``InputShapeError``, ``UntraceableModelError``,
    ``ProfileConfigError`` or ``UnknownLinkError``, each with one message naming the problem.
    """
    cfg = ProfileConfig(
        input_shape=tuple(int(d) for d in input_shape) if input_shape is not None else None, dtype=dtype,
        batch=batch, granularity=granularity, layer_depth=layer_depth, repeats=repeats, warmup=warmup,
        link=link.name if isinstance(link, LinkProfile) else (link or "pcie4_x16"), capture=capture,
        threads=threads, model_kwargs=dict(model_kwargs or {}),
    ).validate()
    lk = link if isinstance(link, LinkProfile) else get_link(cfg.link)
    return profile_with_config(spec, cfg, link=lk, model=model, progress=progress)


def profile_with_config(spec: str, cfg: ProfileConfig, *, link: LinkProfile | None = None,
                        model: nn.Module | None = None, progress: Progress | None = None) -> CostGraph:
    cfg.validate()
    lk = link or get_link(cfg.link)
    tick = progress or (lambda stage, done, total: None)
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        tick("build", 0, 1)
        if model is None:
            from forgeflow.tasks.models.spec import resolve_model

            model = resolve_model(spec, **dict(cfg.model_kwargs))
        shape = cfg.shape_for(spec)
        model = model.eval().to(DTYPES[cfg.dtype])
        for p in model.parameters():
            p.requires_grad_(False)
        x = example_input(shape, cfg.dtype)
        # The eager check of the input doubles as the whole-model FLOP count the per-node counts must add up to.
        counter = flop_counter()
        with counting_conditions(), counter:
            reference = run_eager(model, (x,), what=f"model {spec}")
        ref_flops = int(counter.get_total_flops())
        tick("build", 1, 1)

        tick("capture", 0, 1)
        captured = capture_graph(model, (x,), method=cfg.capture, reference_output=reference)
        tick("capture", 1, 1)

        tick("costs", 0, 1)
        costs = node_costs(captured.gm, (x,))
        tick("costs", 1, 1)

        timing = time_graph(captured.gm, model, (x,), repeats=cfg.repeats, warmup=cfg.warmup, threads=None,
                            progress=lambda d, t: tick("timing", d, t))
        tick("assemble", 0, 1)
        params = sum(p.numel() for p in model.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
        meta: dict[str, Any] = {
            "source": "profile",
            "model": spec,
            "input_shape": list(shape),
            "dtype": cfg.dtype,
            "batch": shape[0],
            "capture": captured.method,
            "capture_notes": list(captured.notes),
            "flops_reference": ref_flops,
            "params": params,
            "param_bytes": param_bytes,
            "buffer_bytes": buffer_bytes,
            "link": {"name": lk.name, "bandwidth_bytes_per_s": lk.bandwidth_bytes_per_s, "latency_s": lk.latency_s},
            "timing": _timing_meta(timing),
        }
        graph = assemble_graph(_graph_name(spec), captured.gm, costs, timing, lk, meta)
        if cfg.granularity == "layer":
            graph = layer_view(graph, cfg.layer_depth)
        tick("assemble", 1, 1)
        return graph
    finally:
        torch.set_num_threads(previous_threads)


def _graph_name(spec: str) -> str:
    return spec.split(":", 1)[1] if spec.startswith(("torchvision:", "forgeflow:")) else spec


def example_input(shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(DTYPES[dtype])


def _timing_meta(t: TimingResult) -> dict[str, Any]:
    return {
        "repeats": t.repeats,
        "warmup": t.warmup,
        "whole_model_ms": t.whole.median_ms,
        "whole_model_spread_ms": t.whole.spread_ms,
        "whole_model_samples_ms": list(t.whole.samples_ms),
        "node_sum_ms": t.node_sum.median_ms,
        "node_sum_spread_ms": t.node_sum.spread_ms,
        "node_sum_ratio": t.node_sum_ratio,
        "context": t.context,
    }


def assemble_graph(name: str, gm: fx.GraphModule, costs: Mapping[str, NodeCost], timing: TimingResult | None,
                   link: LinkProfile, meta: Mapping[str, Any]) -> CostGraph:
    """Turn the per-fx-node costs and times into a ``CostGraph`` at operator granularity (see module docstring)."""
    fx_nodes = [n for n in gm.graph.nodes if n.op != "output"]
    kept = [n for n in fx_nodes if n.op == "placeholder" or (n.op.startswith("call_") and costs[n.name].is_tensor)]
    kept_names = {n.name for n in kept}

    # Folded parameter reads hand their parameters to their first consumer.
    extra_params: dict[str, list[int]] = {}
    for n in fx_nodes:
        if n.op == "get_attr":
            c = costs[n.name]
            users = [u for u in _users_in_order(n) if u.op != "output"]
            owner = _first_kept_descendant(users, kept_names)
            if owner is not None and (c.param_count or c.param_bytes or c.buffer_bytes):
                acc = extra_params.setdefault(owner, [0, 0, 0])
                acc[0] += c.param_count
                acc[1] += c.param_bytes
                acc[2] += c.buffer_bytes

    # Time of folded calls goes to the next kept node in execution order (to the previous one at the very end).
    node_ms = {n.name: (timing.nodes[n.name].median_ms if timing else 0.0) for n in fx_nodes}
    node_spread = {n.name: (timing.nodes[n.name].spread_ms if timing else 0.0) for n in fx_nodes}
    extra_ms: dict[str, float] = {}
    pending = 0.0
    last_kept: str | None = None
    for n in fx_nodes:
        if n.name in kept_names:
            extra_ms[n.name] = pending
            pending = 0.0
            last_kept = n.name
        else:
            pending += node_ms[n.name]
    if pending and last_kept is not None:
        extra_ms[last_kept] = extra_ms.get(last_kept, 0.0) + pending

    nodes = []
    for n in kept:
        c = costs[n.name]
        pc, pb, bb = c.param_count, c.param_bytes, c.buffer_bytes
        if n.name in extra_params:
            pc, pb, bb = pc + extra_params[n.name][0], pb + extra_params[n.name][1], bb + extra_params[n.name][2]
        nodes.append(Node(
            id=n.name, op=c.op, module=c.module, flops=c.flops, param_bytes=pb, output_bytes=c.output_bytes,
            latency_ms=node_ms[n.name] + extra_ms.get(n.name, 0.0), latency_spread_ms=node_spread[n.name],
            size_bytes=float(pb + bb), output_cost_ms=link.transfer_ms(c.output_bytes),
        ))

    edges: dict[tuple[str, str], Edge] = {}
    for n in kept:
        if n.op == "placeholder":
            continue
        for src, direct in _kept_sources(n, kept_names):
            nbytes = costs[src].output_bytes if direct else 0
            if (src, n.name) in edges and edges[(src, n.name)].bytes >= nbytes:
                continue
            edges[(src, n.name)] = Edge(src, n.name, nbytes, link.transfer_ms(nbytes))
    params_in_nodes = sum(costs[n.name].param_count for n in kept) + sum(v[0] for v in extra_params.values())
    full_meta = {**meta, "granularity": "op", "fx_nodes": len(fx_nodes), "folded_nodes": len(fx_nodes) - len(kept),
                 "params_in_nodes": params_in_nodes}
    graph = CostGraph(name, tuple(nodes), tuple(edges.values()), meta=full_meta)
    flops_total = graph.total_flops
    return graph.replace_meta(flops=flops_total, nodes=len(graph.nodes), edges=len(graph.edges))


def _users_in_order(n: fx.Node) -> list[fx.Node]:
    order = {m: i for i, m in enumerate(n.graph.nodes)}
    return sorted(n.users, key=lambda u: order[u])


def _first_kept_descendant(users: list[fx.Node], kept: set[str]) -> str | None:
    """The earliest (in execution order) kept node reachable from ``users`` through folded nodes."""
    order = {m: i for i, m in enumerate(users[0].graph.nodes)} if users else {}
    best: fx.Node | None = None
    stack = list(users)
    seen: set[str] = set()
    while stack:
        u = stack.pop()
        if u.name in seen or u.op == "output":
            continue
        seen.add(u.name)
        if u.name in kept:
            if best is None or order[u] < order[best]:
                best = u
            continue
        stack.extend(u.users)
    return best.name if best is not None else None


def _kept_sources(n: fx.Node, kept: set[str]) -> list[tuple[str, bool]]:
    """Kept nodes ``n`` depends on: its direct inputs (True) and, through folded non-tensor nodes, their nearest kept
    ancestors (False: a precedence without data). Parameter reads are not dependencies."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for inp in n.all_input_nodes:
        if inp.op == "get_attr":
            continue
        if inp.name in kept:
            if inp.name not in seen:
                seen.add(inp.name)
                out.append((inp.name, True))
            continue
        stack = [inp]
        visited: set[str] = set()
        while stack:
            u = stack.pop()
            if u.name in visited or u.op == "get_attr":
                continue
            visited.add(u.name)
            if u.name in kept:
                if u.name not in seen:
                    seen.add(u.name)
                    out.append((u.name, False))
                continue
            stack.extend(u.all_input_nodes)
    # A direct data edge wins over an indirect precedence from the same node.
    direct = {s for s, d in out if d}
    return [(s, d) for s, d in out if d or s not in direct]
