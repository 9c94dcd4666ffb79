"""Issue 17 item 14: a served or deployed run builds only allow-listed model specs; the CLI keeps full freedom."""

from __future__ import annotations

import pytest

from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.models.spec import check_model_allowed


@pytest.mark.parametrize("spec", ["os:abort", "subprocess:getoutput", "mypkg.evil:factory", "mypkgx.models:f"])
def test_arbitrary_factories_are_refused_in_deployments(spec):
    with pytest.raises(ForgeflowError, match="not allowed in a served or deployed run"):
        check_model_allowed(spec, "mypkg.models")


@pytest.mark.parametrize("spec", ["torchvision:resnet18", "forgeflow:digits_cnn", "mypkg.models:f",
                                  "mypkg.models.vision:g"])
def test_built_ins_and_allow_listed_modules_pass(spec):
    check_model_allowed(spec, "mypkg.models")


def test_policy_applies_only_inside_a_deployment_run(monkeypatch):
    import forgeflow.flows.model_policy as mp

    monkeypatch.delenv("FORGEFLOW_MODEL_ALLOW", raising=False)
    mp.enforce_model_policy(["os:abort"])  # the CLI: no deployment, full freedom (nothing is built here)
    monkeypatch.setattr(mp, "in_deployment", lambda: True)
    with pytest.raises(ForgeflowError, match="os:abort"):
        mp.enforce_model_policy(["os:abort"])
    monkeypatch.setenv("FORGEFLOW_MODEL_ALLOW", "mypkg.models")  # read by Settings, passed to the check
    mp.enforce_model_policy(["mypkg.models:f"])
    with pytest.raises(ForgeflowError, match="mypkg.models"):
        mp.enforce_model_policy(["mypkgx.models:f"])


def test_deployed_flow_refuses_before_writing(tmp_path, monkeypatch):
    """The optimize flow itself (as a deployment calls it) refuses os:abort before its run row."""
    import forgeflow.flows.model_policy as mp
    from forgeflow.flows.optimize import optimize_flow

    monkeypatch.setattr(mp, "in_deployment", lambda: True)
    with pytest.raises(ForgeflowError, match="not allowed"):
        optimize_flow.fn(model="os:abort", stages=2, catalog=str(tmp_path / "cat"))
    assert not list((tmp_path).rglob("*.parquet"))
