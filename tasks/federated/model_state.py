"""A model's state as one flat float32 vector (what clients and server exchange), and server-side evaluation.

The vector concatenates every floating-point tensor of ``state_dict()`` in order: parameters and float buffers (e.g.
BatchNorm running statistics, averaged like parameters as FedAvg implementations commonly do). Integer buffers (BN's
``num_batches_tracked``) are local bookkeeping and are not exchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def float_entries(model: nn.Module):
    """(name, tensor) of every floating-point entry of ``state_dict()``, in the flat vector's order."""
    return [(k, v) for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()]


def flatten_state(model: nn.Module) -> np.ndarray:
    return torch.cat([v.detach().reshape(-1).float() for _, v in float_entries(model)]).numpy().astype(np.float32)


def load_state(model: nn.Module, vector: np.ndarray) -> nn.Module:
    """Write ``vector`` into the model's float tensors in place; raise ValueError on a length mismatch."""
    entries = float_entries(model)
    total = sum(v.numel() for _, v in entries)
    if vector.size != total:
        raise ValueError(f"state vector has {vector.size} entries, the model has {total}")
    flat = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    offset = 0
    with torch.no_grad():
        for _, v in entries:
            n = v.numel()
            v.copy_(flat[offset:offset + n].view_as(v))
            offset += n
    return model


def build_model(spec: str, seed: int = 0) -> nn.Module:
    """The model named by ``spec`` with initial weights drawn from ``seed``."""
    from forgeflow.tasks.models.spec import resolve_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return resolve_model(spec)


def initial_weights(spec: str, seed: int) -> np.ndarray:
    return flatten_state(build_model(spec, seed))


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def evaluate(spec, weights: np.ndarray, x: np.ndarray, y: np.ndarray, batch_size: int = 1024
             ) -> tuple[float, float]:
    """(accuracy in [0, 1], mean cross-entropy) of the global model on a held-out set. ``spec``: a model spec, or a
    callable that builds the model."""
    model = load_state(spec() if callable(spec) else build_model(spec), weights).eval()
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    correct, loss = 0, 0.0
    with torch.no_grad():  # no autograd graph for a test pass
        for i in range(0, len(yt), batch_size):
            out = model(xt[i:i + batch_size])
            loss += float(F.cross_entropy(out, yt[i:i + batch_size], reduction="sum"))
            correct += int((out.argmax(1) == yt[i:i + batch_size]).sum())
    n = max(len(yt), 1)
    return correct / n, loss / n
