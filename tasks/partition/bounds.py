"""Proven lower bounds on the optimal bottleneck (ms) of a pipeline-partitioning instance.

Three families, cheapest first; ``best_lower_bound`` runs them in that order and stops as soon as the bound meets
the best known plan:

* ``combinatorial_lower_bound``: total work / k and the heaviest must-share-a-stage group.
* ``cheapest_stage_bound``: for each group g, the cheapest *convex* stage that contains g, transfers included
  (a small HiGHS MIP per group, see ``mip.build_cheapest_stage_model``). Some stage of every plan holds g, so the
  max over g is a lower bound for every k. With k larger than the pipeline needs, the optimum is exactly such an
  unavoidable stage (a heavy class plus the transfers it cannot avoid), and this bound closes those instances.
* ``bottleneck_guess_bound``: bottleneck guessing on the k-stage model. With B capped at a guess, the model becomes
  "can the DAG be split into <= k stages each costing <= cap"; the cap also fixes many stage variables up front
  (a group whose ancestors' work exceeds (s+1) * cap cannot sit in stage <= s). If HiGHS proves the capped model
  infeasible, cap is a lower bound; otherwise its proven dual bound (at most cap) is.

Every value reported is a proven bound: HiGHS's dual bound or an infeasibility proof, shaved by a relative 1e-7 and
an absolute 1e-6 ms for solver tolerances.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from tasks.dask_fanout import SERIAL, runs_in_parallel
from tasks.partition.colocation import Groups, must_share_groups
from tasks.partition.mip import (build_cheapest_stage_model, build_stage_model, shave_for_tolerance, solve_model,
                                  stages_from_values)
from tasks.partition.problem import PartitionProblem
from tasks.partition.status import Bound, SolveStatus

#: a lower bound within this relative distance of the best plan proves that plan optimal
OPTIMALITY_TOLERANCE = 1e-4
#: the guess used to prove a plan optimal sits this far (relative) below its bottleneck
CLOSING_GAP = 1e-5


def combinatorial_lower_bound(problem: PartitionProblem, groups: Groups | None = None) -> Bound:
    """max(total work / k, heaviest must-share-a-stage group's work). Memory: if one group exceeds the cap or the
    total size exceeds k caps, no plan exists: status INFEASIBLE, value +inf, ``detail["reason"]`` says why."""
    t0 = time.perf_counter()
    groups = groups or must_share_groups(problem)
    total_over_k = float(problem.w.sum()) / problem.k
    heaviest = float(groups.work.max()) if groups.count else 0.0
    value = max(total_over_k, heaviest)
    detail: dict[str, Any] = {"total_over_k": total_over_k, "heaviest_group": heaviest}
    status = SolveStatus.OPTIMAL
    if problem.mem_cap is not None:
        cap = problem.mem_cap * (1 + 1e-12)
        biggest = int(np.argmax(groups.size)) if groups.count else 0
        if groups.count and groups.size[biggest] > cap:
            # classes on a cycle of the class graph must share a stage; together they may not fit
            value, status = math.inf, SolveStatus.INFEASIBLE
            ids = [problem.node_ids[v] for v in groups.members[biggest]]
            detail["reason"] = (f"{len(ids)} nodes that must share a stage (co-location classes closed under "
                                f"precedence) have size {groups.size[biggest]:g} > memory cap {problem.mem_cap:g}; "
                                f"first ids {ids[:5]}")
        elif float(problem.m.sum()) > problem.k * cap:
            value, status = math.inf, SolveStatus.INFEASIBLE
            detail["reason"] = f"total size {float(problem.m.sum()):g} exceeds k * memory cap"
    return Bound(value, "combinatorial", status, time.perf_counter() - t0, detail)


def cheapest_stage_bound(problem: PartitionProblem, time_limit: float, *, groups: Groups | None = None,
                         stop_at: float = math.inf) -> Bound:
    """max over groups g of the cheapest convex stage containing g (work + transfers, memory cap respected).

    Groups are visited by decreasing cost of the stage made of g alone, which is an upper bound on g's cheapest
    stage, so the scan stops once that cost is below the bound reached. Stops early once the bound reaches
    ``stop_at``. A solve cut short by the time limit contributes its dual bound (still valid)."""
    t0 = time.perf_counter()
    groups = groups or must_share_groups(problem)
    alone = np.array([groups.stage_cost([g]) for g in range(groups.count)])
    best, best_group, solves = 0.0, None, 0
    complete = True
    for g in np.argsort(-alone, kind="stable"):
        g = int(g)
        if alone[g] <= best or best >= stop_at:
            break
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0.05:
            complete = False
            break
        res = solve_model(build_cheapest_stage_model(groups, g, problem.mem_cap), left)
        solves += 1
        if res.status == SolveStatus.INFEASIBLE:  # g fits in no stage (memory): no plan exists
            return Bound(math.inf, "cheapest_stage", SolveStatus.INFEASIBLE, time.perf_counter() - t0,
                         {"group": [problem.node_ids[v] for v in groups.members[g]], "solves": solves})
        if res.status != SolveStatus.OPTIMAL:
            complete = False
        value = shave_for_tolerance(res.dual_bound) if math.isfinite(res.dual_bound) else 0.0
        if value > best:
            best, best_group = value, g
    detail: dict[str, Any] = {"solves": solves}
    if best_group is not None:
        detail["group"] = [problem.node_ids[v] for v in groups.members[best_group]][:20]
    status = SolveStatus.OPTIMAL if complete or best >= stop_at else SolveStatus.TIME_LIMIT
    return Bound(best, "cheapest_stage", status, time.perf_counter() - t0, detail)


def bottleneck_guess_bound(problem: PartitionProblem, cap: float, time_limit: float, *, floor: float = 0.0,
                           deadline: float | None = None, presolve: bool = True,
                           stop: Callable[[], bool] | None = None) -> tuple[Bound, np.ndarray | None, float]:
    """Solve the k-stage model with B <= cap (and B >= floor, a bound proven elsewhere) for at most
    ``time_limit`` seconds and never past ``deadline`` (``time.time()`` epoch seconds; for solves queued on an
    executor whose start time is unknown).

    Returns (bound, assignment, objective): the proven lower bound (cap if the capped model is infeasible, else
    min(HiGHS's dual bound, cap)), and the best plan the solver found under the cap (node -> stage) with its
    bottleneck, or (None, inf). Module-level and picklable so it can be shipped to a Dask worker.
    ``presolve=False`` switches HiGHS's presolve off: slower on most of the suite, but 3-4x faster on some
    infeasibility proofs (resnet50 operator graph, k=6), so parallel workers race both variants. ``stop`` (polled
    during branch and bound; in-process callers only) ends the solve early with what it has proven."""
    t0 = time.perf_counter()
    if deadline is not None:
        time_limit = min(time_limit, deadline - time.time())
    if floor >= cap or time_limit <= 0.05:
        return (Bound(float(floor), "mip_bottleneck_guess", SolveStatus.NOT_RUN, 0.0, {"cap": float(cap)}), None,
                math.inf)
    groups = must_share_groups(problem)
    sm = build_stage_model(groups, problem.k, bottleneck_cap=cap, bottleneck_floor=floor, mem_cap=problem.mem_cap)
    res = solve_model(sm.model, time_limit, stop=stop, extra_options=None if presolve else {"presolve": "off"})
    detail: dict[str, Any] = dict(res.detail, cap=float(cap), presolve=presolve)
    assignment = None
    if res.status == SolveStatus.INFEASIBLE:
        value, status = shave_for_tolerance(cap), SolveStatus.INFEASIBLE
    else:
        value = shave_for_tolerance(min(res.dual_bound, cap)) if math.isfinite(res.dual_bound) else float(floor)
        value = max(value, shave_for_tolerance(floor))
        status = res.status
        if res.values is not None:
            assignment = stages_from_values(sm, groups, res.values)
            detail["objective"] = res.objective
    return Bound(value, "mip_bottleneck_guess", status, time.perf_counter() - t0, detail), assignment, res.objective


def _guess_result(future, floor: float) -> tuple[Bound, np.ndarray | None, float]:
    """A finished guess; a worker that failed contributes an ERROR record and the floor it started from."""
    try:
        return future.result()
    except Exception as exc:  # a lost Dask worker or a HiGHS failure must not sink the whole bound
        return Bound(float(floor), "mip_bottleneck_guess", SolveStatus.ERROR, 0.0, {"error": repr(exc)}), None, \
            math.inf


def _guess_caps(lower: float, upper: float, count: int) -> list[float]:
    """Up to ``count`` bottleneck guesses strictly between the proven ``lower`` and the best plan ``upper``, the
    most promising first.

    The closing guess sits just below ``upper``: its infeasibility proves the plan optimal. It goes first when the
    gap is within 10 % (a plan from a good search is usually optimal, and the cheap bounds leave a few percent).
    With a wider gap the plan is likely poor, so a guess 2 % above ``lower`` goes first: the model then either
    proves the bound up by 2 % or finds a plan within 2 % of it (HiGHS minimises B under the cap, so a feasible
    guess usually ends optimal). Further guesses for parallel workers are spread geometrically in between.
    """
    if not math.isfinite(upper):  # no plan known: the plain min-B model first, then guesses above the bound
        caps = [math.inf] + ([lower * 1.02, lower * 1.1] if lower > 0 else [])
        return caps[:count]
    closing = upper * (1.0 - CLOSING_GAP)
    if closing <= lower:
        return []
    if lower <= 0.0:  # nothing proven yet (e.g. zero work): close, or halve the gap
        return [closing, upper / 1.1, upper / 2][:count]
    if upper <= lower * 1.02:
        return [closing]
    near = lower * 1.02
    between = [lower * (upper / lower) ** (i / (count - 1)) for i in range(1, count - 1)] if count > 2 else []
    between = sorted({c for c in between if near < c < closing})
    first, second = (closing, near) if upper <= lower * 1.10 else (near, closing)
    return ([first, second] + between)[:count]


def best_lower_bound(problem: PartitionProblem, upper_bound: float | None, time_limit: float,
                     executor: Any = SERIAL) -> Bound:
    """The strongest lower bound on the optimal bottleneck this module can prove within ``time_limit`` seconds.

    ``upper_bound`` is the bottleneck of the best known plan (None or inf if none): it is the target, and it sets
    the guesses of the bottleneck-guessing MIPs. Independent MIP solves are fanned out over ``executor`` (``tasks.dask_fanout``'s
    contract) when it runs in parallel. ``Bound.method`` names the method that proved the returned value;
    ``detail["per_method"]`` lists every method run (value, status, seconds); when a MIP found a plan better than
    ``upper_bound`` it is in ``detail["improved_plan"]`` (stage index per node) with ``detail["improved_bottleneck"]``.
    ``status`` is OPTIMAL when the bound meets the best plan (``upper_bound`` or the improved one) within
    OPTIMALITY_TOLERANCE (relative); INFEASIBLE (value +inf) when no plan exists.
    """
    t0 = time.perf_counter()
    problem.validate()
    ub = math.inf if upper_bound is None or not math.isfinite(upper_bound) else float(upper_bound)
    groups = must_share_groups(problem)
    found: list[Bound] = []
    improved: tuple[float, np.ndarray] | None = None

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    def best() -> Bound:
        return max(found, key=lambda b: (b.value, -b.seconds))

    def reference() -> float:
        return min(ub, improved[0]) if improved is not None else ub

    def done() -> bool:
        b = best().value
        return b >= reference() * (1.0 - CLOSING_GAP) or b == math.inf or left() <= 0.1

    def record(outcome: tuple[Bound, np.ndarray | None, float]) -> None:
        nonlocal improved
        bound, assignment, objective = outcome
        found.append(bound)
        if assignment is not None and objective < reference() * (1 - 1e-9):
            improved = (objective, assignment)

    found.append(combinatorial_lower_bound(problem, groups))
    if not done():
        found.append(cheapest_stage_bound(problem, max(0.2 * left(), min(left(), 5.0)), groups=groups,
                                          stop_at=reference() * (1.0 - CLOSING_GAP)))
    while not done():
        lower, upper = best().value, reference()
        width = 4 if runs_in_parallel(executor) else 1
        caps = _guess_caps(lower, upper, width)
        if not caps:
            break
        if runs_in_parallel(executor):
            jobs = [(cap, True) for cap in caps]
            if len(jobs) == 1:  # a single guess: race HiGHS with and without presolve on two workers
                jobs.append((caps[0], False))
            deadline = time.time() + left() - 0.5
            # the first guess runs in this thread, so a busy executor (e.g. searches queued before us) cannot
            # starve the bound; the others go to the executor and the first conclusive answer wins
            pending = [executor.submit(bottleneck_guess_bound, problem, cap, left(), floor=lower, deadline=deadline,
                                       presolve=pre) for cap, pre in jobs[1:]]
            cap, pre = jobs[0]

            def collect() -> bool:
                """Record the finished executor guesses; True once they settle the question."""
                nonlocal pending
                still = []
                for fut in pending:
                    if fut.done():
                        record(_guess_result(fut, lower))
                    else:
                        still.append(fut)
                pending = still
                return done()

            record(bottleneck_guess_bound(problem, cap, left(), floor=lower, deadline=deadline, presolve=pre,
                                          stop=collect))
            while pending and not collect():
                time.sleep(0.02)
        else:
            # half of what is left per guess, so a failed guess still leaves time for the next, tighter one
            record(bottleneck_guess_bound(problem, caps[0], max(0.5 * left(), min(left(), 5.0)) - 0.1, floor=lower))
        if best().value <= lower and reference() >= upper:
            break  # no progress on either side; another guess in the time left would fare no better

    top = best()
    ref = reference()
    closes = math.isfinite(ref) and top.value >= ref * (1 - OPTIMALITY_TOLERANCE)
    if top.value == math.inf:
        status = SolveStatus.INFEASIBLE
    elif closes:
        status = SolveStatus.OPTIMAL
    elif any(b.status == SolveStatus.TIME_LIMIT for b in found):
        status = SolveStatus.TIME_LIMIT
    else:
        status = SolveStatus.FEASIBLE
    detail: dict[str, Any] = {
        "per_method": [{"method": b.method, "value": b.value, "status": b.status.value, "seconds": b.seconds,
                        **({"cap": b.detail["cap"]} if "cap" in b.detail else {})} for b in found],
        "upper_bound": ub,
        "method_detail": dict(top.detail),
    }
    if improved is not None:
        detail["improved_bottleneck"] = improved[0]
        detail["improved_plan"] = [int(s) for s in improved[1]]
    return Bound(top.value, top.method, status, time.perf_counter() - t0, detail)
