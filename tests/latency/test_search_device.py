"""`forgeflow search --latency-device`: a device fitted by `forgeflow latency fit` is the search's latency source."""

from __future__ import annotations

import numpy as np
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.latency.fewshot import adapt
from forgeflow.tasks.latency.prior import pretrain
from forgeflow.tasks.latency.store import device_latency, save_device
from forgeflow.tasks.latency.table import LatencyInputError, LatencyTable, Measurements
from forgeflow.tasks.supernet.space import ElasticSpace


def elastic_device(space: ElasticSpace, seed: int = 0):
    """A device model of ``space`` fitted from 16 measurements of a synthetic device (log latency linear in the
    space's features, three known devices near it)."""
    rng = np.random.default_rng(seed)
    genes = space.canonical(space.sample(rng, 300))
    genes = np.unique(genes, axis=0)
    x = space.features(genes, interactions=False).astype(float)
    w0 = rng.uniform(0.0, 0.3, x.shape[1])
    lat = {f"dev{k}": np.exp(x @ (w0 + rng.normal(0, 0.05, x.shape[1]))) for k in range(3)}
    new = np.exp(x @ (w0 + rng.normal(0, 0.05, x.shape[1])))
    table = LatencyTable(space, [space.to_string(g) for g in genes], genes, lat)
    model = adapt(pretrain(table, seed=seed), Measurements(genes[:16], new[:16]))
    return model


@pytest.fixture(scope="module")
def catalog_with_devices(tmp_path_factory):
    cat = open_catalog(str(tmp_path_factory.mktemp("cat")))
    save_device(cat, "fit-run", "npu", elastic_device(ElasticSpace()), table="synthetic", seconds=0.1)
    save_device(cat, "fit-run", "npu-big", elastic_device(ElasticSpace(resolutions=(16, 24, 32))), table="synthetic",
                seconds=0.1)
    return cat


def test_search_uses_the_fitted_device_latency(catalog_with_devices):
    import torch

    from forgeflow.tasks.supernet.pipeline import SearchRequest, search_and_store
    from forgeflow.tasks.supernet.predictors import AccuracyPredictor
    from forgeflow.tasks.supernet.supernet import ElasticSupernet
    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    torch.manual_seed(0)
    cat = catalog_with_devices
    data = load_dataset(None, seed=0)
    net = ElasticSupernet(supernet_config_for(data, stage_channels=(4, 8, 8)))
    space = net.config.space
    rng = np.random.default_rng(0)
    g = space.sample(rng, 40)
    acc = AccuracyPredictor(space).fit(g, 80 + 10 * rng.random(40))
    req = SearchRequest(budget=12, source="predictors", latency_device="npu", seed=0)
    out = search_and_store(cat, "search-run", {"supernet_id": "s" * 16}, req, (net, data, acc, None))
    assert out["latency_source"]["device"] == "npu" and out["latency_source"]["n_measurements"] == 16
    assert out["evaluations"] == 12 and out["front"]
    lat = device_latency(cat, "npu", space)
    genes = np.stack([space.from_string(f["arch"]) for f in out["front"]])
    np.testing.assert_allclose([f["latency_ms"] for f in out["front"]], lat.predict(genes), rtol=1e-9)


def test_unknown_device_or_other_space_is_one_clear_error(catalog_with_devices):
    from forgeflow.flows.search import _validate
    from forgeflow.tasks.supernet.pipeline import SearchRequest, SearchRequestError

    cat = catalog_with_devices
    with pytest.raises(LatencyInputError, match="no latency model for device 'gpu9'.*npu"):
        _validate(SearchRequest(latency_device="gpu9"), cat)
    # fitted on other resolutions than the digits supernet's (8, 12, 16): refused, not silently mispredicted
    with pytest.raises(LatencyInputError, match="npu-big.*elastic space"):
        _validate(SearchRequest(latency_device="npu-big"), cat)
    with pytest.raises(SearchRequestError, match="--latency-device"):
        SearchRequest(latency_device=" ").validate()
    _validate(SearchRequest(latency_device="npu"), cat)  # the matching device passes
