"""Uplink compression of model updates with error feedback, and exact byte counts of what is sent.

Updates are flat float32 vectors of the model's state (see ``client.flatten_state``). Encodings:

- ``none``  dense float32: ``4 d`` bytes.
- ``topk``  the ``k = ceil(ratio d)`` coordinates of largest magnitude as int32 index + float32 value: ``8 k`` bytes.
- ``randk`` ``k`` coordinates drawn uniformly without replacement from a per-(round, client) seed that the server
  knows too, so only the float32 values and the 8-byte seed travel: ``4 k + 8`` bytes.
- ``int8``  symmetric 8-bit codes with unbiased stochastic rounding and one float32 scale: ``d + 4`` bytes.

Error feedback (EF-SGD, Seide et al. 2014; Stich et al. 2018; Karimireddy et al. 2019): the client compresses
``update + residual`` and keeps ``residual' = update + residual - decode(message)``, so nothing is lost, only delayed:
``decode(message) + residual' == update + residual`` (exactly for the sparsifiers, to float rounding for int8).
Clients here are Dask tasks that can land on any worker, so the residual is held in the server state (and its
round checkpoints in the catalog) and shipped with the client's task. It stands in for client-local memory and is
not counted as downlink traffic: a real client keeps it on its own device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.federated.config import Compression

SEED_BYTES = 8
SCALE_BYTES = 4


@dataclass(frozen=True)
class EncodedUpdate:
    """What a client sends: enough to rebuild the dense update with ``decode``."""

    kind: str
    size: int  # d, the dense length
    values: np.ndarray  # float32 (none/topk/randk) or int8 codes
    indices: np.ndarray | None = None  # int32, topk only
    scale: float | None = None  # int8 only
    seed: int | None = None  # randk only

    @property
    def nbytes(self) -> int:
        """Exact payload size in bytes (arrays' buffers plus scalar fields that must travel)."""
        n = int(self.values.nbytes)
        if self.indices is not None:
            n += int(self.indices.nbytes)
        if self.scale is not None:
            n += SCALE_BYTES
        if self.seed is not None:
            n += SEED_BYTES
        return n


def dense_bytes(size: int) -> int:
    """Bytes of a dense float32 vector of ``size`` entries (the downlink model, an uncompressed update)."""
    return 4 * int(size)


def kept_count(size: int, ratio: float) -> int:
    return max(1, min(size, math.ceil(ratio * size)))


def round_mask_seed(run_seed: int, round_: int) -> int:
    """The seed of a round's shared random-k mask: the same for every client of the round, unrelated to data."""
    return int(np.random.SeedSequence([run_seed, round_, 0x3A5C]).generate_state(1, np.uint32)[0])


def shared_mask(comp: Compression, size: int, run_seed: int, round_: int) -> np.ndarray | None:
    """The coordinates every client sends in ``round_`` under a shared random-k mask, else None."""
    if comp.kind != "randk" or not comp.shared_mask:
        return None
    return randk_indices(size, kept_count(size, comp.ratio), round_mask_seed(run_seed, round_))


def randk_indices(size: int, k: int, seed: int) -> np.ndarray:
    """The coordinates random-k keeps for ``seed``: sorted, distinct, the same on client and server."""
    rng = np.random.default_rng([seed, 0x5A9D])
    return np.sort(rng.choice(size, size=k, replace=False)).astype(np.int32)


def _encode_plain(target: np.ndarray, comp: Compression, seed: int) -> EncodedUpdate:
    d = target.size
    if comp.kind == "none":
        return EncodedUpdate("none", d, target.astype(np.float32, copy=True))
    if comp.kind == "topk":
        k = kept_count(d, comp.ratio)
        idx = np.argpartition(np.abs(target), d - k)[d - k:] if k < d else np.arange(d)
        idx = np.sort(idx).astype(np.int32)
        return EncodedUpdate("topk", d, target[idx].astype(np.float32), indices=idx)
    if comp.kind == "randk":
        k = kept_count(d, comp.ratio)
        idx = randk_indices(d, k, seed)
        return EncodedUpdate("randk", d, target[idx].astype(np.float32), seed=int(seed))
    if comp.kind == "int8":
        peak = float(np.max(np.abs(target))) if d else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        scaled = target.astype(np.float64) / scale
        low = np.floor(scaled)
        rng = np.random.default_rng([seed, 0x18])
        codes = low + (rng.random(d) < (scaled - low))  # unbiased: E[code] = scaled
        return EncodedUpdate("int8", d, np.clip(codes, -127, 127).astype(np.int8), scale=float(np.float32(scale)))
    raise ValueError(f"unknown compression kind {comp.kind!r}")


def decode(message: EncodedUpdate) -> np.ndarray:
    """The dense float32 update a message stands for."""
    if message.kind == "none":
        return message.values.astype(np.float32, copy=True)
    out = np.zeros(message.size, dtype=np.float32)
    if message.kind == "topk":
        out[message.indices] = message.values
    elif message.kind == "randk":
        out[randk_indices(message.size, message.values.size, message.seed)] = message.values
    elif message.kind == "int8":
        out[:] = message.values.astype(np.float32) * np.float32(message.scale)
    else:
        raise ValueError(f"unknown message kind {message.kind!r}")
    return out


def encode(update: np.ndarray, comp: Compression, residual: np.ndarray | None, seed: int
           ) -> tuple[EncodedUpdate, np.ndarray | None]:
    """Compress ``update`` (+ ``residual`` under error feedback); return the message and the new residual.

    The new residual is None when compression is off or error feedback is disabled.
    """
    update = np.asarray(update, dtype=np.float32)
    use_ef = comp.kind != "none" and comp.error_feedback
    target = update + residual if (use_ef and residual is not None) else update
    message = _encode_plain(target, comp, seed)
    if not use_ef:
        return message, None
    if message.kind in ("topk", "randk"):
        # Coordinates sent leave an exact zero, the others keep their exact value: mass is conserved bit for bit.
        new_residual = target.copy()
        idx = message.indices if message.kind == "topk" else randk_indices(target.size, message.values.size,
                                                                             message.seed)
        new_residual[idx] = 0.0
    else:
        new_residual = (target - decode(message)).astype(np.float32)
    return message, new_residual
