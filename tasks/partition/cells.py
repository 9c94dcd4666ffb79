"""Generator of cell-based DNN graphs (wide, branchy DAGs) with costs drawn from profiles of real operators.

Four families, all at operator granularity (one node per conv / depthwise conv / batch norm / ReLU / pool / add /
concat / linear / matmul / softmax / layer norm / GELU), with tensor shapes tracked so FLOPs, parameter bytes and
activation bytes are those of the real layer:

* ``nasnet``: NASNet-A-like stacks of normal and reduction cells. Each cell takes the two previous cells' outputs
  (the cross-cell skip), preprocesses them (ReLU-conv1x1-BN), and has ``blocks`` blocks that each apply two ops to
  two earlier states and add them; the cell output concatenates the blocks nothing else consumed. Ops: separable
  3x3/5x5/7x7 convs (ReLU-dw-pw-BN twice), 3x3 avg/max pool, identity.
* ``amoeba``: the same cell skeleton with AmoebaNet's op set (adds 1x7-7x1 convs and dilated separable convs) and a
  new random genotype per cell, as evolution produces.
* ``inception``: Inception-v3-like blocks of 3-6 parallel branches (1x1, 1x1-3x3, 1x1-3x3-3x3, factorised
  1x7-7x1 chains, pool-1x1), concatenated, with stride-2 grid reductions.
* ``ptransformer``: parallel-branch transformer blocks (GPT-J / PaLM style): one LayerNorm feeds the attention
  branch (q, k, v projections, one score-softmax-context path per head, concat, output projection) and the MLP
  branch side by side; both add onto the residual.

Costs: a node's latency is a measured sample of the same operator kind from ``op_profiles.json`` (made by
``bench/partition_op_table.py`` with forgeflow's profiler on torchvision models and a transformer block), the one
nearest in size, scaled by FLOPs (conv, depthwise conv, linear, matmul) or by output bytes (the memory-bound
kinds), times a log-normal jitter; a node's size is its parameter bytes; an edge costs its tensor's bytes on the
chosen link profile. ``cell_graph`` returns a validated ``CostGraph`` (so it can be stored, exported to msr JSON
and partitioned like a profiled model); ``meta["cells"]`` lists each cell's node ids.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node
from forgeflow.tasks.profiling.links import get_link

FAMILIES = ("nasnet", "amoeba", "inception", "ptransformer")
COMPUTE_KINDS = ("conv", "dwconv", "linear", "matmul")
_PROFILE = Path(__file__).with_name("op_profiles.json")
_FLOAT = 4  # bytes per activation / parameter element (float32)


@lru_cache(maxsize=1)
def op_profiles() -> dict[str, np.ndarray]:
    """Measured samples per operator kind: an (n, 3) array of [flops, output_bytes, latency_ms] sorted by the
    scaling key (FLOPs for compute-bound kinds, bytes otherwise)."""
    data = json.loads(_PROFILE.read_text())
    out = {}
    for kind, rows in data["kinds"].items():
        a = np.asarray(rows, dtype=float)
        key = 0 if kind in COMPUTE_KINDS else 1
        a = a[a[:, key] > 0]
        out[kind] = a[np.argsort(a[:, key], kind="stable")]
    return out


@dataclass(frozen=True)
class CellGraphSpec:
    """What to generate: ``family`` (one of FAMILIES), ``cells`` (cells / blocks), ``width`` (channels of the
    first cell, or the model dimension of a transformer), ``blocks`` per NASNet/Amoeba cell, ``heads`` per
    transformer block, ``resolution`` (image side, or tokens for a transformer), the ``link`` profile pricing
    transfers, a ``seed`` for the genotype and cost draws, and ``jitter`` (sigma of the log-normal cost noise)."""

    family: str
    cells: int
    width: int = 64
    blocks: int = 5
    heads: int = 8
    resolution: int = 32
    link: str = "pcie4_x16"
    seed: int = 0
    jitter: float = 0.15

    def validate(self) -> "CellGraphSpec":
        if self.family not in FAMILIES:
            raise InvalidGraphError(f"unknown cell family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        for name in ("cells", "width", "blocks", "heads", "resolution"):
            if int(getattr(self, name)) < 1:
                raise InvalidGraphError(f"cell graph {name} must be >= 1, got {getattr(self, name)}")
        if self.jitter < 0:
            raise InvalidGraphError(f"cost jitter must be >= 0, got {self.jitter}")
        get_link(self.link)
        return self

    @property
    def name(self) -> str:
        return f"{self.family}_c{self.cells}_w{self.width}_s{self.seed}"


class _Builder:
    """Accumulates nodes (with shapes and costs) and edges; shapes are tuples of ints without the batch dim."""

    def __init__(self, rng: np.random.Generator, jitter: float) -> None:
        self.rng = rng
        self.jitter = jitter
        self.profiles = op_profiles()
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[tuple[str, str]] = []
        self.shape: dict[str, tuple[int, ...]] = {}
        self.cells: list[list[str]] = []
        self.scope = ""

    def _latency(self, kind: str, flops: float, out_bytes: float) -> float:
        """A measured rate (ms per FLOP, or per byte for memory-bound kinds): the median over the samples of this
        kind nearest in size (robust to a single noisy measurement), times a log-normal jitter."""
        table = self.profiles[kind]
        compute = kind in COMPUTE_KINDS
        key = flops if compute else out_bytes
        col = 0 if compute else 1
        i = bisect.bisect_left(table[:, col].tolist(), key)
        near = table[max(0, i - 3): max(i + 3, 6)]
        rate = float(np.median(near[:, 2] / near[:, col]))
        noise = math.exp(self.rng.normal(0.0, self.jitter)) if self.jitter > 0 else 1.0
        return float(max(rate * key * noise, 1e-4))

    def op(self, kind: str, name: str, inputs: list[str], shape: tuple[int, ...], flops: float = 0.0,
           params: float = 0.0) -> str:
        nid = f"{self.scope}{name}" if self.scope else name
        base, j = nid, 1
        while nid in self.shape:
            j += 1
            nid = f"{base}_{j}"
        out_bytes = _FLOAT * int(np.prod(shape))
        lat = 0.0 if kind == "input" else self._latency(kind, flops, out_bytes)
        self.nodes.append({"id": nid, "op": kind, "module": self.scope.rstrip("."), "flops": int(flops),
                           "param_bytes": int(_FLOAT * params), "output_bytes": out_bytes, "latency_ms": lat})
        self.shape[nid] = shape
        for u in dict.fromkeys(inputs):
            self.edges.append((u, nid))
        if self.cells:
            self.cells[-1].append(nid)
        return nid

    # ------------------------------------------------------------------ conv-net ops on (C, H, W)
    def conv(self, x: str, cout: int, k: int | tuple[int, int] = 1, stride: int = 1, name: str = "conv",
             dilation: int = 1) -> str:
        c, h, w = self.shape[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        ho, wo = -(-h // stride), -(-w // stride)
        return self.op("conv", name, [x], (cout, ho, wo), 2.0 * kh * kw * c * cout * ho * wo, kh * kw * c * cout)

    def dwconv(self, x: str, k: int, stride: int = 1, name: str = "dw") -> str:
        c, h, w = self.shape[x]
        ho, wo = -(-h // stride), -(-w // stride)
        return self.op("dwconv", name, [x], (c, ho, wo), 2.0 * k * k * c * ho * wo, k * k * c)

    def unary(self, kind: str, x: str, name: str | None = None, params: float = 0.0) -> str:
        return self.op(kind, name or kind, [x], self.shape[x], params=params)

    def bn(self, x: str, name: str = "bn") -> str:
        return self.unary("bn", x, name, params=2 * self.shape[x][0])

    def pool(self, x: str, stride: int = 1, name: str = "pool") -> str:
        c, h, w = self.shape[x]
        return self.op("pool", name, [x], (c, -(-h // stride), -(-w // stride)))

    def add(self, xs: list[str], name: str = "add") -> str:
        return self.op("add", name, xs, self.shape[xs[0]])

    def cat(self, xs: list[str], name: str = "cat") -> str:
        c = sum(self.shape[x][0] for x in xs)
        return self.op("cat", name, xs, (c,) + self.shape[xs[0]][1:])

    def conv_bn_relu(self, x: str, cout: int, k: int | tuple[int, int] = 1, stride: int = 1, name: str = "c") -> str:
        return self.unary("relu", self.bn(self.conv(x, cout, k, stride, f"{name}_conv"), f"{name}_bn"), f"{name}_relu")

    def relu_conv_bn(self, x: str, cout: int, stride: int = 1, name: str = "pre") -> str:
        return self.bn(self.conv(self.unary("relu", x, f"{name}_relu"), cout, 1, stride, f"{name}_conv"), f"{name}_bn")

    def sep_conv(self, x: str, cout: int, k: int, stride: int, name: str, dilation: int = 1) -> str:
        y = x
        for rep in range(1 if dilation > 1 else 2):
            y = self.unary("relu", y, f"{name}_relu{rep}")
            y = self.dwconv(y, k, stride if rep == 0 else 1, f"{name}_dw{rep}")
            y = self.conv(y, cout, 1, 1, f"{name}_pw{rep}")
            y = self.bn(y, f"{name}_bn{rep}")
        return y

    # ------------------------------------------------------------------ transformer ops on (T, D)
    def linear(self, x: str, dout: int, name: str) -> str:
        t, d = self.shape[x]
        return self.op("linear", name, [x], (t, dout), 2.0 * t * d * dout, d * dout + dout)


# ---------------------------------------------------------------------- NASNet / AmoebaNet cells
_NASNET_OPS = ("sep3", "sep5", "sep7", "avg3", "max3", "id")
_AMOEBA_OPS = ("sep3", "sep5", "sep7", "avg3", "max3", "id", "conv17", "dil3")


def _nas_op(b: _Builder, op: str, x: str, c: int, stride: int, name: str) -> str:
    if op.startswith("sep"):
        return b.sep_conv(x, c, int(op[3]), stride, name)
    if op == "dil3":
        return b.sep_conv(x, c, 3, stride, name, dilation=2)
    if op == "conv17":
        y = b.unary("relu", x, f"{name}_relu")
        y = b.conv(y, c, (1, 7), stride, f"{name}_1x7")
        y = b.conv(y, c, (7, 1), 1, f"{name}_7x1")
        return b.bn(y, f"{name}_bn")
    if op in ("avg3", "max3"):
        y = b.pool(x, stride, f"{name}_{op}")
        return y if b.shape[y][0] == c else b.bn(b.conv(y, c, 1, 1, f"{name}_proj"), f"{name}_projbn")
    # identity; a strided or widening identity becomes a 1x1 conv (factorised reduce)
    if stride == 1 and b.shape[x][0] == c:
        return x
    return b.relu_conv_bn(x, c, stride, f"{name}_fr")


def _nas_cell(b: _Builder, h0: str, h1: str, c: int, reduction: bool, blocks: int, ops: tuple[str, ...],
              rng: np.random.Generator) -> str:
    # bring both inputs to c channels at h1's resolution (h0 may be one reduction behind: stride 2)
    s0 = 2 if b.shape[h0][1] > b.shape[h1][1] else 1
    states = [b.relu_conv_bn(h0, c, s0, "pre0"), b.relu_conv_bn(h1, c, 1, "pre1")]
    used = [False] * (2 + blocks)
    for i in range(blocks):
        ins = rng.choice(len(states), size=2, replace=len(states) < 2)
        outs = []
        for side, j in enumerate(ins.tolist()):
            stride = 2 if reduction and j < 2 else 1
            op = str(rng.choice(ops))
            outs.append(_nas_op(b, op, states[j], c, stride, f"b{i}_{'lr'[side]}_{op}"))
            used[j] = True
        states.append(b.add(outs, f"b{i}_add"))
    loose = [s for s, u in zip(states[2:], used[2:]) if not u] or [states[-1]]
    return b.cat(loose, "out") if len(loose) > 1 else loose[0]


def _nasnet(b: _Builder, spec: CellGraphSpec, rng: np.random.Generator) -> None:
    ops = _NASNET_OPS if spec.family == "nasnet" else _AMOEBA_OPS
    x = b.op("input", "input", [], (3, spec.resolution, spec.resolution))
    b.cells.append([x])
    b.scope = "stem."
    stem = b.bn(b.conv(x, spec.width, 3, 1, "conv"), "bn")
    h0 = h1 = stem
    c = spec.width
    n = spec.cells
    reductions = {n // 3, 2 * n // 3} if n >= 3 else set()
    shared = [tuple(rng.choice(ops, size=2 * spec.blocks).tolist()), tuple(rng.choice(ops, size=2 * spec.blocks).tolist())]
    for i in range(n):
        red = i in reductions
        if red:
            c *= 2
        b.cells.append([])
        b.scope = f"cell{i}{'r' if red else ''}."
        # NASNet repeats two genotypes (normal, reduction); AmoebaNet-style evolution: a fresh genotype per cell
        cell_ops = ops if spec.family == "amoeba" else shared[1 if red else 0]
        out = _nas_cell(b, h0, h1, c, red, spec.blocks, cell_ops, rng)
        h0, h1 = h1, out
    b.cells.append([])
    b.scope = "head."
    y = b.pool(b.unary("relu", h1, "relu"), b.shape[h1][1], "gap")
    y = b.op("linear", "fc", [y], (10,), 2.0 * b.shape[y][0] * 10, b.shape[y][0] * 10)


# ---------------------------------------------------------------------- Inception blocks
def _inception(b: _Builder, spec: CellGraphSpec, rng: np.random.Generator) -> None:
    x = b.op("input", "input", [], (3, spec.resolution, spec.resolution))
    b.cells.append([x])
    b.scope = "stem."
    y = b.conv_bn_relu(x, spec.width, 3, 1, "c1")
    y = b.conv_bn_relu(y, spec.width, 3, 1, "c2")
    c = spec.width
    n = spec.cells
    reductions = {n // 3, 2 * n // 3} if n >= 3 else set()
    for i in range(n):
        red = i in reductions
        b.cells.append([])
        b.scope = f"mixed{i}{'r' if red else ''}."
        branches = int(rng.integers(3, 7)) if not red else 3
        outs = []
        cb = max(8, c // 4)
        for j in range(branches):
            kind = int(rng.integers(0, 5)) if not red else j
            stride = 2 if red else 1
            if kind == 0:
                z = b.conv_bn_relu(y, cb, 1, stride, f"br{j}_1x1")
            elif kind == 1:
                z = b.conv_bn_relu(y, cb, 1, 1, f"br{j}_red")
                z = b.conv_bn_relu(z, cb, 3, stride, f"br{j}_3x3")
            elif kind == 2:
                z = b.conv_bn_relu(y, cb, 1, 1, f"br{j}_red")
                z = b.conv_bn_relu(z, cb, 3, 1, f"br{j}_3x3a")
                z = b.conv_bn_relu(z, cb, 3, stride, f"br{j}_3x3b")
            elif kind == 3:
                z = b.conv_bn_relu(y, cb, 1, 1, f"br{j}_red")
                for r in range(int(rng.integers(1, 3))):
                    z = b.conv_bn_relu(z, cb, (1, 7), 1, f"br{j}_1x7_{r}")
                    z = b.conv_bn_relu(z, cb, (7, 1), 1, f"br{j}_7x1_{r}")
                if stride > 1:
                    z = b.conv_bn_relu(z, cb, 3, stride, f"br{j}_down")
            else:
                z = b.pool(y, stride, f"br{j}_pool")
                z = b.conv_bn_relu(z, cb, 1, 1, f"br{j}_proj")
            outs.append(z)
        y = b.cat(outs, "cat")
        c = b.shape[y][0]
        if red:
            c = c  # channels grow through the concat
    b.cells.append([])
    b.scope = "head."
    y = b.pool(y, b.shape[y][1], "gap")
    b.op("linear", "fc", [y], (10,), 2.0 * b.shape[y][0] * 10, b.shape[y][0] * 10)


# ---------------------------------------------------------------------- parallel transformer blocks
def _ptransformer(b: _Builder, spec: CellGraphSpec, rng: np.random.Generator) -> None:
    t, d, heads = spec.resolution, spec.width, spec.heads
    dh = max(1, d // heads)
    x = b.op("input", "tokens", [], (t, d))
    b.cells.append([x])
    for i in range(spec.cells):
        b.cells.append([])
        b.scope = f"block{i}."
        h = b.op("layernorm", "ln", [x], (t, d), params=2 * d)
        q, k, v = (b.linear(h, d, nm) for nm in ("q", "k", "v"))
        ctx = []
        for j in range(heads):
            s = b.op("matmul", f"h{j}_scores", [q, k], (t, t), 2.0 * t * t * dh)
            p = b.op("softmax", f"h{j}_softmax", [s], (t, t))
            ctx.append(b.op("matmul", f"h{j}_ctx", [p, v], (t, dh), 2.0 * t * t * dh))
        attn = b.linear(b.op("cat", "heads", ctx, (t, d)), d, "o")
        mlp = b.linear(b.op("gelu", "gelu", [b.linear(h, 4 * d, "fc1")], (t, 4 * d)), d, "fc2")
        x = b.op("add", "residual", [x, attn, mlp], (t, d))
    b.cells.append([])
    b.scope = "head."
    b.op("layernorm", "ln_f", [x], (t, d), params=2 * d)


def cell_graph(spec: CellGraphSpec) -> CostGraph:
    """Generate the graph of ``spec`` (deterministic given its seed); raises InvalidGraphError on a bad spec."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    b = _Builder(rng, spec.jitter)
    {"nasnet": _nasnet, "amoeba": _nasnet, "inception": _inception, "ptransformer": _ptransformer}[spec.family](
        b, spec, rng)
    link = get_link(spec.link)
    consumers: dict[str, int] = {}
    for u, _ in b.edges:
        consumers[u] = consumers.get(u, 0) + 1
    nodes = tuple(
        Node(id=nd["id"], op=nd["op"], module=nd["module"], flops=nd["flops"], param_bytes=nd["param_bytes"],
             output_bytes=nd["output_bytes"], latency_ms=round(nd["latency_ms"], 6),
             size_bytes=float(nd["param_bytes"]),
             output_cost_ms=link.transfer_ms(nd["output_bytes"]) if consumers.get(nd["id"]) else 0.0)
        for nd in b.nodes)
    size = {nd["id"]: nd["output_bytes"] for nd in b.nodes}
    edges = tuple(Edge(u, v, size[u], link.transfer_ms(size[u])) for u, v in b.edges)
    meta = {"source": "cell_graph", "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
            "link": {"name": link.name, "bandwidth_bytes_per_s": link.bandwidth_bytes_per_s,
                     "latency_s": link.latency_s},
            "cells": [c for c in b.cells if c], "op_profiles": _PROFILE.name}
    return CostGraph(spec.name, nodes, edges, None, None, meta)
