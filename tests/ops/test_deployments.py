"""deploy/prefect.yaml: every deployment builds against its flow (entrypoint, parameters, cron) with no server."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from forgeflow.flows import deployments as D

YAML = Path(D.__file__).resolve().parents[1] / "deploy" / "prefect.yaml"


def test_yaml_uses_anchors_and_declares_every_flow():
    text = YAML.read_text()
    assert "&shared" in text and "<<: *shared" in text and "&process_pool" in text
    specs = D.load_specs(YAML)
    assert {s.flow for s in specs} >= {"optimize", "profile_models", "quantize", "federated_training"}
    assert all(s.work_pool == "forgeflow" and s.concurrency_limit == 1 and "forgeflow" in s.tags for s in specs)
    assert sum(bool(s.schedules) for s in specs) >= 5


def test_every_available_deployment_builds_with_its_schedule():
    from prefect.client.schemas.schedules import CronSchedule

    specs, missing = D.available_specs(D.load_specs(YAML))
    assert {s.flow for s in specs} >= {"optimize", "profile_models", "quantize", "federated_training"}, missing
    for spec in specs:
        dep = D.build_deployment(spec)
        assert dep.entrypoint == f"forgeflow.flows.deployments.{spec.flow}"
        assert [s.schedule.cron for s in dep.schedules] == [s.cron for s in spec.schedules]
        for s in spec.schedules:
            CronSchedule(cron=s.cron, timezone=s.timezone)  # raises on a malformed cron
        # the entrypoint resolves (as a worker would) to the flow on a Dask task runner
        from prefect.flows import load_flow_from_entrypoint

        flow = load_flow_from_entrypoint(dep.entrypoint)
        assert flow.name == dep.flow_name
        assert type(flow.task_runner).__name__ == "DaskTaskRunner"
        inspect.signature(flow.fn).bind_partial(**spec.parameters)
        pooled = D.build_deployment(spec, work_pool="p1", for_work_pool=True)
        assert pooled.work_pool_name == "p1"


def test_runtime_flow_follows_settings(monkeypatch):
    monkeypatch.setenv("FORGEFLOW_DASK_ADDRESS", "tcp://10.0.0.1:8786")
    flow = D.runtime_flow("optimize")
    assert flow.task_runner.address == "tcp://10.0.0.1:8786"


@pytest.mark.parametrize("body,message", [
    ("deployments: []", "no `deployments:` list"),
    ("deployments: [{name: x}]", "needs a name and an entrypoint"),
    ("deployments: [{name: x, entrypoint: 'flows/optimize.py:optimize_flow'}]", "must be one of"),
    ("deployments: [{name: x, entrypoint: forgeflow.flows.deployments.optimize, schedules: [{every: 5}]}]", "cron"),
    ("deployments: [{name: x, entrypoint: forgeflow.flows.deployments.optimize}, {name: x, entrypoint: "
     "forgeflow.flows.deployments.optimize}]", "declared twice"),
    ("deployments: [{name: x\n", "not valid YAML"),
])
def test_bad_deployment_file(tmp_path, body, message):
    f = tmp_path / "d.yaml"
    f.write_text(body)
    with pytest.raises(D.DeploymentError, match=message):
        D.load_specs(f)


def test_parameters_the_flow_lacks_are_refused(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("deployments: [{name: x, entrypoint: forgeflow.flows.deployments.optimize, parameters: {modle: resnet}}]")
    (spec,) = D.load_specs(f)
    with pytest.raises(D.DeploymentError, match="parameters do not fit flow 'optimize'"):
        D.build_deployment(spec)


def test_select():
    specs = D.load_specs(YAML)
    assert {s.name for s in D.select(specs, ["optimize"])} == {"nightly", "digits-hourly"}
    assert len(D.select(specs, ["optimize/nightly"])) == 1
    with pytest.raises(D.DeploymentError, match="unknown deployment"):
        D.select(specs, ["nope"])
