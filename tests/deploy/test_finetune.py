"""`forgeflow optimize --clients N`: federated quantization-aware fine-tuning of the planned subnet."""

from __future__ import annotations

import numpy as np
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
