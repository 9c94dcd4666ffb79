"""One configuration convention: every flow's config survives to_dict -> JSON -> from_dict, rejects unknown keys
and wrong types with one line, and the flows validate on entry (a served/deployed run with bad parameters writes
nothing, not even a `running` row)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeflow.tasks.config import ConfigError, config_from_dict
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.federated.config import Compression, FederatedConfig, Privacy
from forgeflow.tasks.deploy.request import ModelJobRequest, OptimizeRequest
from forgeflow.tasks.partition.request import PartitionRequest
from forgeflow.tasks.plan.request import PlanRequest
from forgeflow.tasks.profiling.profile import ProfileConfig
from forgeflow.tasks.quantize.pipeline import QuantizeRequest
from forgeflow.tasks.supernet.pipeline import SearchRequest
from forgeflow.tasks.verify.pipeline import VerifyRequest

CONFIGS = [
    QuantizeRequest(model="forgeflow:digits_cnn", bits=(2, 4, 8), ties=(("a", "b"),), pinned=(("fc", 8),),
                    size_budget=4096.0),
    SearchRequest(budget=40, stage_channels=(8, 12), latency_limit_ms=2.5),
    FederatedConfig(clients=4, alpha=None, compression=Compression("randk", 0.1, shared_mask=True),
                    privacy=Privacy(mode="client", noise=1.1)),
    ProfileConfig(input_shape=(1, 3, 32, 32), repeats=3),
    PartitionRequest(stages=4, model="forgeflow:digits_cnn", input_shape=(1, 1, 8, 8)),
    PlanRequest(model="forgeflow:digits_cnn", target="edge-npu-2x-48k", input_shape=(1, 1, 8, 8), budget=0.5),
    VerifyRequest(eps=(1, 2, 4), model="forgeflow:digits_mlp_32_32", bits="fc1=4,fc2=8", float_reference=False),
    OptimizeRequest(target="edge-npu-2x-48k", latency_limit_ms=1.5, min_accuracy_pct=90.0, budget=12),
    ModelJobRequest(model="forgeflow:digits_cnn", stages=2, input_shape=(1, 1, 8, 8)),
]


@pytest.mark.parametrize("config", CONFIGS, ids=[type(c).__name__ for c in CONFIGS])
def test_round_trip_through_json(config):
    params = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(params) == config


def test_unknown_keys_and_wrong_types_are_named():
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) epoch "):
        SearchRequest.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="SearchRequest.budget: expected an integer, got '200'"):
        SearchRequest.from_dict({"budget": "200"})
    with pytest.raises(ConfigError, match=r"QuantizeRequest.bits\[1\]: expected an integer"):
        QuantizeRequest.from_dict({"model": "m", "bits": [4, "x"]})
    with pytest.raises(ConfigError, match="FederatedConfig.privacy.mode: 'laplace' is not one of"):
        FederatedConfig.from_dict({"privacy": {"mode": "laplace"}})
    with pytest.raises(ForgeflowError, match="--rounds must be at least 1"):  # validate() runs too
        FederatedConfig.from_dict({"rounds": 0})


def test_verify_eps_from_parameters_are_normalised_and_checked():
    assert VerifyRequest.from_dict({"eps": [4, 1, 4], "model": "m"}).eps == (1, 4)
    with pytest.raises(ForgeflowError, match="--eps values must be positive integers"):
        VerifyRequest.from_dict({"eps": [0], "model": "m"})


def test_convenient_forms_from_deployments():
    # prefect.yaml writes `compression: int8`; pins may be a mapping
    assert FederatedConfig.from_dict({"compression": "int8"}).compression == Compression("int8", 1.0)
    req = config_from_dict(QuantizeRequest, {"model": "m", "pinned": {"conv1": 8}, "size_budget": 10})
    assert req.pinned == (("conv1", 8),) and req.size_budget == 10.0


def _no_files(root: Path) -> bool:
    return not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("flow, kwargs, message", [
    ("forgeflow.flows.quantize:quantize_flow", {"request": {"model": "forgeflow:digits_cnn", "size_budget": -1}}, "budget"),
    ("forgeflow.flows.search:search_flow", {"request": {"budget": 2}}, "--budget"),
    ("forgeflow.flows.federated:federated_training", {"config": {"rounds": 0}}, "--rounds"),
    ("forgeflow.flows.federated:federated_training", {"config": {"model": "nosuchpkg.mod:f"}}, "nosuchpkg"),
    ("forgeflow.flows.partition:partition_graph", {"stages": 0, "model": "forgeflow:digits_cnn"}, "--stages"),
    ("forgeflow.flows.profile_models:profile_models", {"models": ["forgeflow:digits_cnn"], "repeats": 0}, "repeats"),
    ("forgeflow.flows.profile_models:profile_models", {"models": ["nosuchpkg.mod:f"]}, "nosuchpkg"),
    ("forgeflow.flows.optimize:optimize_flow", {"model": "forgeflow:digits_cnn", "stages": 0}, "--stages"),
    ("forgeflow.flows.optimize:optimize_flow", {"model": "nosuchpkg.mod:f", "stages": 2}, "nosuchpkg"),
    ("forgeflow.flows.optimize:optimize_family_flow", {"budget": 2}, "--budget"),
    ("forgeflow.flows.optimize:optimize_family_flow", {"target": "no-such-target"}, "target file not found"),
    ("forgeflow.flows.plan:plan_deployment", {}, "exactly one of --graph"),
    ("forgeflow.flows.plan:plan_deployment", {"graph_file": "/nonexistent/plan.json"}, "instance file not found"),
    ("forgeflow.flows.verify:verify_flow", {"request": {"eps": [1]}}, "exactly one of --model"),
    ("forgeflow.flows.verify:verify_flow", {"request": {"eps": [1], "model": "forgeflow:digits_mlp_32_32",
                                                        "samples": 0}}, "--samples"),
])
def test_flows_validate_on_entry_and_write_nothing(flow, kwargs, message, tmp_path):
    import importlib

    module, name = flow.split(":")
    fn = getattr(importlib.import_module(module), name).fn  # the flow body, as a served run executes it
    cat = tmp_path / "cat"
    with pytest.raises(ForgeflowError, match=message):
        fn(**kwargs, catalog=str(cat))
    assert _no_files(cat)
