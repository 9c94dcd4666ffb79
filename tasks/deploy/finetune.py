"""Federated quantization-aware fine-tuning of the chosen, planned subnet (`forgeflow optimize --clients N`).

The chosen subnet's chain (BN recalibrated) gets the plan applied *quantization-aware*:

* each planned layer keeps float ("latent") weights and uses ``Q_b(W)`` in the forward pass (a parametrization,
  straight-through gradient: d Q_b(W) / dW = 1), with the same per-channel symmetric quantizer as the bundle;
* the input of each quantized layer is fake-quantized to 8 bits with the range calibrated before fine-tuning
  (fixed during fine-tuning, so every client quantizes the same way; torch's fake-quantize passes the gradient
  inside the range);
* batch norm stays in inference mode: its statistics are the recalibrated ones, only its affine parameters train
  (QAT's usual "freeze BN"), so a client's small non-IID batches never rewrite the running statistics.

That model is trained by ``tasks.federated.run_federated`` (FedAvg over ``clients`` clients holding a Dirichlet
label split of the training data, each round on the executor's workers) starting from the subnet's own weights, and
is evaluated on the held-out data before and after. The fine-tuned latent weights are what the bundle then
quantizes (``export_bundle(..., weights=)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from forgeflow.tasks.deploy.chain import build_units
from forgeflow.tasks.quantize.fakequant import fake_quantize_activation, fake_quantize_weight
from forgeflow.tasks.quantize.layers import quantizable_modules

#: the spec recorded in the federated configuration (its run key); clients build the model with ``factory``
QAT_SPEC = "forgeflow.tasks.deploy.finetune:qat_chain"


class _QuantizeSTE(torch.autograd.Function):
    """``Q_b(W)`` exactly in the forward pass, identity gradient. (``w + (Q_b(w) - w).detach()`` rounds: its values
    differ from ``Q_b(W)`` by an ulp here and there, and the activation quantizers downstream turn that into whole
    steps, so the QAT model would not compute what the plan applied computes.)"""

    @staticmethod
    def forward(ctx, w: torch.Tensor, bits: int) -> torch.Tensor:
        return fake_quantize_weight(w.detach(), bits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _FakeQuantSTE(nn.Module):
    """Weight parametrization: ``Q_b(W)`` forward, identity backward."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _QuantizeSTE.apply(w, self.bits)


class QatChain(nn.Sequential):
    """A unit chain whose batch norms stay in inference mode when the chain trains."""

    def train(self, mode: bool = True) -> "QatChain":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def qat_chain(specs: list[dict[str, Any]], layer_bits: Mapping[str, int], act_qparams: Mapping[str, tuple[float, int]],
              act_bits: int | None = 8, state: Mapping[str, torch.Tensor] | None = None) -> QatChain:
    """The chain of ``specs`` with ``layer_bits`` applied quantization-aware (see the module docstring); ``state`` is
    a float chain's ``state_dict`` to start from. Picklable through ``functools.partial`` (what clients receive)."""
    chain = QatChain(*build_units(specs))
    if state is not None:
        chain.load_state_dict(state)
    mods = quantizable_modules(chain)
    for name, bits in layer_bits.items():
        if int(bits) < 32:
            parametrize.register_parametrization(mods[name], "weight", _FakeQuantSTE(int(bits)))
            if act_bits is not None and name in act_qparams:
                scale, zp = act_qparams[name]
                mods[name].register_forward_pre_hook(
                    lambda mod, inp, s=float(scale), z=int(zp): (fake_quantize_activation(inp[0], act_bits, s, z),
                                                                 *inp[1:]))
    return chain.eval()


def latent_state(chain: QatChain) -> dict[str, torch.Tensor]:
    """The fine-tuned float weights under their plain-chain names (parametrizations removed, a copy)."""
    import copy

    plain = copy.deepcopy(chain)
    for m in plain.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    return {k: v.detach().clone() for k, v in plain.state_dict().items()}


@dataclass(frozen=True)
class FinetuneConfig:
    """FedAvg settings of the fine-tune: small learning rate (the net is trained already), a few rounds."""

    clients: int = 4
    rounds: int = 8
    fraction: float = 1.0
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3  # batch norm frozen at its recalibrated statistics: 3e-3 already diverged (measured)
    alpha: float | None = 0.5  # Dirichlet label split; None = IID
    seed: int = 0


def federated_qat(float_chain: nn.Sequential, specs: list[dict[str, Any]], layer_bits: Mapping[str, int],
                  act_qparams: Mapping[str, tuple[float, int]], data, config: FinetuneConfig, executor=None,
                  act_bits: int | None = 8) -> dict[str, Any]:
    """Fine-tune the planned chain by federated QAT; returns accuracies before/after (%), bytes, rounds and the
    fine-tuned latent weights (``"state"``, plain-chain names)."""
    from forgeflow.tasks.dask_fanout import SERIAL
    from forgeflow.tasks.federated.config import FederatedConfig, FederatedConfigError
    from forgeflow.tasks.federated.data import FederatedDataset, split_dirichlet, split_iid
    from forgeflow.tasks.federated.model_state import flatten_state, load_state
    from forgeflow.tasks.federated.runner import run_federated
    from forgeflow.tasks.supernet.train import accuracy_pct

    if config.clients < 1:
        raise FederatedConfigError(f"--clients must be at least 1, got {config.clients}")
    xtr, ytr = data.x_train.numpy(), data.y_train.numpy()
    if len(ytr) < 2 * config.clients:
        raise FederatedConfigError(f"--clients {config.clients}: the training data has only {len(ytr)} examples "
                                   f"(at least 2 per client needed)")
    if config.alpha is None:
        parts = split_iid(len(ytr), config.clients, config.seed)
    else:
        parts = split_dirichlet(ytr, config.clients, config.alpha, config.seed, min_samples=2)
    fed = FederatedDataset("optimize-finetune", xtr, ytr, data.x_test.numpy(), data.y_test.numpy(), parts,
                           int(max(ytr.max(), data.y_test.max())) + 1)
    state = {k: v.detach().clone() for k, v in float_chain.state_dict().items()}
    factory = functools.partial(qat_chain, specs, dict(layer_bits), dict(act_qparams), act_bits)
    start = factory(state=state)
    before = accuracy_pct(start, data.x_test, data.y_test)
    fcfg = FederatedConfig(model=QAT_SPEC, clients=config.clients, alpha=config.alpha, rounds=config.rounds,
                           fraction=config.fraction, local_epochs=config.local_epochs, batch_size=config.batch_size,
                           lr=config.lr, seed=config.seed)
    res = run_federated(fcfg, fed, executor=executor if executor is not None else SERIAL, model_factory=factory,
                        initial_weights=flatten_state(start))
    tuned = load_state(factory(), res.weights)
    after = accuracy_pct(tuned, data.x_test, data.y_test)
    last = res.final
    return {"clients": config.clients, "rounds": int(last.round), "alpha": config.alpha, "lr": config.lr,
            "local_epochs": config.local_epochs, "accuracy_before_pct": before, "accuracy_after_pct": after,
            "accuracy_per_round_pct": [100.0 * r.accuracy for r in res.records],
            "uplink_bytes": int(last.cum_uplink_bytes), "downlink_bytes": int(last.cum_downlink_bytes),
            "state": latent_state(tuned)}
