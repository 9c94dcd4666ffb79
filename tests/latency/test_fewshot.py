"""Few-shot latency prediction on a synthetic latency table whose device-to-device relation is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from forgeflow.tasks.latency.baselines import flops_baseline, macs
from forgeflow.tasks.latency.fewshot import DeviceModel, adapt
from forgeflow.tasks.latency.prior import pretrain
from forgeflow.tasks.latency.search import fewshot_search
from forgeflow.tasks.latency.selection import select_measurements
from forgeflow.tasks.latency.table import LatencyInputError, LatencyTable, Measurements, TableLatency
from forgeflow.tasks.supernet.objectives import BudgetExceededError, CountedEvaluator
from forgeflow.tasks.supernet.space import ElasticSpace, NB201Space


def synthetic_table(seed: int = 0) -> tuple[LatencyTable, np.ndarray]:
    """Every NB201 cell on 6 known devices (per-op costs, per-edge weights, a parallel-convolution discount) and a
    new device whose log latency is 0.6 x device 0's + 0.4 x device 3's (+ 1 % noise)."""
    space = NB201Space()
    rng = np.random.default_rng(seed)
    genes = np.array(list(itertools.product(range(5), repeat=6)), dtype=np.int64)
    conv = (genes == 2) | (genes == 3)
    lat = {}
    for k in range(6):
        cost = np.array([0.0, 0.05, 1.0, 3.0, 0.4]) * rng.uniform(0.5, 2.0, 5)
        edge_w = rng.uniform(0.8, 1.2, 6)
        par = rng.uniform(0.0, 0.8)
        lat[f"dev{k}"] = 1.0 + (cost[genes] * edge_w).sum(axis=1) - par * (conv[:, 0] & conv[:, 1])
    new = np.exp(0.6 * np.log(lat["dev0"]) + 0.4 * np.log(lat["dev3"]) + rng.normal(0, 0.01, len(genes))) * 1.7
    table = LatencyTable(space, [space.to_string(g) for g in genes], genes, {**lat, "new": new})
    return table, new


@pytest.fixture(scope="module")
def fitted():
    table, truth = synthetic_table()
    prior = pretrain(table, exclude="new")
    return table, truth, prior


def test_recovers_a_known_device_relation_from_20_measurements(fitted):
    table, truth, prior = fitted
    assert "new" not in prior.devices and len(prior.devices) == 6
    rows = select_measurements(prior, table.genes, 20, seed=0)
    assert len(set(rows.tolist())) == 20
    model = adapt(prior, Measurements(table.genes[rows], truth[rows]))
    pred = model.predict(table.genes)
    rho = spearmanr(pred.latency_ms, truth)[0]
    flops = spearmanr(flops_baseline(table.space, table.genes, table.genes[rows], truth[rows]), truth)[0]
    assert rho >= 0.97, rho
    assert rho > flops + 0.02
    # the latency scale is recovered too, not only the ranking
    assert np.median(np.abs(np.log(pred.latency_ms / truth))) < 0.1
    # uncertainty is reported and means something: most cells lie in their 90 % interval, and it is not so wide
    # that it says nothing (the latencies span a factor of ~10)
    inside = np.mean((truth >= pred.lower) & (truth <= pred.upper))
    assert 0.6 <= inside <= 1.0, inside
    assert np.all(np.isfinite(pred.log_std)) and 0 < np.median(pred.log_std) < 0.3


def test_more_measurements_do_not_hurt_and_model_round_trips(fitted):
    table, truth, prior = fitted
    rho = {}
    for n in (5, 40):
        rows = np.random.default_rng(1).choice(len(truth), n, replace=False)
        model = adapt(prior, Measurements(table.genes[rows], truth[rows]))
        rho[n] = spearmanr(model.predict(table.genes).latency_ms, truth)[0]
    assert rho[40] >= rho[5] - 0.005
    again = DeviceModel.from_arrays(table.space, prior.devices, model.to_arrays())
    sample = table.genes[:500]
    np.testing.assert_allclose(again.predict(sample).latency_ms, model.predict(sample).latency_ms, rtol=1e-9)


def test_counted_evaluator_refuses_measurement_n_plus_one(fitted):
    table, truth, prior = fitted
    ev = CountedEvaluator(TableLatency(table, "new"), 20)
    first = ev.evaluate(table.genes[:20])
    np.testing.assert_allclose(first, truth[:20])
    ev.evaluate(table.genes[:5])  # repeats of measured cells cost nothing
    with pytest.raises(BudgetExceededError):
        ev.evaluate(table.genes[20:21])
    assert ev.evaluations == 20


def test_search_spends_at_most_n_latency_measurements(fitted):
    table, truth, prior = fitted
    acc = -np.abs(macs(table.space, table.genes) / 1e7 - 30.0) + np.random.default_rng(0).normal(0, 0.5, len(truth))
    lat_ev = CountedEvaluator(TableLatency(table, "new"), 12)
    res = fewshot_search(table.space, lambda g: acc[table.rows(g)], lat_ev, prior, 120, seed=0,
                         candidates=table.genes)
    assert res.latency_measurements == lat_ev.evaluations == 12
    with pytest.raises(BudgetExceededError):
        lat_ev.evaluate(table.genes[~np.isin(np.arange(len(truth)), table.rows(res.model.genes))][:1])
    assert res.search.evaluations == 120
    assert 0 < len(res.front_index) <= 120
    # the front is non-dominated under the latencies the search reports
    f = res.front_index
    a, lat = res.search.accuracy[f], res.search.latency_ms[f]
    assert not np.any((a[None, :] >= a[:, None]) & (lat[None, :] < lat[:, None]) & (a[None, :] > a[:, None]))


def test_bad_input_gets_one_clear_error(fitted):
    table, truth, prior = fitted
    with pytest.raises(LatencyInputError, match="unknown device 'nope'"):
        TableLatency(table, "nope")
    with pytest.raises(LatencyInputError, match="too few measurements"):
        adapt(prior, Measurements(table.genes[:2], truth[:2]))
    with pytest.raises(LatencyInputError, match="2 architectures but 3 latencies"):
        Measurements.from_rows(table.space, table.archs[:2], [1.0, 2.0, 3.0])
    with pytest.raises(LatencyInputError, match="not a nb201 architecture"):
        Measurements.from_rows(table.space, [table.archs[0], "|conv~0|+|x~1|"], [1.0, 2.0])
    elastic = ElasticSpace()
    with pytest.raises(LatencyInputError, match="not a nb201 architecture"):
        Measurements.from_rows(table.space, [elastic.to_string(elastic.sample(np.random.default_rng(0), 1)[0])], [1.0])
    with pytest.raises(LatencyInputError, match="finite positive"):
        Measurements.from_rows(table.space, table.archs[:2], [1.0, -2.0])
    with pytest.raises(LatencyInputError, match="same latency"):
        adapt(prior, Measurements(table.genes[:4], np.ones(4)))
    with pytest.raises(LatencyInputError, match="not in the latency table"):
        LatencyTable(table.space, table.archs[:10], table.genes[:10], {"a": np.ones(10)}).rows(table.genes[10:11])


def test_refinement_measures_where_uncertainty_moves_the_front():
    from forgeflow.tasks.latency.search import front_sensitivity

    # a measured front (rows 0-3), a cell just behind it whose interval reaches across it (4), a cell far behind the
    # front with a wider interval (5), and an unmeasured front cell between two close neighbours (6)
    acc = np.array([50.0, 60.0, 70.0, 80.0, 64.0, 40.0, 75.0])
    lat = np.array([1.0, 2.0, 3.0, 4.0, 2.1, 3.9, 3.05])
    sd = np.array([0.0, 0.0, 0.0, 0.0, 0.10, 0.20, 0.10])
    known = np.array([True, True, True, True, False, False, False])
    assert front_sensitivity(acc, lat, sd, known) == 6
    # the pick follows the uncertainty: once row 6 is nearly certain, row 4 is the one worth measuring
    assert front_sensitivity(acc, lat, np.where(np.arange(7) == 6, 0.01, sd), known) == 4
    # with every cell that could matter measured, the one far behind the front (dominated even at its optimistic
    # latency) is not worth a measurement
    known2 = known.copy()
    known2[[4, 6]] = True
    assert front_sensitivity(acc, lat, np.where(known2, 0.0, sd), known2) is None
    # a cell on the front whose interval is zero-width (measured) is never picked
    assert front_sensitivity(acc, lat, sd, np.ones(7, dtype=bool)) is None
