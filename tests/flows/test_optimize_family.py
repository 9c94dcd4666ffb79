"""`optimize` on the built-in digits family under real Prefect: every step runs, the decision is certified and
recorded, the bundle runs equal, the report is stored; a rerun on another target reuses supernet, profile and traces."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_family_flow_end_to_end_then_rerun_on_new_target(prefect_harness, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.catalog import open_catalog
    from forgeflow.flows.optimize import optimize_family_flow

    url = str(tmp_path / "cat")
    flow = optimize_family_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    r = flow(supernet="digits", target="host-cpu-2", budget=6, microbatch=16, bundle_dir=str(tmp_path / "b1"),
             catalog=url)
    assert set(r["seconds"]) == {"supernet", "profile", "search", "plan", "accuracy", "bundle", "report"}
    p = r["plan"]
    assert p["planner"] == "joint" and 1 <= p["k"] <= 2 and p["lower_bound_ms"] <= p["bottleneck_ms"] + 1e-9
    assert r["chosen"]["arch"] in {c["arch"] for c in r["search"]["candidates"]}
    assert r["pipeline"]["equal"] is True
    assert r["accuracy"]["accuracy_quantized_pct"] > 50
    cat = open_catalog(url)
    before = {t: cat.read(t).num_rows for t in ("supernet_models", "deploy_unit_profiles", "deploy_traces")}
    assert all(before.values())
    rows = cat.read("deploy_decisions").to_pylist()
    assert len(rows) == 1 and rows[0]["arch"] == r["chosen"]["arch"]
    assert cat.get_object(rows[0]["report_key"]).startswith(b"<!doctype html>")
    r2 = flow(supernet="digits", target="host-cpu-4", budget=4, microbatch=16, bundle_dir=str(tmp_path / "b2"),
              catalog=url)
    assert r2["target"]["name"] == "host-cpu-4" and r2["run_id"] != r["run_id"]
    after = {t: cat.read(t).num_rows for t in before}
    assert after == before  # the rerun trained, profiled and estimated nothing again
    assert r2["pipeline"]["equal"] is True
