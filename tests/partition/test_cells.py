"""The cell-graph generator: valid, deterministic, wide, with profile-drawn costs; and every bound and plan of the
solver stays sound on small branchy (cell-like) DAGs, checked against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.adapters import problem_from_graph
from forgeflow.tasks.partition.bounds import best_lower_bound, cheapest_stage_bound, combinatorial_lower_bound
from forgeflow.tasks.partition.cells import FAMILIES, CellGraphSpec, cell_graph, op_profiles
from forgeflow.tasks.partition.cost import validate_plan
from forgeflow.tasks.partition.solve import SolveConfig, partition
from tests.partition.dags import branchy_problems, brute_force_optimum

TOL = 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_a_valid_wide_graph(family):
    g = cell_graph(CellGraphSpec(family, 4, width=32, resolution=16, heads=4, seed=3))
    assert len(g.nodes) > 60 and all(n.latency_ms > 0 for n in g.nodes if n.op != "input")
    # wide: some node feeds >= 3 consumers (parallel branches) and some node joins >= 2 inputs
    outdeg: dict[str, int] = {}
    indeg: dict[str, int] = {}
    for e in g.edges:
        outdeg[e.src] = outdeg.get(e.src, 0) + 1
        indeg[e.dst] = indeg.get(e.dst, 0) + 1
    assert max(outdeg.values()) >= 3 and max(indeg.values()) >= 2
    cells = g.meta["cells"]
    assert sorted(v for c in cells for v in c) == sorted(n.id for n in g.nodes)  # cells partition the nodes
    # every edge is priced on the link: bytes of the tensor / bandwidth + latency
    e = g.edges[len(g.edges) // 2]
    assert e.cost_ms == pytest.approx(e.bytes / 25e9 * 1e3 + 0.01)
    p = problem_from_graph(g, k=4)
    assert p.n == len(g.nodes)


def test_generation_is_deterministic_and_grows_with_cells():
    a = cell_graph(CellGraphSpec("nasnet", 3, width=16, resolution=16, seed=1))
    b = cell_graph(CellGraphSpec("nasnet", 3, width=16, resolution=16, seed=1))
    c = cell_graph(CellGraphSpec("nasnet", 3, width=16, resolution=16, seed=2))
    assert a.graph_id == b.graph_id and a.graph_id != c.graph_id
    assert len(cell_graph(CellGraphSpec("nasnet", 6, width=16, resolution=16, seed=1)).nodes) > len(a.nodes)


def test_nasnet_cells_take_the_two_previous_cells_as_inputs():
    g = cell_graph(CellGraphSpec("nasnet", 4, width=16, resolution=16, seed=0))
    by_id = {n.id: n for n in g.nodes}
    preds = {}
    for e in g.edges:
        preds.setdefault(e.dst, []).append(e.src)
    # cell2's first preprocessing reads cell0's output (the cross-cell skip), its second reads cell1's
    pre0 = next(n for n in by_id if n.startswith("cell2") and n.endswith("pre0_relu"))
    pre1 = next(n for n in by_id if n.startswith("cell2") and n.endswith("pre1_relu"))
    assert preds[pre0][0].startswith("cell0") and preds[pre1][0].startswith("cell1")


def test_costs_come_from_the_measured_profiles():
    prof = op_profiles()
    assert {"conv", "dwconv", "bn", "relu", "linear", "matmul", "softmax"} <= set(prof)
    g = cell_graph(CellGraphSpec("ptransformer", 2, width=256, resolution=196, heads=4, seed=0, jitter=0.0))
    fc1 = next(n for n in g.nodes if n.id.endswith("fc1"))
    # with no jitter the rate is the median measured ms per FLOP of the linear samples nearest in FLOPs
    rates = prof["linear"][:, 2] / prof["linear"][:, 0]
    assert rates.min() <= fc1.latency_ms / fc1.flops <= rates.max()


@pytest.mark.parametrize("bad", [dict(family="resnet"), dict(cells=0), dict(link="carrier-pigeon")])
def test_bad_specs_are_named(bad):
    spec = dict(family="nasnet", cells=2) | bad
    with pytest.raises(Exception) as info:
        cell_graph(CellGraphSpec(**spec))
    assert isinstance(info.value, InvalidGraphError) or "link" in str(info.value)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branchy_problems())
def test_bounds_and_plans_are_sound_on_branchy_dags(problem):
    best, _ = brute_force_optimum(problem)
    assert combinatorial_lower_bound(problem).value <= best + TOL
    assert cheapest_stage_bound(problem, time_limit=10).value <= best + TOL
    b = best_lower_bound(problem, upper_bound=best * 1.2, time_limit=10)
    assert b.value <= best + TOL
    if b.improved is not None:
        assert validate_plan(problem, np.array(b.improved.assignment)).bottleneck >= best - TOL
    res = partition(problem, SolveConfig(time_limit=10, restarts=1))
    assert validate_plan(problem, np.array(res.plan.assignment)).bottleneck == pytest.approx(res.bottleneck)
    assert res.lower_bound.value <= best + TOL <= res.bottleneck + 2 * TOL
    assert math.isfinite(res.ratio) or best == 0
