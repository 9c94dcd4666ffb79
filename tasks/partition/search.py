"""Search over topological orders decoded by the exact slicing DP (upper bounds).

A biased random-key genetic algorithm (BRKGA, as in Archer et al., ICML 2024, after Goncalves & Resende): a
chromosome is one key in [0, 1) per must-share group; it decodes to the topological order that always takes the ready
group with the smallest key, and that order to its optimal slicing into at most k stages (``slicing.OrderSlicer``).
Each generation keeps the elite, adds fresh random mutants, and fills the rest with biased uniform crossover of an
elite and a non-elite parent. The best chromosome is then improved by local moves: a group on the border of the
bottleneck stage is moved to the neighbouring stage and the resulting stage-major order is re-sliced (never worse
than the moved plan, since that plan is one of the order's slicings).

Fitness is lexicographic (bottleneck, sum of stage costs), so ties on the bottleneck still steer the search towards
plans with less communication. Everything is driven by one ``numpy.random.Generator`` seeded from ``seed``: with a
generation limit instead of a time limit the search is exactly reproducible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.slicing import OrderSlicer, SlicedOrder
from forgeflow.tasks.partition.stage_vars import bit_indices
from forgeflow.tasks.partition.status import MEMORY_RTOL, SolveStatus


@dataclass(frozen=True)
class SearchConfig:
    """BRKGA parameters (population size, elite and mutant fractions, probability of inheriting the elite parent's
    key), limits (wall seconds and/or generations, stop after ``stall_generations`` without improvement), seed."""

    population: int = 48
    elite_fraction: float = 0.2
    mutant_fraction: float = 0.15
    inherit_elite: float = 0.7
    time_limit: float = 10.0
    generations: int | None = None
    stall_generations: int = 60
    local_search: bool = True
    seed: int = 0
    target: float = 0.0  # stop as soon as the bottleneck is <= target (e.g. a proven lower bound)


@dataclass(frozen=True)
class SearchResult:
    """Best plan found: bottleneck (ms), node->stage ``assignment``, group order, evaluation/generation counts."""

    bottleneck: float
    assignment: np.ndarray | None
    order: np.ndarray
    evaluations: int
    generations: int
    seconds: float
    seed: int
    status: SolveStatus = SolveStatus.FEASIBLE
    history: tuple[tuple[float, float], ...] = field(default_factory=tuple)  # (seconds, bottleneck) improvements


class _Decoder:
    def __init__(self, slicer: OrderSlicer, k: int) -> None:
        self.slicer = slicer
        self.k = k
        self.evaluations = 0

    def fitness(self, order: np.ndarray) -> tuple[tuple[float, float], SlicedOrder]:
        C = self.slicer.block_costs(order)
        res = self.slicer.slice(order, self.k, C)
        self.evaluations += 1
        if not math.isfinite(res.bottleneck):
            return (math.inf, math.inf), res
        cuts = res.cuts
        total = float(sum(C[a, b] for a, b in zip(cuts[:-1], cuts[1:])))
        return (res.bottleneck, total), res


def keys_for_order(order: np.ndarray) -> np.ndarray:
    """Random keys that decode to ``order`` (key = position / G)."""
    G = len(order)
    keys = np.empty(G)
    keys[np.asarray(order)] = (np.arange(G) + 0.5) / max(G, 1)
    return keys


def _stage_major_order(slicer: OrderSlicer, order: np.ndarray, group_stage: np.ndarray) -> np.ndarray:
    pos = np.empty(slicer.G)
    pos[order] = np.arange(slicer.G) / max(slicer.G, 1)
    return slicer.order_from_keys(group_stage + 0.5 * pos)


def branch_orders(slicer: OrderSlicer) -> list[np.ndarray]:
    """Topological orders of the groups that keep parallel branches (and cells) contiguous: depth-first orders
    that, at a fork, finish one branch down to its join before starting the next (a join waits until all its
    branches are done), with the branches taken lightest-first and heaviest-first. Slicing such an order cuts few
    branches at once, which is what wide, cell-based graphs need; they seed the search over orders."""
    g = slicer.groups
    # a branch's weight: the work of the heaviest path starting at its first group
    below = slicer.work.astype(float).copy()
    for h in reversed(g.order):
        if slicer.succ[h]:
            below[h] += max(below[t] for t in slicer.succ[h])
    out = []
    for heavy_first in (False, True):
        indeg = slicer.indeg.copy()
        order: list[int] = []
        stack = sorted(np.flatnonzero(indeg == 0).tolist(), key=lambda h: below[h], reverse=not heavy_first)
        while stack:
            h = stack.pop()
            order.append(h)
            ready = []
            for t in slicer.succ[h]:
                indeg[t] -= 1
                if indeg[t] == 0:
                    ready.append(t)
            # the branch popped next is the last pushed: push so that the preferred one ends on top
            stack.extend(sorted(ready, key=lambda t: below[t], reverse=not heavy_first))
        out.append(np.asarray(order, dtype=np.int64))
    return out


def move_branches(slicer: OrderSlicer, k: int, group_stage: np.ndarray, deadline: float
                  ) -> tuple[tuple[float, float], np.ndarray]:
    """Best-improvement descent over whole-branch moves of the bottleneck stage s: a group together with all its
    ancestors inside s moves to stage s - 1, or a group with all its descendants inside s moves to s + 1 (a new
    stage at the end if fewer than k are used). Both keep every edge forward. Moves are scored exactly
    (``cost.stage_loads``, vectorised) by (bottleneck, sum of stage costs). Returns the fitness and group stages."""
    from forgeflow.tasks.partition.cost import stage_loads

    g = slicer.groups
    problem = slicer.problem
    gs = np.asarray(group_stage, dtype=np.int64).copy()

    def fitness(stages: np.ndarray) -> tuple[tuple[float, float], np.ndarray]:
        loads = stage_loads(problem, stages[g.group_of], k)
        tot = loads.total
        if slicer.cap is not None and np.any(loads.memory > slicer.cap * (1 + MEMORY_RTOL)):
            return (math.inf, math.inf), tot
        return (float(tot.max()), float(tot.sum())), tot

    fit, tot = fitness(gs)
    while time.perf_counter() < deadline:
        s = int(np.argmax(tot))
        members = np.flatnonzero(gs == s).tolist()
        inside = set(members)
        used = int(gs.max()) + 1
        best_fit, best_gs = fit, None
        for h in members:
            if time.perf_counter() >= deadline:
                break
            if s > 0:
                down = [h] + [a for a in bit_indices(g.ancestors[h]) if a in inside]
                if len(down) < len(members):
                    cand = gs.copy()
                    cand[down] = s - 1
                    f2, _ = fitness(cand)
                    if f2 < best_fit:
                        best_fit, best_gs = f2, cand
            if s + 1 < k and (s + 1 < used or len(members) > 1):
                up = [h] + [d for d in bit_indices(g.descendants[h]) if d in inside]
                if len(up) < len(members):
                    cand = gs.copy()
                    cand[up] = s + 1
                    # (s + 1 == used opens a new last stage)
                    f2, _ = fitness(cand)
                    if f2 < best_fit:
                        best_fit, best_gs = f2, cand
        if best_gs is None:
            break
        fit, gs = best_fit, best_gs
        _, tot = fitness(gs)
    return fit, gs


def improve_locally(slicer: OrderSlicer, k: int, fit: tuple[float, float], sliced: SlicedOrder,
                    deadline: float, decoder: _Decoder | None = None) -> tuple[tuple[float, float], SlicedOrder]:
    """Local descent: whole-branch moves out of the bottleneck stage (``move_branches``), then first-improvement
    moves of one border group of the bottleneck stage to the neighbouring stage; every move is re-sliced."""
    decoder = decoder or _Decoder(slicer, k)
    preds, succs = slicer.groups.preds, slicer.groups.succs
    bfit, bgs = move_branches(slicer, k, sliced.group_stage,
                              min(deadline, time.perf_counter() + 0.1 * max(deadline - time.perf_counter(), 0.0),
                                  time.perf_counter() + 1.0))
    if bfit < fit:
        order2 = _stage_major_order(slicer, sliced.order, bgs)
        fit2, res2 = decoder.fitness(order2)  # the moved plan is one slicing of its stage-major order: never worse
        if fit2 < fit:
            fit, sliced = fit2, res2
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        gs = sliced.group_stage
        C = slicer.block_costs(sliced.order)
        cuts = sliced.cuts
        loads = [C[a, b] for a, b in zip(cuts[:-1], cuts[1:])]
        worst = int(np.argmax(loads))
        members = sliced.order[cuts[worst]:cuts[worst + 1]]
        moves = []
        for g in members.tolist():
            if worst > 0 and all(gs[p] < worst for p in preds[g]):
                moves.append((g, worst - 1))
            if worst + 1 < len(loads) and all(gs[s] > worst for s in succs[g]):
                moves.append((g, worst + 1))
            if worst + 1 == len(loads) and len(loads) < k and all(gs[s] > worst for s in succs[g]):
                moves.append((g, worst + 1))  # open a new stage at the end
        for g, s in moves:
            if time.perf_counter() >= deadline:
                break
            gs2 = gs.copy()
            gs2[g] = s
            order2 = _stage_major_order(slicer, sliced.order, gs2)
            fit2, res2 = decoder.fitness(order2)
            if fit2 < fit:
                fit, sliced, improved = fit2, res2, True
                break
    return fit, sliced


def brkga_search(problem: PartitionProblem, k: int | None = None, config: SearchConfig = SearchConfig(),
                 slicer: OrderSlicer | None = None, initial_orders: tuple[np.ndarray, ...] = ()) -> SearchResult:
    """Best plan over topological orders for at most k stages (an upper bound; see module docstring)."""
    t0 = time.perf_counter()
    deadline = t0 + config.time_limit
    k = problem.k if k is None else int(k)
    slicer = slicer or OrderSlicer(problem)
    G = slicer.G
    rng = np.random.default_rng(config.seed)
    dec = _Decoder(slicer, k)
    P = max(config.population, 4)
    n_elite = max(1, int(round(config.elite_fraction * P)))
    n_mut = max(1, int(round(config.mutant_fraction * P)))

    pop = rng.random((P, G))
    seeds = [slicer.default_order, *initial_orders, *branch_orders(slicer)]
    for i, o in enumerate(seeds[: P // 2]):
        pop[i] = keys_for_order(np.asarray(o))
    fits: list[tuple[float, float]] = []
    sols: list[SlicedOrder] = []
    for i in range(P):
        if i >= 1 and config.generations is None and time.perf_counter() >= deadline:
            P = i  # out of time while decoding the first population (a large graph): keep what was decoded
            pop = pop[:P]
            break
        f, s = dec.fitness(slicer.order_from_keys(pop[i]))
        fits.append(f)
        sols.append(s)
    n_elite = min(n_elite, max(P - 1, 1))
    n_mut = min(n_mut, max(P - n_elite, 0))
    best_i = min(range(P), key=fits.__getitem__)
    best_fit, best_sol = fits[best_i], sols[best_i]
    history = [(time.perf_counter() - t0, best_fit[0])]
    gen = stall = 0

    def stop() -> bool:
        if best_fit[0] <= config.target:
            return True
        if config.generations is not None and gen >= config.generations:
            return True
        if config.generations is None and time.perf_counter() >= deadline:
            return True
        return stall >= config.stall_generations

    while not stop():
        gen += 1
        rank = sorted(range(P), key=fits.__getitem__)
        elite = [rank[i] for i in range(n_elite)]
        others = rank[n_elite:]
        new_pop = [pop[i] for i in elite]
        new_fits = [fits[i] for i in elite]
        new_sols = [sols[i] for i in elite]
        children = []
        for _ in range(P - n_elite - n_mut):
            e = elite[rng.integers(n_elite)]
            o = others[rng.integers(len(others))]
            mask = rng.random(G) < config.inherit_elite
            children.append(np.where(mask, pop[e], pop[o]))
        children.extend(rng.random((n_mut, G)))
        for ch in children:
            f, s = dec.fitness(slicer.order_from_keys(ch))
            new_pop.append(ch)
            new_fits.append(f)
            new_sols.append(s)
        pop, fits, sols = np.array(new_pop), new_fits, new_sols
        i = min(range(P), key=fits.__getitem__)
        if fits[i] < best_fit:
            if fits[i][0] < best_fit[0] - 1e-12:
                history.append((time.perf_counter() - t0, fits[i][0]))
            best_fit, best_sol = fits[i], sols[i]
            stall = 0
        else:
            stall += 1
        if config.local_search and (stall == 0 or gen % 10 == 0) and math.isfinite(best_fit[0]):
            ls_deadline = deadline if config.generations is None else math.inf
            f2, s2 = improve_locally(slicer, k, best_fit, best_sol, ls_deadline, dec)
            if f2 < best_fit:
                if f2[0] < best_fit[0] - 1e-12:
                    history.append((time.perf_counter() - t0, f2[0]))
                best_fit, best_sol = f2, s2
                worst = rank[-1]
                pop[worst] = keys_for_order(s2.order)  # feed the improvement back into the population
                fits[worst], sols[worst] = f2, s2
                stall = 0

    assignment = slicer.node_assignment(best_sol.group_stage) if math.isfinite(best_fit[0]) else None
    # a search proves nothing: no plan found is a time limit, not infeasibility
    status = SolveStatus.FEASIBLE if assignment is not None else SolveStatus.TIME_LIMIT
    return SearchResult(best_fit[0], assignment, best_sol.order, dec.evaluations, gen, time.perf_counter() - t0,
                        config.seed, status, tuple(history))
