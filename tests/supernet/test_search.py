from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from forgeflow.tasks.supernet.evolution import EvolutionarySearch
from forgeflow.tasks.supernet.objectives import BudgetExceededError, CountedEvaluator, TableObjective
from forgeflow.tasks.supernet.pareto import hypervolume_2d
from forgeflow.tasks.supernet.search import SearchStatus, random_search, run_search
from forgeflow.tasks.supernet.space import ElasticSpace, InvalidArchitectureError, NB201Space


def synthetic_nb201(seed=0):
    """A NAS-Bench-201-shaped table with an additive latency and a pairwise-interacting accuracy (no real data)."""
    space = NB201Space()
    cells = space.enumerate()
    rng = np.random.default_rng(seed)
    op_lat = rng.uniform(0.1, 2.0, size=(6, 5))
    lat = 3.0 + op_lat[np.arange(6), cells].sum(1) + rng.normal(0, 0.05, len(cells))
    main = rng.normal(0, 2.0, size=(6, 5))
    pair = rng.normal(0, 0.7, size=(6, 6, 5, 5))
    acc = 70 + main[np.arange(6), cells].sum(1)
    for i in range(6):
        for j in range(i + 1, 6):
            acc += pair[i, j, cells[:, i], cells[:, j]]
    acc += rng.normal(0, 0.3, len(cells))
    archs = [space.to_string(c) for c in cells]
    return space, TableObjective(space, archs, acc, lat)


def hv_ratio(table, res):
    a, l = table.accuracy, table.latency_ms
    norm = lambda acc, lat: np.stack([(lat - l.min()) / np.ptp(l), (a.max() - acc) / np.ptp(a)], 1)
    exact = hypervolume_2d(norm(a, l), [1, 1])
    f = res.front_index
    return hypervolume_2d(norm(res.accuracy[f], res.latency_ms[f]), [1, 1]) / exact


def test_nb201_strings_round_trip_and_reject_garbage():
    space = NB201Space()
    text = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert space.to_string(space.from_string(text)) == text
    assert space.from_string(text).tolist() == [3, 1, 2, 0, 4, 3]
    assert len(space.enumerate()) == 15625
    with pytest.raises(InvalidArchitectureError):
        space.from_string("|conv~0|+|")


def test_search_beats_random_and_respects_budget():
    space, table = synthetic_nb201()
    ours, rnd = [], []
    for seed in range(3):
        ev = CountedEvaluator(table, 200)
        res = run_search(space, ev.evaluate, 200, seed=seed)
        assert res.evaluations == ev.evaluations == 200
        assert len({space.key(g) for g in res.genes}) == 200
        assert res.status is SearchStatus.BUDGET_SPENT
        ours.append(hv_ratio(table, res))
        rnd.append(hv_ratio(table, random_search(space, CountedEvaluator(table, 200).evaluate, 200, seed=seed)))
    assert np.mean(ours) > np.mean(rnd) + 0.01
    assert np.mean(ours) > 0.97 and min(ours) > 0.94


def test_search_is_deterministic_and_executor_independent():
    space, table = synthetic_nb201(1)
    a = run_search(space, table.evaluate, 80, seed=7)
    b = run_search(space, table.evaluate, 80, seed=7)
    with ThreadPoolExecutor(2) as pool:
        c = run_search(space, table.evaluate, 80, seed=7, executor=pool, chunk_size=3)
    assert np.array_equal(a.genes, b.genes) and np.array_equal(a.genes, c.genes)
    d = run_search(space, table.evaluate, 80, seed=8)
    assert not np.array_equal(a.genes, d.genes)


def test_latency_limit_finds_the_best_feasible_cell():
    space, table = synthetic_nb201(2)
    limit = float(np.quantile(table.latency_ms, 0.3))
    res = run_search(space, table.evaluate, 300, seed=0, latency_limit_ms=limit)
    best = res.best_under(limit)
    true_best = table.accuracy[table.latency_ms <= limit].max()
    assert best is not None and res.latency_ms[best] <= limit
    assert true_best - res.accuracy[best] < 0.5


def test_counted_evaluator_counts_distinct_and_refuses_overdraft():
    space, table = synthetic_nb201()
    ev = CountedEvaluator(table, 3)
    cells = space.enumerate()[:4]
    ev.evaluate(cells[:2])
    ev.evaluate(cells[:2])  # repeats are free
    assert ev.evaluations == 2
    with pytest.raises(BudgetExceededError):
        ev.evaluate(cells[2:4])
    assert ev.evaluations == 2
    ev.evaluate(cells[2:3])
    assert ev.remaining == 0


def test_ask_tell_never_repeats_and_exhausts_a_small_space():
    from forgeflow.tasks.supernet.space import CategoricalSpace

    space = CategoricalSpace("tiny", (3, 3, 2))
    machine = EvolutionarySearch(space, seed=0)
    seen = set()
    while not machine.exhausted:
        batch = machine.ask()
        assert len(batch) > 0
        for row in batch:
            assert space.key(row) not in seen
            seen.add(space.key(row))
        machine.tell(batch, np.stack([-batch.sum(1).astype(float), batch[:, 0] * 1.0 + 1], 1))
    assert len(seen) == space.size == 18
    assert len(machine.ask()) == 0


def test_elastic_space_search_uses_offspring_pool():
    space = ElasticSpace()
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, space.n_genes)

    def evaluate(genes):
        g = space.canonical(genes).astype(float)
        lat = 1 + g @ w
        acc = 60 + 10 * np.tanh(g @ w / 4) - 0.1 * (g[:, 0] - 1) ** 2
        return np.stack([acc, lat], 1)

    res = run_search(space, evaluate, 60, seed=0)
    assert res.evaluations == 60 and len({space.key(g) for g in res.genes}) == 60
    assert len(res.front_index) >= 3
    # canonical form: inactive block slots are zeroed
    for g in res.genes:
        assert np.array_equal(space.canonical(g), g)


def test_nb201_alive_ops_drop_edges_off_every_input_output_path():
    space = NB201Space()
    cases = {
        # node 1 has no input: its skip to the output is inert; the cell computes conv3x3(skip(x))
        "|none~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|": [0, 1, 0, 0, 0, 3],
        # no path reaches the output: nothing is alive
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|none~1|none~2|": [0, 0, 0, 0, 0, 0],
        # node 2 feeds nothing: the edges into it are inert
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|": [3, 0, 0, 1, 2, 0],
        # every edge on a path
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|": [3, 1, 2, 0, 4, 3],
    }
    genes = np.stack([space.from_string(s) for s in cases])
    assert space.alive_ops(genes).tolist() == list(cases.values())


def test_nb201_model_inputs_describe_the_function_computed():
    space = NB201Space()
    # every edge alive: ops, then alive ops per op (skip, 1x1, 3x3, pool), per path (0->3 cut; 0->1->3: 3x3+pool;
    # 0->2->3: skip+3x3; 0->1->2->3: 3x3+1x1+3x3) 1 + convs, then most/fewest convs on a live path (+1), live paths,
    # most 3x3 on a live path (+1) and conv weights 9 + 1 + 9, then the cell's own conv weights (19: it is the only
    # member of its expression class, so its own representative)
    cell = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    assert space.model_inputs(cell).tolist() == [[3, 1, 2, 0, 4, 3, 1, 1, 2, 1, 0, 2, 2, 4, 4, 2, 3, 3, 19, 19]]
    # mirror images (nodes 1 and 2 swapped, no edge between them) and a different op on an inert edge compute the
    # same function: same inputs; a different alive op does not
    a = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    mirror = space.from_string("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|")
    inert = space.from_string("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|none~2|")
    other = space.from_string("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    x = space.model_inputs(np.stack([a, mirror, inert, other]))
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])
    assert not np.array_equal(x[0], x[3])
    assert space.categorical_inputs == 6


def test_nb201_expression_collapses_skip_chains_and_keeps_what_differs():
    space = NB201Space()
    # node 1 = conv3(x); node 2 = x (its one input is a skip); output = conv1(node 1) + node 2 = x + conv1(conv3(x))
    chain = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|")
    direct = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    residual = ("x", ("nor_conv_1x1", (("nor_conv_3x3", ("x",)),)))
    assert space.expression(chain) == space.expression(direct) == residual
    # the same ops without the identity term, or with the convolutions in the other order, are other functions
    plain = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|")
    swapped = space.from_string("|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    assert space.expression(plain) == (("nor_conv_1x1", (("nor_conv_3x3", ("x",)),)),)
    assert len({space.expression(g) for g in (chain, plain, swapped)}) == 3
    # two skips into the output from x count twice: x + x is not x
    double = space.from_string("|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|")
    assert space.expression(double) == ("x", "x")
    # the trees see both cells through one representative; the last column is each cell's own conv weight count
    x = space.model_inputs(np.stack([chain, direct, plain]))
    assert np.array_equal(x[0], x[1]) and not np.array_equal(x[0], x[2])
    assert x[:, -1].tolist() == [10, 10, 10]


def test_level_picks_round_robin_over_thresholds_of_the_second_objective():
    from forgeflow.tasks.supernet.evolution import _level_picks

    # minimised objectives [-accuracy, latency]: A(90 %, 1 ms), B(95 %, 5 ms), C(80 %, 0.5 ms), D(99 %, 10 ms)
    mean = np.array([[-90.0, 1.0], [-95.0, 5.0], [-80.0, 0.5], [-99.0, 10.0]])
    # 2 levels at the median (3 ms) and the maximum (10 ms): A is the best under 3 ms, D under 10 ms, then C, then B
    assert _level_picks(mean, 3, 2, None).tolist() == [0, 3, 2]
    assert _level_picks(mean, 4, 2, None).tolist() == [0, 3, 2, 1]
    # a 5 ms limit alternates with the levels (3, 5, 10, 5 ms): A under 3, B under 5, D under 10, then C under 5
    assert _level_picks(mean, 4, 2, 5.0).tolist() == [0, 1, 3, 2]
    assert _level_picks(mean, 2, 2, 5.0).tolist() == [0, 1]
