"""A labelled data set split over N clients, IID or by a Dirichlet(alpha) label distribution.

The Dirichlet split follows Hsu, Qi & Brown (2019) / Yurochkin et al. (2019): for every class, the class's
examples are dealt to clients in proportions drawn from Dir(alpha * 1_N); small alpha gives each client few labels.
A split is redrawn (same seed stream) until every client holds at least ``min_samples`` examples, so no client is
empty. Above ``PER_CLIENT_MIX_ABOVE`` (100) clients, where per-class proportions over the population would leave
most clients empty, each client instead draws its own label mix from Dir(alpha) and an equal share of examples.
Data: scikit-learn's digits by default (no download), ``digits-shifted`` for populations, or the user's ``.npz`` or
Parquet file, read by ``tasks.datasets`` (the one loader shared with quantize and search).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.datasets import load_dataset
from forgeflow.tasks.federated.config import FederatedConfigError


@dataclass(frozen=True)
class FederatedDataset:
    """Train arrays, each client's row indices into them, and a held-out test set (evaluated by the server)."""

    name: str
    x_train: np.ndarray  # float32, N x ...
    y_train: np.ndarray  # int64, N
    x_test: np.ndarray
    y_test: np.ndarray
    client_indices: tuple[np.ndarray, ...]  # one int64 index array per client, disjoint, covering x_train
    num_classes: int

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    @property
    def client_sizes(self) -> np.ndarray:
        return np.array([len(ix) for ix in self.client_indices], dtype=np.int64)

    def client_arrays(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        ix = self.client_indices[client_id]
        return self.x_train[ix], self.y_train[ix]

    @property
    def dataset_id(self) -> str:
        """Content hash of the arrays and the split (part of a run's resume key)."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test, *self.client_indices):
            h.update(np.ascontiguousarray(a).tobytes())
        return f"{self.name}:{h.hexdigest()[:16]}"

    def label_histogram(self) -> np.ndarray:
        """clients x classes counts (for reports)."""
        return np.stack([np.bincount(self.y_train[ix], minlength=self.num_classes) for ix in self.client_indices])


def split_iid(num_examples: int, num_clients: int, seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle and deal examples round-robin into ``num_clients`` near-equal shards."""
    if num_clients > num_examples:
        raise FederatedConfigError(f"cannot split {num_examples} examples over {num_clients} clients")
    perm = np.random.default_rng([seed, 0x11D]).permutation(num_examples)
    return tuple(np.sort(perm[c::num_clients]).astype(np.int64) for c in range(num_clients))


def split_dirichlet(labels: np.ndarray, num_clients: int, alpha: float, seed: int,
                    min_samples: int = 2, max_draws: int = 1000) -> tuple[np.ndarray, ...]:
    """Per-class Dir(alpha) proportions over clients; redraw until every client has ``min_samples`` examples."""
    labels = np.asarray(labels)
    if num_clients * min_samples > len(labels):
        raise FederatedConfigError(
            f"cannot give each of {num_clients} clients {min_samples} of only {len(labels)} examples")
    rng = np.random.default_rng([seed, 0xD1])
    classes = np.unique(labels)
    for _ in range(max_draws):
        shards: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for k in classes:
            idx = rng.permutation(np.flatnonzero(labels == k))
            p = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for c, part in enumerate(np.split(idx, cuts)):
                shards[c].append(part)
        out = tuple(np.sort(np.concatenate(s)).astype(np.int64) for s in shards)
        if min(len(s) for s in out) >= min_samples:
            return out
    raise FederatedConfigError(
        f"no Dirichlet(alpha={alpha}) split over {num_clients} clients gave every client {min_samples} examples in "
        f"{max_draws} draws; raise alpha or lower the number of clients")


PER_CLIENT_MIX_ABOVE = 100


def split_dirichlet_per_client(labels: np.ndarray, num_clients: int, alpha: float, seed: int,
                               min_samples: int = 2) -> tuple[np.ndarray, ...]:
    """Hsu, Qi & Brown (2019)'s population form: client c draws a label mix q_c ~ Dir(alpha * prior) and an equal
    share of the examples, taken class by class from q_c among what is left (a class that runs out is replaced by
    draws from the remaining classes). Every client gets floor or ceil(n / N) examples, so none is empty."""
    labels = np.asarray(labels)
    n = len(labels)
    if num_clients * max(min_samples, 1) > n:
        raise FederatedConfigError(
            f"cannot give each of {num_clients} clients {min_samples} of only {n} examples")
    rng = np.random.default_rng([seed, 0xD2])
    classes = np.unique(labels)
    pools = {int(k): list(rng.permutation(np.flatnonzero(labels == k))) for k in classes}
    prior = np.array([len(pools[int(k)]) for k in classes], dtype=float) / n
    sizes = np.full(num_clients, n // num_clients) + (np.arange(num_clients) < n % num_clients)
    left = np.array([len(pools[int(k)]) for k in classes])
    out = []
    for c in range(num_clients):
        q = rng.dirichlet(alpha * prior * len(classes))
        want = rng.multinomial(int(sizes[c]), q)
        got = np.minimum(want, left)
        short = int(sizes[c] - got.sum())
        while short > 0:  # classes that ran out: draw the rest from what is left, in proportion to q
            room = left - got
            p = q * (room > 0)
            p = p / p.sum() if p.sum() > 0 else (room > 0) / (room > 0).sum()
            extra = np.minimum(rng.multinomial(short, p), room)
            got += extra
            short -= int(extra.sum())
        take = []
        for i, k in enumerate(classes):
            if got[i]:
                pool = pools[int(k)]
                take.extend(pool[len(pool) - int(got[i]):])
                del pool[len(pool) - int(got[i]):]
        left -= got
        out.append(np.sort(np.array(take, dtype=np.int64)))
    return tuple(out)


def shifted_copies(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 9 copies of N x C x H x W images shifted by -1, 0, +1 pixels along each axis (zero fill), labels kept."""
    xs, ys = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out = np.zeros_like(x)
            h, w = x.shape[-2:]
            out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            xs.append(out)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def load_source(source: str | None, seed: int = 0, test_fraction: float = 0.25):
    """(name, x_train, y_train, x_test, y_test) as numpy arrays from ``tasks.datasets`` (digits, .npz or Parquet).

    ``digits-shifted``: the digits split with every training image also shifted by one pixel in each of 8
    directions (12,123 training images, so that populations of 1,000+ clients hold real shards of ~12 images each);
    the test images are the unshifted held-out ones."""
    if source == "digits-shifted":
        data = load_dataset(None, seed=seed, test_fraction=test_fraction)
        xtr, ytr = shifted_copies(data.x_train, data.y_train)
        return source, xtr, ytr, data.x_test, data.y_test
    data = load_dataset(source, seed=seed, test_fraction=test_fraction)
    return data.name, data.x_train, data.y_train, data.x_test, data.y_test


def build_dataset(source: str | None, num_clients: int, alpha: float | None, seed: int,
                  min_samples: int = 2) -> FederatedDataset:
    """Load ``source`` and split its training part over ``num_clients`` (IID when ``alpha`` is None)."""
    name, xtr, ytr, xte, yte = load_source(source, seed=seed)
    if alpha is None:
        parts = split_iid(len(ytr), num_clients, seed)
    elif num_clients > PER_CLIENT_MIX_ABOVE:  # per-class proportions over hundreds of clients leave most empty
        parts = split_dirichlet_per_client(ytr, num_clients, alpha, seed, min_samples=min_samples)
    else:
        parts = split_dirichlet(ytr, num_clients, alpha, seed, min_samples=min_samples)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    return FederatedDataset(name, xtr, ytr, xte, yte, parts, num_classes)
