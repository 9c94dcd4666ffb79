"""A fitted device model as a hardware target's latency source: `forgeflow latency fit` on a synthetic latency table of
the digits family's subnets, then `forgeflow optimize` on a target whose devices name it (`latency_model:`) under real
Prefect; bad input (unknown model, a model of another space, two latency sources, a fixed model in `forgeflow plan`)
is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._cli import run_cli

TARGET = """name: npu-2x
devices: {{count: 2, name: my-npu, memory_bytes: 1.0e9, {source}}}
links: {{bandwidth_bytes_per_s: 1.0e9, latency_ms: 0.15}}
budget: {{fraction_of_uniform4: 0.5}}
"""


def digits_space():
    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    return supernet_config_for(load_dataset(None)).space


def synthetic_files(folder: Path, space, n_measured: int = 16, seed: int = 0) -> None:
    """``table.parquet`` (300 subnets of ``space`` on three known devices) and ``m.parquet`` (``n_measured`` of them
    on the new device). Log latency is linear in the space's one-hot features around a shared cost vector: a device
    hundreds of times slower than this host (about a second per subnet), so a plan on it cannot pass for one priced
    at host speed."""
    rng = np.random.default_rng(seed)
    genes = np.unique(space.canonical(space.sample(rng, 300)), axis=0)
    x = space.features(genes, interactions=False).astype(float)
    w0 = rng.uniform(0.0, 0.3, x.shape[1])
    archs = [space.to_string(g) for g in genes]
    known = {f"latency_ms_dev{k}": 100 * np.exp(x @ (w0 + rng.normal(0, 0.05, x.shape[1]))) for k in range(3)}
    new = 100 * np.exp(x @ (w0 + rng.normal(0, 0.05, x.shape[1])))
    pq.write_table(pa.table({"arch": archs, **known}), folder / "table.parquet")
    pq.write_table(pa.table({"arch": archs[:n_measured], "latency_ms": new[:n_measured]}), folder / "m.parquet")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A catalog holding device model 'npu' (fitted through the CLI on the digits family's space) and 'npu-big'
    (another elastic space: resolutions the digits family does not have)."""
    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.latency.store import save_device
    from tests.latency.test_search_device import elastic_device
    from forgeflow.tasks.supernet.space import ElasticSpace

    folder = tmp_path_factory.mktemp("fitted")
    synthetic_files(folder, digits_space())
    cat = str(folder / "cat")
    fit = run_cli("latency", "fit", "--device", "npu", "--measurements", str(folder / "m.parquet"), "--table",
                  str(folder / "table.parquet"), "--catalog", cat, "--json")
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert json.loads(fit.stdout.strip().splitlines()[-1])["n_measurements"] == 16
    save_device(open_catalog(cat), "fit-big", "npu-big", elastic_device(ElasticSpace(resolutions=(16, 24, 32))),
                table="synthetic", seconds=0.1)
    return folder, cat


def _files(cat: str) -> set[str]:
    return {str(p.relative_to(cat)) for p in Path(cat).rglob("*") if p.is_file()}


@pytest.mark.slow
def test_optimize_plans_with_the_fitted_device_latency(prefect_harness, fitted, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.catalog import open_catalog
    from forgeflow.flows.cli_optimize import summary_lines
    from forgeflow.flows.optimize import optimize_family_flow
    from forgeflow.tasks.latency.store import load_device

    folder, cat = fitted
    target = tmp_path / "npu.yaml"
    target.write_text(TARGET.format(source="latency_model: npu"))
    flow = optimize_family_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    r = flow(supernet="digits", target=str(target), budget=4, microbatch=16, bundle_dir=str(tmp_path / "b"),
             catalog=cat)
    assert r["target"]["latency_models"] == ["npu", "npu"]
    space = digits_space()
    genes = space.from_string(r["chosen"]["arch"])[None]
    pred = load_device(open_catalog(cat), "npu").predict(genes)
    ms, lo, hi = float(pred.latency_ms[0]), float(pred.lower[0]), float(pred.upper[0])
    src = r["latency_source"]
    assert [d["device"] for d in src["devices"]] == [0, 1]
    for d in src["devices"]:
        assert d["latency_model"] == "npu"
        np.testing.assert_allclose([d["latency_ms"], d["lower_ms"], d["upper_ms"]], [ms, lo, hi], rtol=1e-9)
        np.testing.assert_allclose(d["speed"], ms / src["host_ms"], rtol=1e-9)
    assert src["models"]["npu"]["n_measurements"] == 16
    np.testing.assert_allclose(src["host_ms"], sum(u["host_ms"] for u in r["units"]), rtol=1e-9)
    assert ms > 20 * src["host_ms"]  # the synthetic device is far slower than this host: priced at its own speed
    # no width speed-up on this target: the stages' compute adds up to the predicted whole-subnet latency, plus
    # transfers (0.15 ms + ~0.1 ms of activations per crossing)
    p = r["plan"]
    assert 0 <= sum(p["stage_ms"]) - ms < 1.0
    blo, bhi = src["bottleneck_interval_ms"]
    assert blo < p["bottleneck_ms"] < bhi
    np.testing.assert_allclose(r["chosen"]["device_latency_ms"]["npu"], [ms, lo, hi], rtol=1e-9)
    assert r["pipeline"]["equal"] is True
    assert any("fitted model 'npu' (16 measurements" in line for line in summary_lines(r))


def test_bad_latency_model_inputs_are_one_line_exit_2_nothing_written(fitted, tmp_path):
    folder, cat = fitted
    before = _files(cat)

    def optimize(*args: str):
        return run_cli("optimize", "--budget", "4", "--microbatch", "16", "--catalog", cat, *args)

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(TARGET.format(source="latency_model: gpu9"))
    r = optimize("--target", str(unknown))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "latency_model 'gpu9'" in r.stderr and "no latency model for device 'gpu9'" in r.stderr
    assert "npu" in r.stderr  # names the fitted devices

    r = optimize("--target", "host-cpu-2", "--latency-device", "npu-big")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "fitted for the elastic space" in r.stderr and "cardinalities" in r.stderr

    both = tmp_path / "both.yaml"
    both.write_text(TARGET.format(source="latency_model: npu, speed_factor: 2.0"))
    r = optimize("--target", str(both))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "devices.latency_model" in r.stderr and "not both" in r.stderr

    ok = tmp_path / "npu.yaml"
    ok.write_text(TARGET.format(source="latency_model: npu"))
    r = run_cli("plan", "--model", "forgeflow:digits_cnn", "--target", str(ok), "--catalog", cat)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "fitted device model" in r.stderr and "forgeflow optimize" in r.stderr
    assert _files(cat) == before
