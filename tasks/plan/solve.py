"""The joint solve: stage placement and bit widths together, within a wall-time budget, with a certified bound.

Order of work (every plan goes through the independent validator, ``JointPlan.checked``, before it counts):

1. baselines, each also a starting point: the best uniform-precision plan at each width (exact partition of the
   graph at that width: DP over ideals + order search of ``tasks.partition``), quantize-then-partition (the bit plan
   minimising total time under the budget, ignoring placement, then the exact partition) and partition-then-quantize
   (the float placement, then the best bits for it under the per-stage memory);
2. alternation from the best plans: best bits for the placement (an exact small MIP), then the exact partition for
   those bits, until neither improves;
2b. the DP over ideals (``tasks.plan.ideal_dp``): the exact per-device partition of every uniform width and of the
   best plans' bits (heterogeneous pipelines: stage s on device s, which the partition seeds only approximate), and
   the budget-dimension DP: a bisection on the bottleneck T, each T a min-sensitivity DP over ideals with
   Lagrangian stage bounds, proves T infeasible (a lower bound) or yields placements that exact bits complete;
3. lower bounds: the exact partition bound of the relaxation where every node takes its fastest option at its
   smallest size and the budget is dropped (its optimum is proven by the DP over ideals or HiGHS), and the budgeted
   work bound (minimum total work within the budget / k, a HiGHS multiple-choice knapsack);
4. the joint HiGHS MIP (``tasks.plan.mip.joint_model``), warm-started with the best plan and capped at its
   bottleneck: it proves optimality, improves the plan, or leaves its dual bound.

The result's ``lower_bound`` is the best of these proven bounds; ``ratio = bottleneck / lower_bound``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from forgeflow.tasks.dask_fanout import SERIAL, fan_out
from forgeflow.tasks.errors import InfeasibleError
from forgeflow.tasks.partition.colocation import must_share_groups
from forgeflow.tasks.partition.incumbent import Incumbent
from forgeflow.tasks.partition.cost import InvalidPlanError
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.result import MethodRun
from forgeflow.tasks.partition.solve import SolveConfig, partition
from forgeflow.tasks.partition.status import Bound
from forgeflow.tasks.solver import PROVEN_RTOL, SolverOptions, SolveStatus, shave_bound, solve
from forgeflow.tasks.plan import ideal_dp
from forgeflow.tasks.plan.instance import PlanInstance
from forgeflow.tasks.plan.mip import allowed_options, joint_model, knapsack_model, placement_bits_model, read_choice
from forgeflow.tasks.plan.result import BaselineOutcome, JointPlan, PlanResult


@dataclass(frozen=True)
class PlanConfig:
    time_limit: float = 60.0
    seed: int = 0
    baselines: bool = True
    mip: bool = True
    alternations: int = 4


class _Board(Incumbent):
    """The joint plan's incumbent: plans are checked by ``JointPlan.checked`` first; every bound offered is also
    recorded as a method run."""

    def __init__(self, inst: PlanInstance) -> None:
        super().__init__()
        self.inst = inst

    def offer(self, a: np.ndarray | None, choice: np.ndarray | None, method: str) -> JointPlan | None:
        if a is None or choice is None:
            return None
        try:
            plan = JointPlan.checked(self.inst, a, choice, method)
        except InvalidPlanError:
            return None
        self.keep(plan)
        return plan

    def offer_bound(self, bound: Bound) -> None:
        self.runs.append(MethodRun(bound.method, "lower", bound.status, bound.seconds, bound.value,
                                   dict(bound.detail)))
        super().offer_bound(bound)


# ---------------------------------------------------------------------------------------------- building blocks
def partition_problem(inst: PlanInstance, choice: np.ndarray) -> PartitionProblem:
    """The plain partitioning instance of one bit assignment (heterogeneous devices: their mean time and largest
    memory; plans are re-checked on the real devices)."""
    rows = np.arange(inst.n)
    w = inst.time[:, rows, choice].mean(axis=0)
    m = inst.size[rows, choice]
    caps = [c for c in inst.mem_caps if c is not None]
    cap = max(caps) if len(caps) == inst.k else None
    b = inst.base
    return PartitionProblem(b.name, b.node_ids, w, m, b.c, b.edges, b.classes, inst.k, cap, b.meta)


def exact_partition(inst: PlanInstance, choice: np.ndarray, time_limit: float, *, bounds: bool = False):
    """(assignment, PartitionResult) of the partition for ``choice``, or (None, None) when no plan fits."""
    from forgeflow.tasks.errors import InvalidGraphError

    try:
        res = partition(partition_problem(inst, choice),
                        SolveConfig(time_limit=max(time_limit, 0.2), lower_bounds=bounds, restarts=1))
    except (InfeasibleError, InvalidGraphError):
        return None, None
    return np.asarray(res.plan.assignment, dtype=np.int64), res


def best_bits_for(inst: PlanInstance, a: np.ndarray, time_limit: float) -> np.ndarray | None:
    """The options minimising the bottleneck of placement ``a`` under memory and budget (None: none fits)."""
    mdl, z, _ = placement_bits_model(inst, a)
    res = solve(mdl, SolverOptions(time_limit=max(time_limit, 0.05)))
    if res.solution is None:
        return None
    return read_choice(inst, z, res.solution)


def fastest_within_budget(inst: PlanInstance, time_limit: float) -> tuple[np.ndarray | None, Bound]:
    """The bit plan with the least total time under the budget (and total memory <= the devices' sum), ignoring
    placement; its proven dual bound / k is a lower bound on the bottleneck."""
    t0 = time.perf_counter()
    caps = [c for c in inst.mem_caps if c is not None]
    cost = inst.time.min(axis=0)
    from forgeflow.tasks.partition.status import MEMORY_RTOL

    mdl, z, const = knapsack_model(inst, cost, total_memory=sum(caps) * (1 + MEMORY_RTOL) if len(caps) == inst.k
                                   else None)
    if not z:
        ok = allowed_options(inst)
        choice = np.array([int(np.flatnonzero(ok[i])[0]) for i in range(inst.n)])
        value = float(cost[np.arange(inst.n), choice].sum())
        return choice, Bound(value / inst.k, "budget_work", SolveStatus.OPTIMAL, time.perf_counter() - t0)
    res = solve(mdl, SolverOptions(time_limit=max(time_limit, 0.05)))
    if res.status == SolveStatus.INFEASIBLE:
        return None, Bound(math.inf, "budget_work", SolveStatus.INFEASIBLE, time.perf_counter() - t0)
    dual = shave_bound(res.dual_bound + const) if math.isfinite(res.dual_bound) else 0.0
    choice = read_choice(inst, z, res.solution) if res.solution is not None else None
    return choice, Bound(dual / inst.k, "budget_work", res.status, time.perf_counter() - t0,
                         {"min_total_work_ms": dual})


def relaxation_bound(inst: PlanInstance, time_limit: float) -> Bound:
    """Every node at its fastest option on the fastest device, at its smallest size, no budget, the largest device
    memory: every joint plan is a plan of this partitioning instance with no larger bottleneck, so the partition's
    proven bound is a bound here."""
    t0 = time.perf_counter()
    ok = allowed_options(inst)
    w = np.where(ok[None], inst.time, np.inf).min(axis=(0, 2))
    m = np.where(ok, inst.size, np.inf).min(axis=1)
    caps = [c for c in inst.mem_caps if c is not None]
    b = inst.base
    prob = PartitionProblem(b.name, b.node_ids, w, m, b.c, b.edges, b.classes, inst.k,
                            max(caps) if len(caps) == inst.k else None, b.meta)
    from forgeflow.tasks.errors import InvalidGraphError

    try:
        res = partition(prob, SolveConfig(time_limit=max(time_limit, 0.2), lower_bounds=True, restarts=1))
    except (InfeasibleError, InvalidGraphError) as exc:
        return Bound(math.inf, "relaxed_partition", SolveStatus.INFEASIBLE, time.perf_counter() - t0,
                     {"reason": str(exc)})
    lb = res.lower_bound
    return Bound(lb.value, "relaxed_partition", lb.status, time.perf_counter() - t0,
                 {"via": lb.method, "relaxed_bottleneck": res.bottleneck})


def assignment_bound(inst: PlanInstance, board: _Board, time_limit: float) -> Bound:
    """Precedence and transfers dropped: every must-share group on any device, options within the budget and each
    device's memory. Its dual bound is a lower bound on the joint optimum (strong on heterogeneous devices, where
    the relaxed partition lets every layer run on the fastest one)."""
    t0 = time.perf_counter()
    jm = joint_model(inst, must_share_groups(inst.base), floor=board.lb, assignment_only=True)
    res = solve(jm.model, SolverOptions(time_limit=max(time_limit, 0.1)))
    if res.status == SolveStatus.INFEASIBLE:
        return Bound(math.inf, "assignment", SolveStatus.INFEASIBLE, time.perf_counter() - t0)
    value = shave_bound(res.dual_bound) if math.isfinite(res.dual_bound) else 0.0
    return Bound(value, "assignment", res.status, time.perf_counter() - t0, dict(res.detail))


def joint_mip(inst: PlanInstance, board: _Board, time_limit: float) -> None:
    t0 = time.perf_counter()
    groups = must_share_groups(inst.base)
    ub = board.ub
    jm = joint_model(inst, groups, cap=ub * (1 + 1e-9) if math.isfinite(ub) else None, floor=board.lb)
    start = None
    if board.plan is not None:
        start = jm.start(inst, np.asarray(board.plan.assignment), np.asarray(board.plan.choice), board.plan.bottleneck)
    res = solve(jm.model, SolverOptions(time_limit=max(time_limit, 0.1)), start=start)
    detail: dict[str, Any] = dict(res.detail, columns=jm.model.num_cols, rows=jm.model.num_rows)
    if res.solution is not None:
        a, choice = jm.read(inst, res.solution)
        board.offer(a, choice, "joint_mip")
    if res.status == SolveStatus.INFEASIBLE and math.isfinite(ub):
        value = shave_bound(ub)  # no plan with bottleneck <= the best plan's: it is optimal
    elif math.isfinite(res.dual_bound):
        value = shave_bound(res.dual_bound)
    else:
        value = board.lb
    detail["objective"] = res.objective if math.isfinite(res.objective) else None
    board.offer_bound(Bound(min(value, board.ub), "joint_mip", res.status, time.perf_counter() - t0, detail))


def _bottleneck(inst: PlanInstance, a: np.ndarray, choice: np.ndarray) -> float:
    try:
        return JointPlan.checked(inst, a, choice, "probe").bottleneck
    except InvalidPlanError:
        return math.inf


def ideal_stage(inst: PlanInstance, board: _Board, baselines: list[BaselineOutcome],
                seeds: list[tuple[np.ndarray, np.ndarray]], deadline: float) -> ideal_dp.PairTable | None:
    """Step 2b (see the module docstring). Returns the pair table for the alternation (None if not built)."""
    if deadline - time.perf_counter() < 0.3:
        return None
    t0 = time.perf_counter()
    ub = board.ub
    if not math.isfinite(ub):  # no plan yet: the slowest options everywhere bound every stage
        ub = float(np.where(inst.valid[None], inst.time, 0).max(axis=2).sum(axis=1).max() + inst.base.c.sum())
    try:
        table = ideal_dp.build_pairs(inst, ub * (1 + 1e-9), deadline=deadline)
    except ideal_dp.TableTooLarge as exc:
        board.runs.append(MethodRun("ideal_dp", "upper", SolveStatus.NOT_RUN, time.perf_counter() - t0, None,
                                    {"reason": str(exc)}))
        for _, a in relaxed_budget_bound(inst, board, deadline)[:4]:
            ch = best_bits_for(inst, a, max(min(2.0, deadline - time.perf_counter()), 0.1))
            if ch is not None and board.offer(a, ch, "budget_dp") is not None:
                seeds.append((a, ch))
        return None
    detail = {"ideals": table.N, "pairs": table.P, "complete": table.complete}
    # exact per-device partitions of the uniform widths (they replace the partition seeds' plans when better)
    for i, bo in enumerate(baselines):
        if not bo.method.startswith("uniform_"):
            continue
        b = 32 if bo.method == "uniform_float" else int(bo.method.split("_")[1].removesuffix("bit"))
        choice = np.zeros(inst.n, dtype=np.int64) if b == 32 else inst.uniform_choice(b)
        if inst.budget is not None and float(inst.sens[np.arange(inst.n), choice].sum()) > inst.budget * (1 + 1e-9):
            continue
        _, a = ideal_dp.exact_partition(table, choice)
        plan = board.offer(a, choice, bo.method) if a is not None else None
        if plan is not None and plan.bottleneck < bo.bottleneck * (1 - 1e-12):
            baselines[i] = BaselineOutcome(bo.method, plan, "")
            seeds.append((np.asarray(plan.assignment), choice))
    for a, ch in list(seeds):
        _, a2 = ideal_dp.exact_partition(table, ch)
        if a2 is not None and board.offer(a2, ch, "ideal_dp") is not None:
            seeds.append((a2, ch))
    board.runs.append(MethodRun("ideal_dp", "upper", SolveStatus.FEASIBLE, time.perf_counter() - t0, board.ub, detail))
    # the budget-dimension DP: bound and placements
    ts = time.perf_counter()
    if board.closed() or deadline - ts < 0.2:
        return table
    bb = ideal_dp.BudgetBound(table)
    lb, chains = ideal_dp.budget_bound(bb, board.lb if table.complete else 0.0, board.ub, deadline=deadline,
                                       rtol=2e-7)
    if table.complete:
        board.offer_bound(Bound(shave_bound(lb), "budget_dp", SolveStatus.FEASIBLE, time.perf_counter() - ts,
                                dict(detail, multipliers=int(bb.A[0][1].size))))
    else:  # too wide for every ideal: the same bound over the lightest groups left out (a relaxation)
        chains = sorted(chains + relaxed_budget_bound(inst, board, deadline), key=lambda c: c[0])
    seen: set[tuple[int, ...]] = set()
    for T, chain in chains:
        if len(seen) >= 4 or board.closed() or time.perf_counter() > deadline:
            break
        a = chain if isinstance(chain, np.ndarray) else table.assignment(chain)
        if tuple(a) in seen:
            continue
        seen.add(tuple(a))
        ch = best_bits_for(inst, a, max(min(2.0, deadline - time.perf_counter()), 0.1))
        if ch is not None and board.offer(a, ch, "budget_dp") is not None:
            seeds.append((a, ch))
    board.runs.append(MethodRun("budget_dp", "upper", SolveStatus.FEASIBLE, time.perf_counter() - ts, board.ub,
                                {"placements": len(seen)}))
    return table


def relaxed_budget_bound(inst: PlanInstance, board: _Board, deadline: float) -> list[tuple[float, np.ndarray]]:
    """The budget-dimension bound on a relaxed table (``ideal_dp.relaxed_pairs``: the lightest groups left out until
    the ideals fit); offers the bound and returns the (T, assignment) placements met at feasible T."""
    ts = time.perf_counter()
    if deadline - ts < 0.3 or board.closed():
        return []
    try:
        rt = ideal_dp.relaxed_pairs(inst, board.ub * (1 + 1e-9), deadline=deadline)
    except ideal_dp.TableTooLarge as exc:
        board.runs.append(MethodRun("budget_dp_relaxed", "lower", SolveStatus.NOT_RUN, time.perf_counter() - ts,
                                    None, {"reason": str(exc)}))
        return []
    bb = ideal_dp.BudgetBound(rt)
    lb, chains = ideal_dp.budget_bound(bb, board.lb, board.ub, deadline=deadline, rtol=2e-7)
    board.offer_bound(Bound(shave_bound(lb), "budget_dp_relaxed", SolveStatus.FEASIBLE, time.perf_counter() - ts,
                            {"ideals": rt.N, "pairs": rt.P, "left_out_groups": int((~rt.kept).sum()),
                             "left_out_nodes": int(rt.dropped.sum())}))
    return [(T, rt.assignment(c)) for T, c in chains]


def check_feasible(inst: PlanInstance) -> None:
    """Raise InfeasibleError (naming the cause) when no plan can exist: a budget below the least sensitive plan,
    a must-share group that fits no device at its smallest widths, or a model larger than all devices together."""
    if inst.budget is not None and inst.min_sensitivity() > inst.budget * (1 + 1e-9):
        raise InfeasibleError(f"instance {inst.name!r}: sensitivity budget {inst.budget:g} is below the least "
                              f"sensitive plan's {inst.min_sensitivity():g}")
    groups = must_share_groups(inst.base)
    ok = allowed_options(inst)
    smallest = np.where(ok, inst.size, np.inf).min(axis=1)
    caps = [c for c in inst.mem_caps if c is not None]
    if len(caps) == inst.k:
        big = max(caps)
        for g in range(groups.count):
            need = float(smallest[list(groups.members[g])].sum())
            if need > big * (1 + 1e-9):
                ids = [inst.raw_ids[i] for i in groups.members[g][:5]]
                raise InfeasibleError(f"instance {inst.name!r}: nodes {ids} must share a stage and need at least "
                                      f"{need:g} bytes at their smallest widths, above the largest device memory "
                                      f"{big:g}")
        if float(smallest.sum()) > sum(caps) * (1 + 1e-9):
            raise InfeasibleError(f"instance {inst.name!r}: the model needs at least {float(smallest.sum()):g} bytes "
                                  f"at its smallest widths, above the devices' total memory {sum(caps):g}")



# ---------------------------------------------------------------------------------------------- the solve
def solve_plan(instance: PlanInstance, time_limit: float = 60.0, *, config: PlanConfig | None = None) -> PlanResult:
    """The best joint plan found within ``time_limit`` seconds and its certificate.

    Raises ``InvalidGraphError`` on a malformed instance and ``InfeasibleError`` when no plan exists (proven: the
    budget is below the least sensitive choice, or a must-share group fits no device) or none was found.
    """
    cfg = replace(config or PlanConfig(), time_limit=float(time_limit))
    t0 = time.perf_counter()
    deadline = t0 + cfg.time_limit
    inst = instance.validate()
    board = _Board(inst)

    def left() -> float:
        return deadline - time.perf_counter()

    check_feasible(inst)
    share = cfg.time_limit
    per_call = max(min(0.06 * share, 8.0), 0.3)
    # 1. baselines (each also a starting point)
    baselines, seeds = run_baselines(inst, board, lambda: min(per_call, max(left() * 0.1, 0.2)))
    # 2b. the DP over ideals: exact per-device partitions, the budget-dimension bound and its placements
    table = ideal_stage(inst, board, baselines, seeds, deadline - 0.55 * share)
    # 2. alternation from the best starting points
    alternate(inst, board, seeds, table, cfg.alternations, left, stop_at=0.45 * share, per_call=per_call)
    # 3. cheap proven bounds, then 4. the joint MIP
    if not board.closed() and left() > 0.5:
        board.offer_bound(relaxation_bound(inst, min(max(0.2 * left(), 0.3), 20.0)))
    if not board.closed() and left() > 0.5:
        b = assignment_bound(inst, board, min(max(0.15 * left(), 0.3), 15.0))
        if b.status is not SolveStatus.INFEASIBLE:
            board.offer_bound(b)
    if cfg.mip and not board.closed() and left() > 0.3:
        joint_mip(inst, board, left() - 0.6)
    return _certified_result(inst, board, baselines, time.perf_counter() - t0)


def run_baselines(inst: PlanInstance, board: _Board, call_limit) -> tuple[list[BaselineOutcome], list]:
    """The baselines a user would try by hand, each also a starting point: uniform precision at every width,
    quantize-then-partition and partition-then-quantize. ``call_limit()`` is the time each solve may take now.
    Returns the outcomes and the (placement, choice) seeds of the feasible ones."""
    baselines: list[BaselineOutcome] = []
    seeds: list[tuple[np.ndarray, np.ndarray]] = []

    def record(name: str, plan: JointPlan | None, why: str, seconds: float, seed=None) -> None:
        baselines.append(BaselineOutcome(name, plan, "" if plan else why))
        board.runs.append(MethodRun(name, "baseline", SolveStatus.FEASIBLE if plan else SolveStatus.INFEASIBLE,
                                    seconds, plan.bottleneck if plan else None))
        if plan:
            seeds.append(seed)

    float_choice = np.zeros(inst.n, dtype=np.int64)
    for b in [32] + inst.widths():
        name = "uniform_float" if b == 32 else f"uniform_{b}bit"
        choice = float_choice if b == 32 else inst.uniform_choice(b)
        sens = float(inst.sens[np.arange(inst.n), choice].sum())
        if inst.budget is not None and sens > inst.budget * (1 + 1e-9):
            baselines.append(BaselineOutcome(name, None, f"uniform {b}-bit sensitivity {sens:g} exceeds the budget"))
            continue
        ts = time.perf_counter()
        a, _ = exact_partition(inst, choice, call_limit())
        plan = board.offer(a, choice, name) if a is not None else None
        record(name, plan, "no placement fits the devices' memory", time.perf_counter() - ts, (a, choice))
    # quantize-then-partition
    ts = time.perf_counter()
    q_choice, work_bound = fastest_within_budget(inst, call_limit())
    if work_bound.status == SolveStatus.INFEASIBLE:
        raise InfeasibleError(f"instance {inst.name!r}: no bit plan within the sensitivity budget "
                              f"{'(none)' if inst.budget is None else format(inst.budget, 'g')} fits the devices' total memory (a proven-infeasible knapsack)")
    board.offer_bound(work_bound)
    plan = a = None
    if q_choice is not None:
        a, _ = exact_partition(inst, q_choice, call_limit())
        plan = board.offer(a, q_choice, "quantize_then_partition") if a is not None else None
    record("quantize_then_partition", plan, "the placement-blind bit plan fits no placement",
           time.perf_counter() - ts, (a, q_choice))
    # partition-then-quantize: the float placement (ignoring memory if float does not fit), then its best bits
    ts = time.perf_counter()
    a_float = next((a for a, ch in seeds if not ch.any()), None)
    note = ""
    if a_float is None:
        unc = replace(inst, mem_caps=tuple(None for _ in inst.mem_caps))
        a_float, _ = exact_partition(unc, float_choice, call_limit())
        note = "float placement ignores memory (float does not fit); "
    plan = ch = None
    if a_float is not None:
        ch = best_bits_for(inst, a_float, call_limit())
        plan = board.offer(a_float, ch, "partition_then_quantize") if ch is not None else None
    record("partition_then_quantize", plan, note + "no bit plan fits the float placement's stages",
           time.perf_counter() - ts, (a_float, ch))
    return baselines, seeds


def alternate(inst: PlanInstance, board: _Board, seeds: list, table, rounds_max: int, left, *, stop_at: float,
              per_call: float) -> None:
    """From the two best seeds: best bits for the placement, then the exact partition for those bits (the DP over
    ideals' ``table`` where it is complete), until neither improves or less than ``stop_at`` seconds are left."""
    ts = time.perf_counter()
    seeds.sort(key=lambda p: JointPlan.checked(inst, p[0], p[1], "seed").bottleneck)
    rounds = 0
    for a, ch in seeds[:2]:
        cur = board.offer(a, ch, "alternation")
        for _ in range(rounds_max):
            if left() < stop_at or board.closed():
                break
            rounds += 1
            ch2 = best_bits_for(inst, a, min(per_call, left() * 0.1))
            p2 = board.offer(a, ch2, "alternation")
            ch3 = ch2 if ch2 is not None else ch
            a2 = None
            if table is not None:
                a2 = ideal_dp.exact_partition(table, ch3)[1]
            if a2 is None or not table.complete:
                a2b, _ = exact_partition(inst, ch3, min(per_call, left() * 0.1))
                if a2 is None or (a2b is not None and _bottleneck(inst, a2b, ch3) < _bottleneck(inst, a2, ch3)):
                    a2 = a2b
            p3 = board.offer(a2, ch3, "alternation") if a2 is not None else None
            best = min((p for p in (p2, p3) if p is not None), key=lambda p: p.bottleneck, default=None)
            if best is None or cur is None or best.bottleneck >= cur.bottleneck * (1 - 1e-9):
                break
            cur = best
            a, ch = np.asarray(best.assignment), np.asarray(best.choice)
    board.runs.append(MethodRun("alternation", "upper", SolveStatus.FEASIBLE, time.perf_counter() - ts, board.ub,
                                {"rounds": rounds}))


def _certified_result(inst: PlanInstance, board: _Board, baselines: list[BaselineOutcome],
                      seconds: float) -> PlanResult:
    """The board's best plan with its best proven bound (checked not to exceed the plan)."""
    if board.plan is None:
        raise InfeasibleError(f"instance {inst.name!r}: no joint plan fits the devices' memory within the budget "
                              f"(none found within the time limit)")
    bound = board.bound or Bound(0.0, "none", SolveStatus.NOT_RUN, 0.0)
    if bound.value > board.ub * (1 + PROVEN_RTOL) + 1e-9:
        raise AssertionError(f"lower bound {bound.value} from {bound.method} exceeds the plan's {board.ub}")
    if bound.value > board.ub:
        bound = replace(bound, value=board.ub)
    meta = {"raw_ids": list(inst.raw_ids), "target": inst.meta.get("target"),
            "sensitivity_source": inst.meta.get("sensitivity_source")}
    return PlanResult(inst.name, inst.k, inst.budget, board.plan, bound, tuple(board.runs), tuple(baselines),
                      seconds, meta)


def _solve_point(instance: PlanInstance, budget: float, time_limit: float) -> PlanResult | str:
    try:
        return solve_plan(instance.with_budget(budget), time_limit)
    except InfeasibleError as exc:
        return str(exc)


def sweep_budgets(instance: PlanInstance, budgets: list[float], time_limit: float,
                  executor: Any = SERIAL) -> list[PlanResult | str]:
    """The bottleneck-vs-sensitivity front: one joint solve per budget, fanned out over ``executor`` (anything with
    ``tasks.dask_fanout``'s contract: a Dask client, a ``concurrent.futures`` executor, ``SERIAL``; None is serial);
    each point keeps its own bound. A budget with no plan gives the reason (a string) instead of a result."""
    return fan_out(SERIAL if executor is None else executor, _solve_point,
                   [(instance, b, time_limit) for b in budgets])
