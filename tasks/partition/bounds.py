"""Proven lower bounds on the optimal bottleneck (ms) of a pipeline-partitioning instance.

Three families, cheapest first; ``best_lower_bound`` runs them in that order and stops as soon as the bound meets
the best known plan:

* ``combinatorial_lower_bound``: total work / k, the heaviest must-share-a-stage group, and the transfers every
  stage must pay whatever the branching (``stage_transfer_bound``: each stage without a source receives all inputs
  of its first group, each without a sink ships all outputs of its last group).
* ``cheapest_stage_bound``: for each group g, the cheapest *convex* stage that contains g, transfers included
  (a small HiGHS MIP per group, see ``mip.build_cheapest_stage_model``). Some stage of every plan holds g, so the
  max over g is a lower bound for every k. With k larger than the pipeline needs, the optimum is exactly such an
  unavoidable stage (a heavy class plus the transfers it cannot avoid), and this bound closes those instances.
* ``bottleneck_guess_bound``: bottleneck guessing on the k-stage model. With B capped at a guess, the model becomes
  "can the DAG be split into <= k stages each costing <= cap"; the cap also fixes many stage variables up front
  (a group whose ancestors' work exceeds (s+1) * cap cannot sit in stage <= s). If HiGHS proves the capped model
  infeasible, cap is a lower bound; otherwise its proven dual bound (at most cap) is.

Every value reported is a proven bound: HiGHS's dual bound or an infeasibility proof, shaved by a relative 1e-7 and
an absolute 1e-6 ms for solver tolerances (``tasks.solver.shave_bound``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from forgeflow.tasks.dask_fanout import SERIAL, runs_in_parallel
from forgeflow.tasks.partition.colocation import Groups, must_share_groups
from forgeflow.tasks.partition.mip import build_cheapest_stage_model, build_stage_model, stages_from_values
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import COST_RTOL, MEMORY_RTOL, PROVEN_RTOL, Bound, ImprovedPlan, SolveStatus, is_proven
from forgeflow.tasks.solver import SolverOptions, shave_bound, solve

#: the guess used to prove a plan optimal sits this far (relative) below its bottleneck: well inside PROVEN_RTOL,
#: so that the guess's infeasibility, shaved for solver tolerances, still certifies the plan
CLOSING_GAP = PROVEN_RTOL / 10
#: the share of the time left that one serial bottleneck guess may take
GUESS_SHARE = 1 / 3
#: the first relative step of the guess ladder above the proven bound (see ``_BoundSearch.guesses``)
LADDER_STEP = 0.005


def stage_transfer_bound(groups: Groups, k: int, min_stages: int = 1) -> float:
    """Total work plus the transfers every stage must pay, spread over the stages (survives any branching).

    Take a plan with k' non-empty stages. A stage holding no source group has a first group (in topological order)
    whose predecessors all lie in earlier stages, so it receives every input of that group: at least
    ``inputs[g]`` = the summed transfer cost of the senders feeding g. Likewise a stage holding no sink group has
    a last group whose successors all lie later, so it ships every output of that group that leaves it:
    ``outputs[g]``. Different stages have different first (last) groups, so at least k' - #sources stages pay
    distinct ``inputs`` and k' - #sinks pay distinct ``outputs``; the sum of stage costs is at most k' B. Hence
    B >= min over k' of (W + the k' - #sources smallest inputs + the k' - #sinks smallest outputs) / k', with k'
    from ``min_stages`` (e.g. forced by memory) to k."""
    G = groups.count
    if G == 0:
        return 0.0
    c = groups.problem.c
    inputs = np.zeros(G)
    outputs = np.zeros(G)
    for u, targets in groups.senders:
        outputs[int(groups.group_of[u])] += float(c[u])
        for t in targets:
            inputs[t] += float(c[u])
    has_pred = np.array([bool(p) for p in groups.preds])
    has_succ = np.array([bool(q) for q in groups.succs])
    ins = np.concatenate([[0.0], np.cumsum(np.sort(inputs[has_pred]))])
    outs = np.concatenate([[0.0], np.cumsum(np.sort(outputs[has_succ]))])
    n_src, n_snk = int((~has_pred).sum()), int((~has_succ).sum())
    W = float(groups.work.sum())
    best = math.inf
    for kk in range(max(1, min_stages), max(k, 1) + 1):
        a = min(max(kk - n_src, 0), len(ins) - 1)
        b = min(max(kk - n_snk, 0), len(outs) - 1)
        best = min(best, (W + ins[a] + outs[b]) / kk)
    return float(best) if math.isfinite(best) else 0.0


def combinatorial_lower_bound(problem: PartitionProblem, groups: Groups | None = None) -> Bound:
    """max(total work / k, heaviest must-share-a-stage group's work, ``stage_transfer_bound``). Memory: if one
    group exceeds the cap or the total size exceeds k caps, no plan exists: status INFEASIBLE, value +inf,
    ``detail["reason"]`` says why."""
    t0 = time.perf_counter()
    groups = groups or must_share_groups(problem)
    total_over_k = float(problem.w.sum()) / problem.k
    heaviest = float(groups.work.max()) if groups.count else 0.0
    min_stages = 1
    if problem.mem_cap is not None and problem.mem_cap > 0:
        min_stages = max(1, math.ceil(float(problem.m.sum()) / (problem.mem_cap * (1 + MEMORY_RTOL)) - COST_RTOL))
    transfers = stage_transfer_bound(groups, problem.k, min_stages) if min_stages <= problem.k else math.inf
    value = max(total_over_k, heaviest, transfers if math.isfinite(transfers) else 0.0)
    detail: dict[str, Any] = {"total_over_k": total_over_k, "heaviest_group": heaviest,
                              "stage_transfers": transfers}
    status = SolveStatus.OPTIMAL
    if problem.mem_cap is not None:
        cap = problem.mem_cap * (1 + MEMORY_RTOL)
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
        res = solve(build_cheapest_stage_model(groups, g, problem.mem_cap), SolverOptions(time_limit=left))
        solves += 1
        if res.status == SolveStatus.INFEASIBLE:  # g fits in no stage (memory): no plan exists
            return Bound(math.inf, "cheapest_stage", SolveStatus.INFEASIBLE, time.perf_counter() - t0,
                         {"group": [problem.node_ids[v] for v in groups.members[g]], "solves": solves})
        if res.status != SolveStatus.OPTIMAL:
            complete = False
        value = shave_bound(res.dual_bound) if math.isfinite(res.dual_bound) else 0.0
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
    time_limit -= time.perf_counter() - t0  # building a large model takes time out of the same budget
    if time_limit <= 0.05:
        return (Bound(float(floor), "mip_bottleneck_guess", SolveStatus.NOT_RUN, time.perf_counter() - t0,
                      {"cap": float(cap), "message": "no time left after building the model"}), None, math.inf)
    res = solve(sm.model, SolverOptions(time_limit=time_limit, extra={} if presolve else {"presolve": "off"}),
                stop=stop)
    detail: dict[str, Any] = dict(res.detail, cap=float(cap), presolve=presolve)
    assignment = None
    if res.status == SolveStatus.INFEASIBLE:
        value, status = shave_bound(cap), SolveStatus.INFEASIBLE
    else:
        value = shave_bound(min(res.dual_bound, cap)) if math.isfinite(res.dual_bound) else float(floor)
        value = max(value, shave_bound(floor))
        status = res.status
        if res.solution is not None:
            assignment = stages_from_values(sm, groups, res.solution)
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


def _ladder_caps(lower: float, upper: float, step: float, count: int) -> list[float]:
    """``count`` caps on the ladder above the proven ``lower``: ``lower * (1 + j * step / count)`` for j = 1..count
    (one cap ``lower * (1 + step)`` when serial), never above the closing guess just below the plan ``upper``."""
    closing = upper * (1.0 - CLOSING_GAP)
    if closing <= lower:
        return []
    caps = sorted({min(lower * (1 + step * j / count), closing) for j in range(1, count + 1)})
    return [c for c in caps if c > lower]


class _BoundSearch:
    """State of one ``best_lower_bound`` call: every bound found, the best plan the MIPs handed back, the clock."""

    def __init__(self, problem: PartitionProblem, upper_bound: float | None, time_limit: float) -> None:
        self.t0 = time.perf_counter()
        self.problem = problem
        self.time_limit = time_limit
        self.ub = math.inf if upper_bound is None or not math.isfinite(upper_bound) else float(upper_bound)
        self.groups = must_share_groups(problem)
        self.found: list[Bound] = []
        self.improved: ImprovedPlan | None = None

    def left(self) -> float:
        return self.time_limit - (time.perf_counter() - self.t0)

    def best(self) -> Bound:
        return max(self.found, key=lambda b: (b.value, -b.seconds))

    def reference(self) -> float:
        """The best plan's bottleneck: the one given, or a better one a MIP found."""
        return min(self.ub, self.improved.bottleneck) if self.improved is not None else self.ub

    def done(self) -> bool:
        b = self.best().value
        return b >= self.reference() * (1.0 - CLOSING_GAP) or b == math.inf or self.left() <= 0.1

    def record(self, outcome: tuple[Bound, np.ndarray | None, float]) -> None:
        bound, assignment, objective = outcome
        self.found.append(bound)
        if assignment is not None and objective < self.reference() * (1 - COST_RTOL):
            self.improved = ImprovedPlan(float(objective), tuple(int(s) for s in assignment), "mip_guess")

    # ------------------------------------------------------------------ phases
    def cheap_bounds(self) -> None:
        """Phase 1: the combinatorial bound, then the cheapest convex stage around each heavy group."""
        self.found.append(combinatorial_lower_bound(self.problem, self.groups))
        if not self.done():
            left = self.left()
            self.found.append(cheapest_stage_bound(self.problem, max(0.2 * left, min(left, 5.0)), groups=self.groups,
                                                   stop_at=self.reference() * (1.0 - CLOSING_GAP)))

    def guess_round_serial(self, caps: list[float], lower: float) -> None:
        """One bottleneck guess in this thread, with a third of what is left (a guess that decides nothing leaves
        time for the ladder's smaller steps)."""
        left = self.left()
        self.record(bottleneck_guess_bound(self.problem, caps[0], max(GUESS_SHARE * left, min(left, 5.0)) - 0.1,
                                           floor=lower))

    def guess_round_parallel(self, caps: list[float], lower: float, executor) -> None:
        """Several guesses at once: the first in this thread (so a busy executor cannot starve the bound), the
        others on ``executor``; a single guess races HiGHS with and without presolve. The first conclusive answer
        ends the round."""
        jobs = [(cap, True) for cap in caps]
        if len(jobs) == 1:
            jobs.append((caps[0], False))
        deadline = time.time() + self.left() - 0.5
        pending = [executor.submit(bottleneck_guess_bound, self.problem, cap, self.left(), floor=lower,
                                   deadline=deadline, presolve=pre) for cap, pre in jobs[1:]]

        def collect() -> bool:
            """Record the finished executor guesses; True once they settle the question."""
            nonlocal pending
            still = []
            for fut in pending:
                if fut.done():
                    self.record(_guess_result(fut, lower))
                else:
                    still.append(fut)
            pending = still
            return self.done()

        cap, pre = jobs[0]
        self.record(bottleneck_guess_bound(self.problem, cap, self.left(), floor=lower, deadline=deadline,
                                           presolve=pre, stop=collect))
        while pending and not collect():
            time.sleep(0.02)

    def guesses(self, executor) -> None:
        """Phase 2: bottleneck guesses between the best bound and the best plan until the gap closes or time runs
        out.

        The first round follows ``_guess_caps`` (prove the plan optimal when the gap is small, else probe near the
        bound). Once a round decides nothing (no cap proven infeasible, no better plan), the guesses climb a ladder
        from the proven bound instead (``_ladder_caps``): a cap a small step above it is much easier to refute
        than one just below the plan (measured on wide cell graphs at k = 16: a cap 2.6 % above the bound refuted
        in 0.4 s where the closing guess timed out), every refuted cap lifts the bound and doubles the step, and
        a step that decides nothing is quartered, down to the proven-optimal tolerance."""
        parallel = runs_in_parallel(executor)
        step: float | None = None
        while not self.done():
            lower, upper = self.best().value, self.reference()
            if math.isfinite(upper) and is_proven(upper, lower):
                break  # e.g. the closing guess refuted: its shaved cap already proves the plan optimal
            laddered = step is not None and lower > 0 and math.isfinite(upper)
            caps = (_ladder_caps(lower, upper, step, 4 if parallel else 1) if laddered
                    else _guess_caps(lower, upper, 4 if parallel else 1))
            if not caps:
                break
            if parallel:
                self.guess_round_parallel(caps, lower, executor)
            else:
                self.guess_round_serial(caps, lower)
            progress = self.best().value > lower * (1 + COST_RTOL) or self.reference() < upper
            if not laddered:
                if progress:
                    continue
                if lower <= 0 or not math.isfinite(upper):
                    break  # nothing to climb from: another guess in the time left would fare no better
                step = min(LADDER_STEP, (upper / lower - 1.0) / 2)
            elif self.best().value >= shave_bound(max(caps)) * (1 - COST_RTOL):
                step *= 2  # every cap refuted: take bigger steps
            elif not progress:
                step /= 4
                if step < PROVEN_RTOL:
                    break

    def result(self) -> Bound:
        top = self.best()
        ref = self.reference()
        if top.value == math.inf:
            status = SolveStatus.INFEASIBLE
        elif math.isfinite(ref) and is_proven(ref, top.value):
            status = SolveStatus.OPTIMAL
        elif any(b.status == SolveStatus.TIME_LIMIT for b in self.found):
            status = SolveStatus.TIME_LIMIT
        else:
            status = SolveStatus.FEASIBLE
        detail: dict[str, Any] = {
            "per_method": [{"method": b.method, "value": b.value, "status": b.status.value, "seconds": b.seconds,
                            **({"cap": b.detail["cap"]} if "cap" in b.detail else {})} for b in self.found],
            "upper_bound": self.ub,
            "method_detail": dict(top.detail),
        }
        return Bound(top.value, top.method, status, time.perf_counter() - self.t0, detail, self.improved)


def best_lower_bound(problem: PartitionProblem, upper_bound: float | None, time_limit: float,
                     executor: Any = SERIAL) -> Bound:
    """The strongest lower bound on the optimal bottleneck this module can prove within ``time_limit`` seconds.

    ``upper_bound`` is the bottleneck of the best known plan (None or inf if none): it is the target, and it sets
    the guesses of the bottleneck-guessing MIPs. Independent MIP solves are fanned out over ``executor`` (``tasks.dask_fanout``'s
    contract) when it runs in parallel. ``Bound.method`` names the method that proved the returned value;
    ``detail["per_method"]`` lists every method run (value, status, seconds); when a MIP found a plan better than
    ``upper_bound`` it is ``Bound.improved`` (an ``ImprovedPlan``). ``status`` is OPTIMAL when the bound proves the
    best plan (``upper_bound`` or the improved one) optimal (``is_proven``); INFEASIBLE (value +inf) when no plan
    exists.
    """
    problem.validate()
    search = _BoundSearch(problem, upper_bound, time_limit)
    search.cheap_bounds()
    search.guesses(executor)
    return search.result()
