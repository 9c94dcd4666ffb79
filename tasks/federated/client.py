"""A client's local work for one round: train from the global weights, then clip / compress the update.

``train_client`` is what a Dask worker runs (one future per sampled client per round). It is a plain function of
its arguments: every random choice (batch order, Poisson batches, DP noise, random-k coordinates, int8 rounding)
comes from the task's ``seed``, so a client's update does not depend on the worker or on earlier tasks there.

Local training: plain SGD on cross-entropy for ``local_epochs`` epochs of batches of ``batch_size``; FedProx (Li et
al. 2020) adds ``mu/2 ||w - w_global||^2`` to the loss. Record-level DP replaces the batches by DP-SGD (Abadi et al.
2016): each step draws a Poisson batch (every record with probability q = B/n), computes per-example gradients with
``torch.func.vmap(grad(...))``, clips each to L2 norm C, adds N(0, (z C)^2) to their sum and divides by the expected
batch size q n; the proximal gradient (data-independent) is added after the noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from forgeflow.tasks.federated.compression import (EncodedUpdate, decode, encode, kept_count, randk_indices,
                                                   round_mask_seed)
from forgeflow.tasks.federated.config import Compression, FederatedConfig, FederatedConfigError
from forgeflow.tasks.federated.model_state import (build_model, flatten_state, float_entries, has_batch_norm,
                                                   load_state)
from forgeflow.tasks.federated.privacy import record_sample_rate, record_steps_per_round
from forgeflow.tasks.federated.state import ClientResult


@dataclass(frozen=True)
class LocalTraining:
    """The part of the configuration a client needs (small, picklable, shipped with every task)."""

    model: str
    local_epochs: int
    batch_size: int
    lr: float
    prox_mu: float
    compression: Compression
    dp_mode: str  # none | record | client
    clip: float
    noise: float | None
    torch_threads: int = 1
    run_seed: int = 0  # the run's seed: a shared random-k mask is drawn from (run_seed, round)
    factory: Callable[[], Any] | None = None  # builds the model instead of ``model`` (a picklable callable)

    def build(self):
        return self.factory() if self.factory is not None else build_model(self.model)

    @staticmethod
    def from_config(cfg: FederatedConfig, noise: float | None) -> "LocalTraining":
        return LocalTraining(cfg.model, cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.prox_mu, cfg.compression,
                             cfg.privacy.mode, cfg.privacy.clip, noise, cfg.torch_threads, cfg.seed)



def check_model_for_dp(spec: str, dp_mode: str) -> None:
    """Per-example clipping needs per-example gradients: batch norm mixes examples, so refuse it up front."""
    if dp_mode == "record" and has_batch_norm(build_model(spec)):
        raise FederatedConfigError(
            f"model {spec} has batch-norm layers, which mix examples within a batch, so per-example clipping for "
            f"record-level DP is undefined; use a model without them (e.g. forgeflow:digits_mlp)")


def _prox_penalty(params, anchor) -> torch.Tensor:
    return sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))


def _train_sgd(model, x, y, t: LocalTraining, gen: torch.Generator) -> tuple[int, float]:
    anchor = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=t.lr)
    model.train()
    steps, loss_sum = 0, 0.0
    n = len(y)
    for _ in range(t.local_epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, t.batch_size):
            idx = perm[i:i + t.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            total = loss + 0.5 * t.prox_mu * _prox_penalty(model.parameters(), anchor) if t.prox_mu else loss
            total.backward()
            opt.step()
            steps += 1
            loss_sum += float(loss.detach())
    return steps, loss_sum / max(steps, 1)


def parameter_masks(model, flat_indices: np.ndarray) -> dict[str, torch.Tensor]:
    """0/1 float masks, one per named parameter, of the coordinates ``flat_indices`` of the flat state vector
    (``model_state.flatten_state`` order); parameters with no kept coordinate get an all-zero mask."""
    flat = np.zeros(sum(v.numel() for _, v in float_entries(model)), dtype=np.float32)
    flat[np.asarray(flat_indices, dtype=np.int64)] = 1.0
    params = dict(model.named_parameters())
    masks, offset = {}, 0
    for name, v in float_entries(model):
        n = v.numel()
        if name in params:
            masks[name] = torch.from_numpy(flat[offset:offset + n].copy()).view_as(v)
        offset += n
    return masks


def _train_dp_sgd(model, x, y, t: LocalTraining, gen: torch.Generator,
                  mask: dict[str, torch.Tensor] | None = None) -> int:
    """DP-SGD as in the module docstring. ``mask`` (sparsified DP-SGD, under a shared random-k mask): every
    per-example gradient is restricted to the mask's coordinates *before* it is clipped, and the noise is drawn on
    those coordinates only, so the clipped sum has sensitivity C in the k-dimensional subspace and the other
    coordinates stay exactly at the global weights (Zhu and Blaschko 2023, random sparsification of DP-SGD
    gradients; Hu et al. 2022, Fed-SMP). The mask is drawn from (run seed, round), independently of the data, so each
    step is the same Gaussian mechanism (sensitivity C, noise z C) as dense DP-SGD and the accounting is unchanged."""
    from torch.func import functional_call, grad, vmap

    names = [k for k, _ in model.named_parameters()]
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    anchor = {k: v.clone() for k, v in params.items()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    model.eval()  # no train-time behaviour that mixes examples (batch norm is refused up front)

    def example_loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example_grads = vmap(grad(example_loss), in_dims=(None, 0, 0))
    n = len(y)
    q = record_sample_rate(n, t.batch_size)
    steps = record_steps_per_round(n, t.batch_size, t.local_epochs)
    sigma = float(t.noise) * t.clip
    for _ in range(steps):
        idx = torch.nonzero(torch.rand(n, generator=gen) < q).squeeze(1) if q < 1.0 else torch.arange(n)
        summed = {k: torch.zeros_like(v) for k, v in params.items()}
        if len(idx):
            g = per_example_grads(params, x[idx], y[idx])
            if mask is not None:
                g = {k: g[k] * mask[k] for k in names}
            norms = torch.sqrt(sum(g[k].reshape(len(idx), -1).pow(2).sum(1) for k in names))
            scale = (t.clip / (norms + 1e-12)).clamp(max=1.0)
            for k in names:
                summed[k] = torch.einsum("b,b...->...", scale, g[k])
        with torch.no_grad():
            for k in names:
                noise = sigma * torch.randn(summed[k].shape, generator=gen)
                noisy = (summed[k] + (noise * mask[k] if mask is not None else noise)) / (q * n)
                if t.prox_mu:  # zero off the mask: those coordinates never leave the anchor
                    noisy = noisy + t.prox_mu * (params[k] - anchor[k])
                params[k] = params[k] - t.lr * noisy
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(params[k])
    return steps


def _clip_message(message: EncodedUpdate, clip: float) -> tuple[EncodedUpdate, bool]:
    """Scale a message so that its decoded update has L2 norm <= clip (client-level DP sensitivity)."""
    norm = float(np.linalg.norm(decode(message)))
    if norm <= clip:
        return message, False
    factor = clip / norm
    if message.kind == "int8":
        return EncodedUpdate(message.kind, message.size, message.values, scale=float(np.float32(message.scale * factor))), True
    values = (message.values.astype(np.float64) * factor).astype(np.float32)
    return EncodedUpdate(message.kind, message.size, values, message.indices, message.scale, message.seed), True


def train_client(round_: int, client_id: int, seed: int, weights: np.ndarray, residual: np.ndarray | None,
                 x: np.ndarray, y: np.ndarray, training: LocalTraining) -> ClientResult:
    """Run one client's round and return its encoded update (the Dask task body)."""
    started = time.perf_counter()
    torch.set_num_threads(training.torch_threads)
    gen = torch.Generator().manual_seed(int(seed) & ((1 << 63) - 1))
    model = load_state(training.build(), weights)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    comp = training.compression
    shared = comp.kind == "randk" and comp.shared_mask
    mask_seed = round_mask_seed(training.run_seed, round_) if shared else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) & 0x7FFFFFFF)  # dropout and other global-RNG users inside the model
        if training.dp_mode == "record":
            # under a shared random-k mask the round's DP-SGD runs in the mask's subspace (see _train_dp_sgd)
            mask = parameter_masks(model, randk_indices(len(weights), kept_count(len(weights), comp.ratio),
                                                        mask_seed)) if shared else None
            steps, train_loss = _train_dp_sgd(model, xt, yt, training, gen, mask), None
        else:
            steps, train_loss = _train_sgd(model, xt, yt, training, gen)
    update = flatten_state(model) - np.asarray(weights, dtype=np.float32)
    clipped = False
    if training.dp_mode == "client":
        norm = float(np.linalg.norm(update))
        if norm > training.clip:  # clip before compression; the message is clipped again below (residual mass)
            update, clipped = (update * (training.clip / norm)).astype(np.float32), True
        train_loss = None
    message, new_residual = encode(update, comp, residual, mask_seed)
    if training.dp_mode == "client":
        message, again = _clip_message(message, training.clip)
        clipped = clipped or again
        if new_residual is not None:  # keep mass conservation exact with respect to what was really sent
            target = update + residual if residual is not None else update
            new_residual = (target - decode(message)).astype(np.float32)
    return ClientResult(round=round_, client_id=client_id, num_samples=int(len(y)), message=message,
                        residual=new_residual, train_loss=train_loss, local_steps=int(steps),
                        seconds=time.perf_counter() - started, clipped=clipped)
