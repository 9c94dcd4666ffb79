"""Architecture search spaces as vectors of categorical genes.

A space is a fixed-length vector of genes; gene ``i`` takes values ``0 .. cardinalities[i]-1``. Both spaces in
forgeflow fit this shape:

* ``NB201Space``: the NAS-Bench-201 cell, 6 edges x 5 operations (15,625 cells), arch strings like
  ``|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|``.
* ``ElasticSpace``: once-for-all style input resolution, depth per stage, and expand ratio and kernel size per block
  slot (decoded to an ``ElasticArch``); genes of blocks beyond a stage's depth are inactive and canonicalised to 0.

The search engine only uses the methods here (sampling, mutation, crossover, canonical form, features), so it runs
unchanged on any space.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.errors import ForgeflowError


class InvalidArchitectureError(ForgeflowError):
    """An architecture string or gene vector that is not a member of the search space."""


@dataclass(frozen=True)
class CategoricalSpace:
    """A product of categorical genes. Subclasses add decoding to a concrete architecture."""

    name: str
    cardinalities: tuple[int, ...]
    #: gene groups whose joint value gets its own one-hot feature in the surrogate models (None: all pairs)
    interaction_groups: tuple[tuple[int, ...], ...] | None = None

    @property
    def n_genes(self) -> int:
        return len(self.cardinalities)

    @property
    def size(self) -> int:
        return int(np.prod([int(c) for c in self.cardinalities], dtype=object))

    # -- membership ---------------------------------------------------------------------------------------------
    def validate(self, genes) -> np.ndarray:
        g = np.asarray(genes)
        if g.ndim == 1:
            g = g[None, :]
        if g.ndim != 2 or g.shape[1] != self.n_genes:
            raise InvalidArchitectureError(f"{self.name}: expected gene vectors of length {self.n_genes}, got {g.shape}")
        if not np.issubdtype(g.dtype, np.integer):
            raise InvalidArchitectureError(f"{self.name}: genes must be integers")
        card = np.asarray(self.cardinalities)
        if np.any(g < 0) or np.any(g >= card):
            raise InvalidArchitectureError(f"{self.name}: gene value out of range (cardinalities {self.cardinalities})")
        return g.astype(np.int64)

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Map genes that denote the same architecture to one representative (identity here)."""
        return np.asarray(genes, dtype=np.int64)

    def key(self, genes) -> tuple[int, ...]:
        return tuple(int(v) for v in self.canonical(np.asarray(genes)[None, :])[0])

    # -- generation ---------------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cols = [rng.integers(0, c, size=n) for c in self.cardinalities]
        return self.canonical(np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64))

    def enumerate(self, limit: int = 200_000) -> np.ndarray:
        """Every member (canonical, distinct), or raise if the space is larger than ``limit``."""
        if self.size > limit:
            raise InvalidArchitectureError(f"{self.name} has {self.size} members, more than the limit {limit}")
        grid = np.array(list(itertools.product(*[range(c) for c in self.cardinalities])), dtype=np.int64)
        return np.unique(self.canonical(grid), axis=0)

    def mutate(self, rng: np.random.Generator, genes: np.ndarray, rate: float) -> np.ndarray:
        """Resample each gene with probability ``rate`` (to a different value); at least one gene always changes."""
        g = np.array(genes, dtype=np.int64, copy=True)
        n, m = g.shape
        flip = rng.random((n, m)) < rate
        forced = rng.integers(0, m, size=n)
        flip[np.arange(n), forced] = True
        card = np.asarray(self.cardinalities)
        shift = rng.integers(1, np.maximum(card, 2), size=(n, m))  # a non-zero shift modulo c is a different value
        g = np.where(flip & (card > 1), (g + shift) % card, g)
        return self.canonical(g)

    def crossover(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Uniform crossover, one child per parent pair."""
        take_a = rng.random(a.shape) < 0.5
        return self.canonical(np.where(take_a, a, b))

    # -- surrogate features -------------------------------------------------------------------------------------
    def model_inputs(self, genes: np.ndarray) -> np.ndarray:
        """Inputs (n, k) of the tree surrogate: the genes themselves. Spaces where a gene can be inert (its choice
        changes cost but not the function computed) append each gene's effective value; spaces may append ordinal
        summaries after the first ``categorical_inputs`` columns."""
        return np.asarray(genes, dtype=np.int64)

    @property
    def categorical_inputs(self) -> int:
        """How many leading ``model_inputs`` columns are categorical (the rest are ordinal counts)."""
        return self.n_genes

    def features(self, genes: np.ndarray, interactions: bool = True) -> np.ndarray:
        """One-hot per gene, plus one-hot per interacting gene group (joint value), as float32 (n, d)."""
        g = np.asarray(genes, dtype=np.int64)
        n = len(g)
        blocks = []
        for i, c in enumerate(self.cardinalities):
            oh = np.zeros((n, c), dtype=np.float32)
            oh[np.arange(n), g[:, i]] = 1.0
            blocks.append(oh)
        if interactions:
            groups = self.interaction_groups
            if groups is None:
                groups = tuple(itertools.combinations(range(self.n_genes), 2))
            for group in groups:
                joint = np.zeros(n, dtype=np.int64)
                size = 1
                for i in group:
                    joint = joint * self.cardinalities[i] + g[:, i]
                    size *= self.cardinalities[i]
                oh = np.zeros((n, size), dtype=np.float32)
                oh[np.arange(n), joint] = 1.0
                blocks.append(oh)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), dtype=np.float32)

    def op_counts(self, genes: np.ndarray) -> np.ndarray | None:
        """How many times each operation occurs, (n, k) float64, for spaces whose genes all choose among the same
        operations (a latency that is a sum of per-operation costs is linear in these); None elsewhere."""
        return None

    # -- strings ------------------------------------------------------------------------------------------------
    def to_string(self, genes) -> str:
        return "-".join(str(int(v)) for v in np.asarray(genes).ravel())

    def from_string(self, text: str) -> np.ndarray:
        try:
            g = np.array([int(v) for v in text.strip().split("-")], dtype=np.int64)
        except ValueError as exc:
            raise InvalidArchitectureError(f"{self.name}: cannot parse architecture {text!r}") from exc
        return self.validate(g)[0]


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the cell's 6 edges in arch-string order as (from node, to node)
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: the cell's input->output paths as edge indices: 0->3, 0->1->3, 0->2->3, 0->1->2->3
NB201_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
_NB201_TOKEN = re.compile(r"([a-z_0-9]+)~(\d)")


@dataclass(frozen=True)
class NB201Space(CategoricalSpace):
    """The NAS-Bench-201 cell space: gene i is the operation on edge ``NB201_EDGES[i]``."""

    name: str = "nb201"
    cardinalities: tuple[int, ...] = (5,) * 6
    # every pair of edges, plus the one three-edge input-to-output path 0->1->2->3 (edges 0, 2, 5): the cell's
    # accuracy depends on which operations a path chains, so the surrogate sees each path's joint choice
    interaction_groups: tuple[tuple[int, ...], ...] | None = tuple(itertools.combinations(range(6), 2)) + ((0, 2, 5),)

    def alive_ops(self, genes) -> np.ndarray:
        """Each edge's operation if the edge lies on an input->output path of non-``none`` edges, else ``none``
        (0). An edge off every such path still runs (it costs latency) but cannot change the cell's output."""
        g = np.asarray(genes, dtype=np.int64).reshape(-1, self.n_genes)
        on = g != 0
        reach_in = np.zeros((len(g), 4), dtype=bool)  # node reachable from the input node 0
        reach_in[:, 0] = True
        for k, (src, dst) in enumerate(NB201_EDGES):  # edges are ordered by destination node
            reach_in[:, dst] |= reach_in[:, src] & on[:, k]
        reach_out = np.zeros((len(g), 4), dtype=bool)  # node that reaches the output node 3
        reach_out[:, 3] = True
        for k in sorted(range(len(NB201_EDGES)), key=lambda e: -NB201_EDGES[e][0]):
            src, dst = NB201_EDGES[k]
            reach_out[:, src] |= reach_out[:, dst] & on[:, k]
        alive = np.stack([on[:, k] & reach_in[:, s] & reach_out[:, d] for k, (s, d) in enumerate(NB201_EDGES)], 1)
        return np.where(alive, g, 0)

    def expression(self, genes) -> tuple:
        """The sum of terms the cell's output computes, as a canonical nested tuple: node j's value is the sum over
        its alive in-edges of ``skip``: the source's terms themselves, or ``conv1`` / ``conv3`` / ``pool``: one term,
        the op applied to the source's value; terms are sorted. Cells with equal expressions compute the same kind
        of function: skip chains collapse (``0->2 skip, 2->3 skip`` with nothing else into node 2 is ``0->3
        skip``), mirror-image cells and inert edges drop out. (Weight sharing between terms is not distinguished:
        the ordinal inputs still count each cell's own convolutions.)"""
        alive = self.alive_ops(genes)[0]
        val: dict[int, tuple] = {0: ("x",)}
        for j in (1, 2, 3):
            terms: list = []
            for k, (src, dst) in enumerate(NB201_EDGES):
                if dst != j or alive[k] == 0:
                    continue
                if NB201_OPS[alive[k]] == "skip_connect":
                    terms.extend(val[src])
                else:
                    terms.append((NB201_OPS[alive[k]], val[src]))
            val[j] = tuple(sorted(terms, key=repr))
        return val[3]

    def model_inputs(self, genes: np.ndarray) -> np.ndarray:
        """What the cell computes, for the accuracy trees. Every cell is replaced by the representative of its
        ``expression`` class (the member with the fewest alive edges, then the smallest alive ops): 15,625 cells
        fall into 4,930 classes, so the trees pool what they learn about cells that compute the same sum of terms
        (a residual ``x + conv(x)`` reached through a skip chain is the same as through the direct edge). Columns:
        the representative's alive ops (categorical; the raw op of an inert edge cannot change accuracy), then
        ordinal summaries of the representative: alive edges per op, convolutions chained on each of the 4
        input->output paths (0 when the path is cut, else 1 + the count), the most and fewest convolutions on a
        live path, the number of live paths, the most 3x3 convolutions on a live path and the conv weight count
        (9 per 3x3, 1 per 1x1); last, the cell's own conv weight count (terms that share a convolution or not)."""
        g = np.asarray(genes, dtype=np.int64).reshape(-1, self.n_genes)
        rep = _nb201_representatives(self)[g @ (5 ** np.arange(self.n_genes - 1, -1, -1))]
        return np.concatenate([self._path_inputs(rep), self._weights(self.alive_ops(g))[:, None]], axis=1)

    @staticmethod
    def _weights(alive: np.ndarray) -> np.ndarray:
        conv1, conv3 = NB201_OPS.index("nor_conv_1x1"), NB201_OPS.index("nor_conv_3x3")
        return (9 * (alive == conv3) + (alive == conv1)).sum(axis=1)

    def _path_inputs(self, alive: np.ndarray) -> np.ndarray:
        """Alive ops (n, 6), then op counts, per-path conv counts and path summaries (see ``model_inputs``)."""
        conv1, conv3 = NB201_OPS.index("nor_conv_1x1"), NB201_OPS.index("nor_conv_3x3")
        counts = np.stack([(alive == op).sum(axis=1) for op in range(1, len(NB201_OPS))], axis=1)
        live = np.stack([np.all(alive[:, list(p)] != 0, axis=1) for p in NB201_PATHS], axis=1)
        is_conv = (alive == conv1) | (alive == conv3)
        convs = np.stack([is_conv[:, list(p)].sum(axis=1) for p in NB201_PATHS], axis=1)
        convs3 = np.stack([(alive[:, list(p)] == conv3).sum(axis=1) for p in NB201_PATHS], axis=1)
        summary = np.stack([
            np.where(live, convs, -1).max(axis=1) + 1,
            np.where(live, convs, 9).min(axis=1) + 1,
            live.sum(axis=1),
            np.where(live, convs3, -1).max(axis=1) + 1,
            self._weights(alive),
        ], axis=1)
        return np.concatenate([alive, counts, np.where(live, convs + 1, 0), summary], axis=1)

    def op_counts(self, genes: np.ndarray) -> np.ndarray:
        """Edges per operation (``none`` excluded: it is implied by the other four), (n, 4)."""
        g = np.asarray(genes, dtype=np.int64).reshape(-1, self.n_genes)
        return np.stack([(g == op).sum(axis=1) for op in range(1, len(NB201_OPS))], axis=1).astype(np.float64)

    def to_string(self, genes) -> str:
        g = np.asarray(genes).ravel()
        ops = [NB201_OPS[int(v)] for v in g]
        return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)

    def from_string(self, text: str) -> np.ndarray:
        tokens = _NB201_TOKEN.findall(text)
        expected_src = [src for src, _ in NB201_EDGES]
        if len(tokens) != 6 or [int(s) for _, s in tokens] != expected_src:
            raise InvalidArchitectureError(f"not a NAS-Bench-201 cell string: {text!r}")
        try:
            return np.array([NB201_OPS.index(op) for op, _ in tokens], dtype=np.int64)
        except ValueError as exc:
            raise InvalidArchitectureError(f"unknown NAS-Bench-201 operation in {text!r}") from exc


@dataclass(frozen=True)
class ElasticArch:
    """One subnet of the elastic supernet. ``expand``/``kernel`` hold a value for every block slot of every stage;
    slots at or beyond ``depth[s]`` are inactive (they hold the smallest choice in canonical form)."""

    resolution: int
    depth: tuple[int, ...]
    expand: tuple[tuple[int, ...], ...]
    kernel: tuple[tuple[int, ...], ...]

    def to_string(self) -> str:
        e = ";".join(",".join(str(v) for v in stage) for stage in self.expand)
        k = ";".join(",".join(str(v) for v in stage) for stage in self.kernel)
        return f"r{self.resolution}|d{','.join(str(d) for d in self.depth)}|e{e}|k{k}"

    def active_blocks(self) -> list[tuple[int, int, int, int]]:
        """(stage, slot, expand ratio, kernel size) of every block that runs, in order."""
        return [(s, b, self.expand[s][b], self.kernel[s][b]) for s, d in enumerate(self.depth) for b in range(d)]


@dataclass(frozen=True)
class ElasticSpace(CategoricalSpace):
    """Genes: [resolution, depth of each stage, then (expand, kernel) of each block slot, stage by stage]."""

    name: str = "elastic"
    cardinalities: tuple[int, ...] = ()
    interaction_groups: tuple[tuple[int, ...], ...] | None = None
    resolutions: tuple[int, ...] = (8, 12, 16)
    depths: tuple[int, ...] = (1, 2, 3)
    expand_ratios: tuple[int, ...] = (2, 4, 6)
    kernel_sizes: tuple[int, ...] = (3, 5)
    n_stages: int = 3

    def __post_init__(self) -> None:
        for label, values in (("resolutions", self.resolutions), ("depths", self.depths),
                              ("expand_ratios", self.expand_ratios), ("kernel_sizes", self.kernel_sizes)):
            if not values or list(values) != sorted(set(values)) or min(values) < 1:
                raise InvalidArchitectureError(f"elastic space: {label} must be distinct positive ascending, got {values}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise InvalidArchitectureError(f"elastic space: kernel sizes must be odd, got {self.kernel_sizes}")
        if self.n_stages < 1:
            raise InvalidArchitectureError("elastic space: needs at least one stage")
        card = (len(self.resolutions),) + (len(self.depths),) * self.n_stages
        card += (len(self.expand_ratios), len(self.kernel_sizes)) * (self.n_stages * self.max_depth)
        object.__setattr__(self, "cardinalities", card)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def _slot_gene(self, stage: int, slot: int) -> int:
        return 1 + self.n_stages + 2 * (stage * self.max_depth + slot)

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        g = np.array(genes, dtype=np.int64, copy=True)
        single = g.ndim == 1
        g = np.atleast_2d(g)
        for s in range(self.n_stages):
            depth = np.asarray(self.depths)[g[:, 1 + s]]
            for b in range(self.max_depth):
                off = b >= depth
                j = self._slot_gene(s, b)
                g[off, j] = 0
                g[off, j + 1] = 0
        return g[0] if single else g

    def decode(self, genes) -> ElasticArch:
        g = self.canonical(self.validate(genes)[0])
        depth = tuple(self.depths[g[1 + s]] for s in range(self.n_stages))
        expand = tuple(tuple(self.expand_ratios[g[self._slot_gene(s, b)]] for b in range(self.max_depth))
                       for s in range(self.n_stages))
        kernel = tuple(tuple(self.kernel_sizes[g[self._slot_gene(s, b) + 1]] for b in range(self.max_depth))
                       for s in range(self.n_stages))
        return ElasticArch(self.resolutions[g[0]], depth, expand, kernel)

    def encode(self, arch: ElasticArch) -> np.ndarray:
        self.check(arch)
        g = np.zeros(self.n_genes, dtype=np.int64)
        g[0] = self.resolutions.index(arch.resolution)
        for s in range(self.n_stages):
            g[1 + s] = self.depths.index(arch.depth[s])
            for b in range(self.max_depth):
                g[self._slot_gene(s, b)] = self.expand_ratios.index(arch.expand[s][b])
                g[self._slot_gene(s, b) + 1] = self.kernel_sizes.index(arch.kernel[s][b])
        return self.canonical(g)

    def check(self, arch: ElasticArch) -> None:
        ok = (
            arch.resolution in self.resolutions
            and len(arch.depth) == self.n_stages
            and all(d in self.depths for d in arch.depth)
            and len(arch.expand) == len(arch.kernel) == self.n_stages
            and all(len(e) == self.max_depth and all(v in self.expand_ratios for v in e) for e in arch.expand)
            and all(len(k) == self.max_depth and all(v in self.kernel_sizes for v in k) for k in arch.kernel)
        )
        if not ok:
            raise InvalidArchitectureError(f"architecture {arch.to_string()} is not in the elastic space")

    def largest(self) -> ElasticArch:
        return self.decode(np.array([c - 1 for c in self.cardinalities], dtype=np.int64))

    def smallest(self) -> ElasticArch:
        return self.decode(np.zeros(self.n_genes, dtype=np.int64))

    def to_string(self, genes) -> str:
        return self.decode(np.asarray(genes)).to_string()

    def from_string(self, text: str) -> np.ndarray:
        try:
            r, d, e, k = text.strip().split("|")
            arch = ElasticArch(
                resolution=int(r.removeprefix("r")),
                depth=tuple(int(v) for v in d.removeprefix("d").split(",")),
                expand=tuple(tuple(int(v) for v in st.split(",")) for st in e.removeprefix("e").split(";")),
                kernel=tuple(tuple(int(v) for v in st.split(",")) for st in k.removeprefix("k").split(";")),
            )
        except ValueError as exc:
            raise InvalidArchitectureError(f"cannot parse elastic architecture {text!r}") from exc
        return self.encode(arch)


@functools.lru_cache(maxsize=2)
def _nb201_representatives(space: NB201Space) -> np.ndarray:
    """(15,625, 6) read-only: for each cell (indexed by its genes read as a base-5 number), the alive ops of its
    ``expression`` class's representative (fewest alive edges, then smallest alive ops)."""
    cells = np.array(list(itertools.product(range(len(NB201_OPS)), repeat=space.n_genes)), dtype=np.int64)
    alive, inverse = np.unique(space.alive_ops(cells), axis=0, return_inverse=True)
    keys = [space.expression(a) for a in alive]  # an alive cell's expression is its own
    best: dict[tuple, tuple] = {}
    for key, a in zip(keys, alive):
        rank = (int(np.count_nonzero(a)), tuple(int(v) for v in a))
        if key not in best or rank < best[key]:
            best[key] = rank
    rep = np.array([best[k][1] for k in keys], dtype=np.int64)[inverse.reshape(-1)]
    rep.setflags(write=False)
    return rep
