"""Run every partitioning method on one instance within a wall-time budget and return the certified result.

Order of work (each step only if the previous ones have not closed the gap):

1. the combinatorial lower bound, the baselines and the slicing of the graph's own topological order (milliseconds);
2. the exact DP over ideals when the ideals are few enough for the budget (its optimum is also a proven bound);
3. BRKGA restarts over topological orders (different seeds), fanned out over ``executor``;
4. ``bounds.best_lower_bound`` (HiGHS MIPs, their solves fanned out over ``executor``) against the best plan, and
   the direct MIP on small graphs.

Every candidate plan goes through the independent validator (``Plan.checked``) before it can be returned.
``executor`` follows ``tasks.dask_fanout``'s contract (``SERIAL``, a ``concurrent.futures`` executor, a Dask client);
the functions submitted are module-level so they pickle to Dask workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from forgeflow.tasks.dask_fanout import SERIAL, runs_in_parallel
from forgeflow.tasks.errors import InfeasibleError
from forgeflow.tasks.partition.baselines import all_baselines
from forgeflow.tasks.partition.bounds import best_lower_bound, combinatorial_lower_bound
from forgeflow.tasks.partition.colocation import must_share_groups
from forgeflow.tasks.partition.ideals import IdealsResult, solve_ideals_dp
from forgeflow.tasks.partition.incumbent import Incumbent
from forgeflow.tasks.partition.mip import solve_exact_mip
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.result import MethodRun, PartitionResult, Plan
from forgeflow.tasks.partition.search import SearchConfig, SearchResult, brkga_search
from forgeflow.tasks.partition.slicing import OrderSlicer
from forgeflow.tasks.partition.status import COST_RTOL, PROVEN_RTOL, Bound, SolveStatus


#: the share of the wall budget (at most FINISH_RESERVE_MAX seconds) kept back from the solvers' own time limits
FINISH_RESERVE_SHARE = 0.05
FINISH_RESERVE_MAX = 3.0


@dataclass(frozen=True)
class SolveConfig:
    """Budget and knobs. ``time_limit`` is the wall-time budget in seconds for the whole solve."""

    time_limit: float = 60.0
    seed: int = 0
    restarts: int = 2
    max_ideals: int = 40_000
    exact_mip_max_groups: int = 40
    lower_bounds: bool = True
    expert_path: str | None = None


def _run_ideals(problem: PartitionProblem, k: int, ub: float, max_ideals: int, time_limit: float) -> IdealsResult:
    return solve_ideals_dp(problem, k, upper_bound=ub, max_ideals=max_ideals, time_limit=time_limit)


def _run_search(problem: PartitionProblem, k: int, seed: int, time_limit: float, target: float,
                initial: tuple[np.ndarray, ...]) -> SearchResult:
    return brkga_search(problem, k, SearchConfig(time_limit=time_limit, seed=seed, target=target),
                        initial_orders=initial)


class _Board(Incumbent):
    """The partition's incumbent: plans are checked by ``Plan.checked`` (the independent validator) first."""

    def __init__(self, problem: PartitionProblem, k: int, t0: float | None = None) -> None:
        super().__init__(t0)
        self.problem, self.k = problem, k

    def offer_plan(self, assignment: np.ndarray | None, method: str) -> None:
        if assignment is not None:
            self.keep(Plan.checked(self.problem, assignment, method, self.k))


def partition(problem: PartitionProblem, config: SolveConfig = SolveConfig(), executor: Any = SERIAL,
              graph_id: str | None = None) -> PartitionResult:
    """The best plan for ``problem.k`` stages found within ``config.time_limit`` seconds, with its certificate.

    Raises InvalidGraphError for a malformed problem and InfeasibleError when no plan fits the memory cap.
    """
    t0 = time.perf_counter()
    # HiGHS checks its time limit between simplex iterations and B&B nodes, so on a loaded machine a large solve
    # ends up to a few seconds late (measured 60.9-62.7 s on a 60 s budget): keep a reserve for that
    deadline = t0 + config.time_limit - min(FINISH_RESERVE_MAX, FINISH_RESERVE_SHARE * config.time_limit)

    def left() -> float:
        return deadline - time.perf_counter()

    problem.validate()
    groups = must_share_groups(problem)
    slicer = OrderSlicer(problem, groups)
    board = _Board(problem, problem.k, t0)
    # 1: the combinatorial bound, the baselines and the DP over the graph's own topological order
    comb = _combinatorial_bound(board, problem, groups)
    baselines = _run_baselines(board, problem, slicer, config)
    sliced = _order_dp(board, slicer, problem.k)
    # 2 + 3: the exact DP and the order search side by side (and the MIP bounds meanwhile on a parallel executor)
    ideals_res = _race_dp_and_search(board, problem, config, executor, sliced, left)
    # 4: MIP lower bounds (and the direct MIP on small graphs) against the best plan
    _mip_bounds(board, problem, groups, config, executor, left)
    return _certified(board, problem, comb, baselines, ideals_res, graph_id, t0)


def _combinatorial_bound(board: _Board, problem: PartitionProblem, groups) -> Bound:
    comb = combinatorial_lower_bound(problem, groups)
    board.runs.append(MethodRun(comb.method, "lower", comb.status, comb.seconds, comb.value, dict(comb.detail)))
    if comb.status is SolveStatus.INFEASIBLE:
        raise InfeasibleError(f"graph {problem.name!r} does not fit in {problem.k} stages of memory cap "
                              f"{problem.mem_cap:g}: total size {float(problem.m.sum()):g}")
    board.offer_bound(comb)
    return comb


def _run_baselines(board: _Board, problem: PartitionProblem, slicer: OrderSlicer, config: SolveConfig) -> list:
    ts = time.perf_counter()
    baselines = all_baselines(problem, problem.k, slicer=slicer, expert_path=config.expert_path)
    per_baseline = (time.perf_counter() - ts) / max(len(baselines), 1)
    for b in baselines:
        board.runs.append(MethodRun(b.method, "baseline",
                                    SolveStatus.FEASIBLE if b.assignment is not None else SolveStatus.INFEASIBLE,
                                    per_baseline, b.bottleneck, {"message": b.message} if b.message else {}))
    return baselines


def _order_dp(board: _Board, slicer: OrderSlicer, k: int):
    ts = time.perf_counter()
    sliced = slicer.slice(slicer.default_order, k)
    board.runs.append(MethodRun("order_dp", "upper", SolveStatus.FEASIBLE if math.isfinite(sliced.bottleneck)
                                else SolveStatus.INFEASIBLE, time.perf_counter() - ts, sliced.bottleneck,
                                {"order": "graph topological order"}))
    if math.isfinite(sliced.bottleneck):
        board.offer_plan(slicer.node_assignment(sliced.group_stage), "order_dp")
    return sliced


def _race_dp_and_search(board: _Board, problem: PartitionProblem, config: SolveConfig, executor: Any, sliced,
                        left) -> IdealsResult | None:
    """The ideals DP and the BRKGA order search (on Dask workers when given); with a parallel executor the MIP
    bounds run in this thread meanwhile. Returns the DP's result, if it ran."""
    k = problem.k
    futures = []
    if not board.closed():
        futures.append(("ideals_dp", executor.submit(_run_ideals, problem, k, board.ub, config.max_ideals,
                                                     max(0.5 * left(), 0.1))))
    ideals_res: IdealsResult | None = None
    if futures and (not runs_in_parallel(executor) or _done_within(futures[-1][1], min(5.0, 0.1 * left()))):
        # the DP usually settles the instance in a few seconds: wait for it before spending the rest
        ideals_res = futures.pop()[1].result()
        _record_ideals(board, ideals_res)
    if not board.closed():
        share = 0.35 if config.lower_bounds else 0.9
        budget = max(share * left(), 0.2)
        initial = (sliced.order,) if math.isfinite(sliced.bottleneck) else ()
        for i in range(max(config.restarts, 1) if runs_in_parallel(executor) else 1):
            futures.append((f"brkga[{config.seed + i}]",
                            executor.submit(_run_search, problem, k, config.seed + i, budget, board.lb, initial)))
    bound_now: Bound | None = None
    if runs_in_parallel(executor) and config.lower_bounds and not board.closed():
        # the bounds run in this thread meanwhile; they fan their MIPs out over the same executor
        bound_now = best_lower_bound(problem, board.ub, max(0.45 * left(), 0.5), executor)
    for name, fut in futures:
        res = fut.result()
        if isinstance(res, IdealsResult):
            ideals_res = res
            _record_ideals(board, res)
        else:
            board.runs.append(MethodRun(name, "upper", res.status, res.seconds, res.bottleneck,
                                        {"evaluations": res.evaluations, "generations": res.generations,
                                         "seed": res.seed}))
            board.offer_plan(res.assignment, "brkga")
    if bound_now is not None:
        _record_lower(board, bound_now)
    return ideals_res


def _mip_bounds(board: _Board, problem: PartitionProblem, groups, config: SolveConfig, executor: Any, left) -> None:
    if config.lower_bounds and not board.closed() and groups.count <= config.exact_mip_max_groups and left() > 0.5:
        assignment, bound, status = solve_exact_mip(problem, 0.5 * left(), upper_bound=board.ub * (1 + COST_RTOL))
        board.runs.append(MethodRun("mip_direct", "exact", status, bound.seconds, bound.value, dict(bound.detail)))
        board.offer_bound(bound)
        board.offer_plan(assignment, "mip_direct")
    if config.lower_bounds and not board.closed() and left() > 0.3:
        _record_lower(board, best_lower_bound(problem, board.ub, left() - 0.1, executor))


def _certified(board: _Board, problem: PartitionProblem, comb: Bound, baselines: list,
               ideals_res: IdealsResult | None, graph_id: str | None, t0: float) -> PartitionResult:
    """The best plan with its bound (baselines offered last, so that on a tie the plan is credited to the method
    that optimised it)."""
    for b in baselines:
        board.offer_plan(b.assignment, b.method)
    if board.plan is None:
        raise InfeasibleError(f"no plan of graph {problem.name!r} into {problem.k} stages fits the memory cap "
                              f"{problem.mem_cap:g}" + (" (proven)" if ideals_res is not None and
                                                        ideals_res.status is SolveStatus.OPTIMAL else
                                                        " (none found within the time limit)"))
    bound = board.bound or comb
    if bound.value > board.ub * (1 + PROVEN_RTOL):
        raise AssertionError(f"lower bound {bound.value} from {bound.method} exceeds the plan's {board.ub}")
    if bound.value > board.ub:  # the same optimum summed in another order: the bound cannot exceed a plan
        bound = replace(bound, value=board.ub)
    return PartitionResult(problem.name, graph_id, problem.k, problem.mem_cap, board.plan, bound, tuple(board.runs),
                           time.perf_counter() - t0, tuple(board.trace))


def _done_within(future, seconds: float) -> bool:
    try:
        future.result(timeout=max(seconds, 0.0))
        return True
    except Exception:  # concurrent.futures / dask TimeoutError (an error inside the task is re-raised later)
        return False


def _record_ideals(board: _Board, res: IdealsResult) -> None:
    value = float(res.best[-1]) if res.status is SolveStatus.OPTIMAL else None
    board.runs.append(MethodRun("ideals_dp", "exact", res.status, res.seconds, value,
                                {"ideals": res.ideals, **({"message": res.message} if res.message else {})}))
    if res.status is SolveStatus.OPTIMAL and math.isfinite(res.best[-1]):
        board.offer_plan(res.assignment, "ideals_dp")
        # the DP is exact over every plan with bottleneck <= the upper bound it was given, so its value is proven
        board.offer_bound(Bound(float(res.best[-1]), "ideals_dp", SolveStatus.OPTIMAL, res.seconds,
                                {"ideals": res.ideals}))


def _record_lower(board: _Board, bound: Bound) -> None:
    board.runs.append(MethodRun(bound.method if bound.method else "mip", "lower", bound.status, bound.seconds,
                                bound.value, dict(bound.detail)))
    board.offer_bound(bound)
    if bound.improved is not None:
        board.offer_plan(np.asarray(bound.improved.assignment, dtype=np.int64), bound.improved.method)


def partition_many(problem: PartitionProblem, ks: list[int], config: SolveConfig = SolveConfig(),
                   executor: Any = SERIAL, graph_id: str | None = None) -> list[PartitionResult]:
    """One result per k; the k values run as separate tasks on ``executor`` (each with the full time budget)."""
    futures = [executor.submit(partition, problem.with_k(k), config, SERIAL, graph_id) for k in ks]
    return [f.result() for f in futures]


def default_expert_path(graph_path: str | Path) -> str | None:
    """msr-fiddle layout: ``<root>/human-experts/<stem>_expert.json`` next to ``<root>/LayerGraphs/<stem>.json``."""
    p = Path(graph_path)
    cand = p.parent.parent / "human-experts" / f"{p.stem}_expert.json"
    return str(cand) if cand.exists() else None
