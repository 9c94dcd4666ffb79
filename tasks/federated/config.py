"""Configuration of a federated run: one frozen dataclass, validated once before anything runs.

Every knob of the round logic, the client's local training, compression and differential privacy lives here, so a
run is fully described (and resumable) by ``FederatedConfig`` plus the dataset. ``run_key`` is a content hash of the
configuration: a flow that dies and is started again with the same configuration finds its checkpoints by that key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Literal

from forgeflow.tasks.config import Config
from forgeflow.tasks.errors import ForgeflowError

DpMode = Literal["none", "record", "client"]


class FederatedConfigError(ForgeflowError):
    """A federated-training option that is out of range or inconsistent with the others."""


@dataclass(frozen=True)
class Compression:
    """How a client encodes its model update for the uplink.

    ``kind``: ``none`` (dense float32), ``topk`` (the ``ratio`` largest-magnitude coordinates, int32 index + float32
    value each), ``randk`` (``ratio`` of the coordinates chosen by a seed both sides know: float32 values + an 8-byte
    seed), ``int8`` (stochastically rounded symmetric 8-bit codes + one float32 scale). ``error_feedback`` keeps what
    compression dropped as a per-client residual added to the next update (Seide et al. 2014; Karimireddy et al. 2019).
    ``shared_mask`` (random-k, ``randk:R:shared``): every client of a round keeps the same coordinates, drawn from
    (run seed, round) and so independent of the data; under client-level DP the server then adds noise only on those
    k coordinates (the others are exactly zero whatever the data), k/d of the dense noise energy for the same epsilon;
    under record-level DP each client runs DP-SGD in the mask's subspace (gradients masked before per-example
    clipping, noise on the k coordinates only; see ``client._train_dp_sgd``). The default draws one mask per client.
    """

    kind: Literal["none", "topk", "randk", "int8"] = "none"
    ratio: float = 1.0
    error_feedback: bool = True
    shared_mask: bool = False

    @staticmethod
    def parse(text: str) -> "Compression":
        """Parse ``none``, ``int8``, ``topk:0.01``, ``randk:0.01`` or ``randk:0.01:shared`` (ratio in (0, 1])."""
        text = (text or "none").strip().lower()
        if text in ("none", "int8"):
            return Compression(kind=text, ratio=1.0)  # type: ignore[arg-type]
        shared = False
        if text.startswith("randk:") and text.endswith(":shared"):
            text, shared = text[:-len(":shared")], True
        kind, _, ratio_text = text.partition(":")
        if kind not in ("topk", "randk") or not ratio_text:
            raise FederatedConfigError(
                f"unknown compression {text!r}: expected none, int8, topk:RATIO or randk:RATIO (e.g. topk:0.01)")
        try:
            ratio = float(ratio_text)
        except ValueError:
            raise FederatedConfigError(f"compression ratio {ratio_text!r} in {text!r} is not a number") from None
        if not 0.0 < ratio <= 1.0:
            raise FederatedConfigError(f"compression ratio must lie in (0, 1], got {ratio} in {text!r}")
        return Compression(kind=kind, ratio=ratio, shared_mask=shared)  # type: ignore[arg-type]

    def label(self) -> str:
        if self.kind in ("none", "int8"):
            return self.kind
        suffix = ":shared" if self.kind == "randk" and self.shared_mask else ""
        return f"{self.kind}:{self.ratio:g}{suffix}"


@dataclass(frozen=True)
class Privacy:
    """Differential privacy of a run.

    ``mode``: ``none``; ``record`` (every client trains with DP-SGD: per-example clipping to ``clip`` and Gaussian
    noise of std ``noise * clip`` on each Poisson-sampled batch sum; the guarantee protects one record of one client);
    ``client`` (DP-FedAvg, McMahan et al. 2018: each client's update is clipped to L2 norm ``clip``, the server adds
    Gaussian noise of std ``noise * clip`` to the sum; clients are Poisson-sampled with rate ``fraction``; the
    guarantee protects a client's whole data set). ``noise`` is the noise multiplier z; give ``target_epsilon``
    instead and the runner calibrates z so that epsilon after the last round is at most the target.
    """

    mode: DpMode = "none"
    clip: float = 1.0
    noise: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5


@dataclass(frozen=True)
class FederatedConfig(Config):
    """One federated run. Units: ``deadline_s`` seconds; learning rates are plain SGD step sizes."""

    model: str = "forgeflow:digits_cnn"
    clients: int = 20
    alpha: float | None = 0.3  # Dirichlet concentration of the label split; None = IID
    rounds: int = 30
    fraction: float = 0.5  # share of clients sampled per round
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.1
    server_lr: float = 1.0
    prox_mu: float = 0.0  # FedProx proximal weight; 0 = FedAvg
    compression: Compression = Compression()
    privacy: Privacy = Privacy()
    quorum: float = 0.5  # a round needs at least ceil(quorum * sampled) results, else the model is left unchanged
    deadline_s: float | None = None  # a client not back this long after the round started is dropped
    min_client_samples: int = 2
    seed: int = 0
    torch_threads: int = 1  # torch intra-op threads per client task (one core per Dask worker thread)

    def validate(self) -> "FederatedConfig":
        """Raise ``FederatedConfigError`` naming the first bad option; return self."""
        def bad(msg: str) -> None:
            raise FederatedConfigError(msg)

        if self.clients < 1:
            bad(f"--clients must be at least 1, got {self.clients}")
        if self.alpha is not None and not (self.alpha > 0 and math.isfinite(self.alpha)):
            bad(f"--alpha must be a positive number (or omitted for an IID split), got {self.alpha}")
        if self.rounds < 1:
            bad(f"--rounds must be at least 1, got {self.rounds}")
        if not 0.0 < self.fraction <= 1.0:
            bad(f"--fraction must lie in (0, 1], got {self.fraction}")
        if self.local_epochs < 1:
            bad(f"--local-epochs must be at least 1, got {self.local_epochs}")
        if self.batch_size < 1:
            bad(f"batch size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and self.server_lr > 0):
            bad(f"learning rates must be positive, got lr={self.lr}, server_lr={self.server_lr}")
        if self.prox_mu < 0:
            bad(f"FedProx mu must be >= 0, got {self.prox_mu}")
        if not 0.0 < self.quorum <= 1.0:
            bad(f"quorum must lie in (0, 1], got {self.quorum}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            bad(f"round deadline must be positive seconds, got {self.deadline_s}")
        if self.torch_threads < 1:
            bad(f"torch_threads must be >= 1, got {self.torch_threads}")
        p = self.privacy
        if p.mode not in ("none", "record", "client"):
            bad(f"--dp must be record or client, got {p.mode!r}")
        if p.mode != "none":
            if not (p.clip > 0 and math.isfinite(p.clip)):
                bad(f"--dp-clip must be a positive number, got {p.clip}")
            if (p.noise is None) == (p.target_epsilon is None):
                bad("with --dp give exactly one of --dp-noise (noise multiplier) or --dp-epsilon (target epsilon)")
            if p.noise is not None and not p.noise > 0:
                bad(f"--dp-noise must be positive, got {p.noise}")
            if p.target_epsilon is not None and not p.target_epsilon > 0:
                bad(f"--dp-epsilon must be positive, got {p.target_epsilon}")
            if not 0.0 < p.delta < 1.0:
                bad(f"--delta must lie in (0, 1), got {p.delta}")
        if p.mode == "client" and self.compression.kind == "topk":
            bad("top-k compression with client-level DP would release which coordinates are largest in a client's "
                "clipped update before any noise is added (the indices depend on the data and are not covered by "
                "the accountant); use randk:R or randk:R:shared, whose masks are independent of the data")
        return self

    @property
    def clients_per_round(self) -> int:
        """Clients sampled per round without client-level DP (fixed-size sampling without replacement)."""
        return max(1, round(self.fraction * self.clients))

    def with_noise(self, noise: float) -> "FederatedConfig":
        return replace(self, privacy=replace(self.privacy, noise=float(noise)))

    def run_key(self, dataset_id: str) -> str:
        """Content hash of the configuration and the dataset identity (resume key)."""
        blob = json.dumps({"config": self.to_dict(), "dataset": dataset_id}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]
