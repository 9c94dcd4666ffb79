"""`forgeflow optimize --clients N`: federated quantization-aware fine-tuning of the planned subnet."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_federated_qat_starts_at_the_plan_and_trains_the_latent_weights(small_family, bundle):
    from forgeflow.tasks.deploy.finetune import FinetuneConfig, federated_qat, qat_chain
    from forgeflow.tasks.deploy.pipeline import quantized_chain
    from forgeflow.tasks.deploy.planner import ChainPlan
    from forgeflow.tasks.supernet.train import accuracy_pct

    fam, arch = small_family
    _, planned, _ = bundle
    plan = ChainPlan.from_json(planned["plan"])
    from forgeflow.tasks.quantize.apply import quantize_model
    from forgeflow.tasks.quantize.layers import quantizable_modules

    chain, specs, _, _ = quantized_chain(fam, arch.to_string(), plan)
    d = fam.data
    # mixed widths (the host fixture's plan keeps float): 4 bits for the blocks, 8 for stem and head
    layer_bits = {n: 8 if n.split(".")[0] in ("0", str(len(specs) - 1)) else 4 for n in quantizable_modules(chain)}
    q = quantize_model(chain, layer_bits, act_bits=8, calibration=[d.x_train[i:i + 128] for i in range(0, 512, 128)])
    assert q.act_qparams
    # the QAT model computes exactly what the plan applied does (same weight quantizer, same activation ranges)
    qat = qat_chain(specs, layer_bits, q.act_qparams, 8, state=chain.state_dict())
    with torch.no_grad():
        assert torch.equal(qat(d.x_test[:64]), q.model(d.x_test[:64]))  # bit for bit
    # and training it leaves the batch-norm statistics alone
    qat.train()
    assert not any(m.training for m in qat.modules() if isinstance(m, torch.nn.BatchNorm2d))

    out = federated_qat(chain, specs, layer_bits, q.act_qparams, d, FinetuneConfig(clients=3, rounds=1))
    assert out["accuracy_before_pct"] == accuracy_pct(q.model, d.x_test, d.y_test)
    assert out["rounds"] == 1 and len(out["accuracy_per_round_pct"]) == 1
    assert abs(out["accuracy_after_pct"] - out["accuracy_per_round_pct"][-1]) < 1e-9  # same images; % rounds
    assert out["uplink_bytes"] > 0 and out["downlink_bytes"] > 0
    state = out["state"]
    assert set(state) == set(chain.state_dict())
    moved = [k for k, v in chain.state_dict().items() if v.is_floating_point() and not torch.equal(v, state[k])]
    assert any(k.endswith("weight") for k in moved)
    assert not any("running_" in k for k in moved)  # BN statistics frozen
    # the fine-tuned weights, quantized by the same widths, give the accuracy the fine-tune reported
    tuned, _, _, _ = quantized_chain(fam, arch.to_string(), plan, state=state)
    q2 = quantize_model(tuned, layer_bits, act_bits=8, calibration=[d.x_train[i:i + 128] for i in range(0, 512, 128)])
    assert abs(accuracy_pct(q2.model, d.x_test, d.y_test) - out["accuracy_after_pct"]) <= 2.0
    assert np.isfinite(out["accuracy_after_pct"])
    # with the ranges the fine-tune trained with (what the bundle uses), it is exactly the reported model
    q3 = quantize_model(tuned, layer_bits, act_bits=8, act_qparams=q.act_qparams)
    assert accuracy_pct(q3.model, d.x_test, d.y_test) == out["accuracy_after_pct"]


def test_optimize_bundle_holds_the_model_the_finetune_measured(small_family, bundle, tmp_path):
    """``finetune_chosen`` -> ``export_bundle`` (as `optimize --clients` chains them): the bundle's stages, run one
    after the other on the held-out digits, reach exactly the fine-tune's reported accuracy."""
    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.deploy.bundle import load_stage, read_bundle
    from forgeflow.tasks.deploy.pipeline import export_bundle, finetune_chosen, load_finetuned
    from forgeflow.tasks.deploy.planner import ChainPlan
    from forgeflow.tasks.deploy.target import host_view

    fam, arch = small_family
    _, planned, _ = bundle
    planned = dict(planned, plan=dict(planned["plan"], bits={u: 4 for u in planned["plan"]["bits"]}))
    plan = ChainPlan.from_json(planned["plan"])
    cat = open_catalog(str(tmp_path / "cat"))
    fed = finetune_chosen(cat, "run", fam, arch.to_string(), plan, clients=2)
    assert fed["act_qparams"] and fed["accuracy_after_pct"] != fed["accuracy_before_pct"]
    info = export_bundle(fam, arch.to_string(), planned, host_view(2, 16), tmp_path / "b", "run",
                         state=load_finetuned(cat, fed["weights_key"]), act_qparams=fed["act_qparams"])
    doc = read_bundle(info["bundle"])
    assert doc["finetuned"] is True
    x = fam.data.x_test
    with torch.inference_mode():
        for i in range(len(doc["plan"]["stages"])):
            x = load_stage(info["bundle"], i, doc)(x)
    assert 100.0 * float((x.argmax(1) == fam.data.y_test).double().mean()) == pytest.approx(
        fed["accuracy_after_pct"], abs=1e-9)
