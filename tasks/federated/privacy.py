"""Privacy accounting for the two DP modes, with Google's dp-accounting RDP accountant.

Record-level (DP-SGD inside every client). Client k holds n_k records and trains with Poisson sampling: each record
joins a step's batch independently with probability q_k = min(1, B / n_k), and runs ceil(n_k / B) steps per local
epoch. Each step releases a sum of per-example gradients clipped to L2 norm C plus N(0, (z C)^2 I): a Poisson
subsampled Gaussian mechanism under add/remove-one-record adjacency. Client k's epsilon composes all its steps over
the rounds it actually took part in (which clients take part is drawn by the server independently of the data, so
the count of compositions is data-independent; client sampling is *not* credited as amplification, which keeps the
bound conservative). Records of different clients are disjoint, so the run's record-level epsilon is the largest
epsilon over clients (parallel composition).

Client-level (DP-FedAvg, McMahan et al. 2018). Each round the server includes every client independently with
probability q = fraction (Poisson sampling of clients), each included client's update is clipped to L2 norm C, and the
server adds N(0, (z C)^2 I) to the sum before dividing by the expected count q N. One round is a Poisson subsampled
Gaussian mechanism under add/remove-one-client adjacency; epsilon composes the rounds run so far.

Epsilon is reported by ``RdpAccountant.get_epsilon`` (the RDP-to-(eps, delta) conversion of Balle et al. 2020,
tighter than the classic ``rdp + log(1/delta)/(order-1)`` used by TF-Privacy's older releases).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import dp_accounting
from dp_accounting import rdp
from dp_accounting.rdp import rdp_privacy_accountant

logging.getLogger("absl").setLevel(logging.ERROR)  # fractional orders at large q warn and are skipped by design

RECORD_ASSUMPTION = (
    "record-level DP, add/remove one record; per-client DP-SGD with Poisson sampling of records at rate "
    "min(1, B/n_k) for ceil(n_k/B) steps per local epoch (B >= n_k: full-batch DP-GD, rate 1, one step per epoch, "
    "no amplification), composed over the rounds the client took part in; no amplification credited for client "
    "sampling; client sizes n_k treated as public (the noisy sum is divided by the expected batch size); "
    "run epsilon = max over clients (disjoint data)")
CLIENT_ASSUMPTION = (
    "client-level DP (DP-FedAvg), add/remove one client; clients Poisson-sampled each round at rate q = fraction, "
    "updates clipped to L2 norm C, Gaussian noise z*C on the sum, composed over rounds")


def compression_assumption(kind: str, shared_mask: bool, mode: str) -> str:
    """What the accounting assumes about the uplink compression (recorded with the run beside the DP assumption)."""
    if kind == "none":
        return "no compression"
    if mode == "record" and kind == "randk" and shared_mask:
        return ("sparsified DP-SGD: each round's random-k mask is drawn from (run seed, round), independently of the "
                "data, and every client's DP-SGD runs in the mask's subspace (per-example gradients restricted to the "
                "mask before clipping to C, Gaussian noise z*C on the k masked coordinates only, the other coordinates "
                "left at the global weights); each step is the same Gaussian mechanism with sensitivity C as dense "
                "DP-SGD, so the record-level accounting above holds unchanged; the message is the k noisy values")
    if mode == "record":
        return (f"{kind} compression is applied to the output of each client's DP-SGD, so it is post-processing: "
                "any mask, data-dependent top-k included, leaves epsilon unchanged")
    if kind == "randk":
        return ("random-k masks are drawn from seeds independent of the data (" +
                ("one mask per round shared by all clients; server noise only on its coordinates" if shared_mask
                 else "one mask per client and round") + "), so the mask releases nothing; the clip bounds each "
                "client's sparse message")
    if kind == "int8":
        return "int8 codes with data-independent stochastic rounding of the clipped update, before the server's noise"
    return f"{kind} compression"


def _event(sample_rate: float, noise: float, count: int) -> dp_accounting.DpEvent:
    gaussian = dp_accounting.GaussianDpEvent(noise)
    single = gaussian if sample_rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(sample_rate, gaussian)
    return dp_accounting.SelfComposedDpEvent(single, count)


@lru_cache(maxsize=4096)
def _one_step_rdp(sample_rate: float, noise: float) -> np.ndarray:
    """The RDP curve (at the library's default orders) of one subsampled Gaussian step. RDP adds up under
    composition, so k steps cost k times this curve: computing it once per (rate, noise) makes per-round epsilon
    for every client cheap."""
    acc = rdp.RdpAccountant()
    acc.compose(_event(sample_rate, noise, 1))
    return np.asarray(acc._rdp, dtype=float)  # noqa: SLF001 - the accountant's own curve, nothing recomputed here


def subsampled_gaussian_epsilon(sample_rate: float, noise: float, count: int, delta: float) -> float:
    """epsilon(delta) of ``count`` compositions of the Poisson-subsampled Gaussian (rate, noise multiplier)."""
    if count <= 0:
        return 0.0
    curve = _one_step_rdp(float(sample_rate), float(noise)) * int(count)
    eps, _ = rdp_privacy_accountant.compute_epsilon(rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, curve, delta)
    return float(eps)


def classic_rdp_epsilon(sample_rate: float, noise: float, count: int, delta: float,
                        orders: list[float] | None = None) -> float:
    """epsilon by the classic conversion min_a rdp(a) + log(1/delta)/(a-1) over TF-Privacy's historical orders.

    Only for comparing with published figures computed that way (Abadi et al. 2016; TF-Privacy's tutorials).
    """
    orders = orders or [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    acc = rdp.RdpAccountant(orders)
    acc.compose(_event(sample_rate, noise, count))
    curve = np.asarray(acc._rdp, dtype=float)  # the library's RDP curve at `orders`
    return float(np.min(curve + math.log(1.0 / delta) / (np.asarray(orders) - 1.0)))


def record_sample_rate(n: int, batch_size: int) -> float:
    return min(1.0, batch_size / max(n, 1))


def record_steps_per_round(n: int, batch_size: int, local_epochs: int) -> int:
    return local_epochs * max(1, math.ceil(n / batch_size))


@dataclass(frozen=True)
class RecordLevelAccountant:
    """Per-client DP-SGD accounting. ``client_sizes``: n_k for each client."""

    client_sizes: tuple[int, ...]
    batch_size: int
    local_epochs: int
    noise: float
    delta: float

    def client_epsilon(self, client: int, participations: int) -> float:
        n = self.client_sizes[client]
        steps = record_steps_per_round(n, self.batch_size, self.local_epochs) * int(participations)
        return subsampled_gaussian_epsilon(record_sample_rate(n, self.batch_size), self.noise, steps, self.delta)

    def epsilon(self, participations: np.ndarray | tuple[int, ...]) -> float:
        """Run epsilon: the worst client's, given how many rounds each client has trained in."""
        return max((self.client_epsilon(k, int(p)) for k, p in enumerate(participations) if p > 0), default=0.0)

    def worst_case_epsilon(self, rounds: int) -> float:
        """epsilon if every client took part in all ``rounds`` (used to calibrate the noise before the run)."""
        return self.epsilon(tuple([rounds] * len(self.client_sizes)))


@dataclass(frozen=True)
class ClientLevelAccountant:
    sample_rate: float
    noise: float
    delta: float

    def epsilon(self, rounds: int) -> float:
        return subsampled_gaussian_epsilon(self.sample_rate, self.noise, int(rounds), self.delta)


def calibrate_noise(epsilon_of_noise, target_epsilon: float, low: float = 0.3, high: float = 100.0,
                    tolerance: float = 1e-3) -> float:
    """The smallest noise multiplier z (to ``tolerance``, relative) with ``epsilon_of_noise(z) <= target``.

    Raises ValueError if even ``high`` does not reach the target.
    """
    if epsilon_of_noise(high) > target_epsilon:
        raise ValueError(f"target epsilon {target_epsilon} is out of reach even with noise multiplier {high}")
    if epsilon_of_noise(low) <= target_epsilon:
        return low
    while high / low > 1.0 + tolerance:  # bisection on log z: epsilon decreases in z
        mid = math.sqrt(low * high)
        if epsilon_of_noise(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high


def calibrate_record_noise(client_sizes, batch_size: int, local_epochs: int, rounds: int, delta: float,
                           target_epsilon: float) -> float:
    """Smallest z with every client's epsilon after ``rounds`` full participations <= target.

    Calibrates on the currently worst client only, then checks all clients at the result and adds any client that
    exceeds the target to the set calibrated on (a few accountant curves instead of one per client per bisection).
    """
    sizes = tuple(int(n) for n in client_sizes)

    def acc(z):
        return RecordLevelAccountant(sizes, batch_size, local_epochs, z, delta)

    def eps_k(z, k):
        return acc(z).client_epsilon(k, rounds)

    probe = acc(1.0)
    active = {max(range(len(sizes)), key=lambda k: probe.client_epsilon(k, rounds))}
    while True:
        z = calibrate_noise(lambda z: max(eps_k(z, k) for k in active), target_epsilon)
        worst = max(range(len(sizes)), key=lambda k: eps_k(z, k))
        if eps_k(z, worst) <= target_epsilon or worst in active:
            return z
        active.add(worst)
