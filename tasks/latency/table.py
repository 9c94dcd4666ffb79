"""Latency tables: measured latency (ms) of architectures of one search space on several devices.

A table is a Parquet file (or arrays) with an ``arch`` column of architecture strings and one ``latency_ms_<device>``
column per device, e.g. ``../shared/data/nb201_hw.parquet`` (15,625 NAS-Bench-201 cells on 17 devices). Measurements
taken on a new device are a Parquet of (``arch``, ``latency_ms``) rows. Both are validated here, so every caller gets
the same clear error for the same bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.supernet.space import CategoricalSpace, InvalidArchitectureError, NB201Space

PREFIX = "latency_ms_"


class LatencyInputError(ForgeflowError):
    """A latency table, device name or set of measurements that cannot be used (unknown device, too few samples,
    architectures outside the space or the table, non-positive latency)."""


def read_arch_file(path: str | Path, what: str, columns: tuple[str, ...] = ("arch",)):
    """A Parquet (or ``.csv``) file of architecture rows as a pyarrow table with ``columns``, at least one row; else
    one LatencyInputError naming the ``what`` file and the problem."""
    path = Path(path)
    if not path.exists():
        raise LatencyInputError(f"{what} file {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            t = pcsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            t = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001
        raise LatencyInputError(f"{what} file {path} is not a readable Parquet/CSV file: {exc}") from None
    missing = [c for c in columns if c not in t.column_names]
    if missing:
        raise LatencyInputError(f"{what} file {path} lacks column(s) {', '.join(missing)} "
                                f"(expected {', '.join(columns)})")
    if t.num_rows == 0:
        raise LatencyInputError(f"{what} file {path} has no rows")
    return t


def space_for(archs: list[str]) -> CategoricalSpace:
    """The search space whose strings these are: NAS-Bench-201 cells (``|op~0|+|...``) or elastic-supernet genes."""
    from forgeflow.tasks.supernet.space import ElasticSpace

    if not archs:
        raise LatencyInputError("no architectures given")
    space: CategoricalSpace = NB201Space() if archs[0].startswith("|") else ElasticSpace()
    return space


def encode(space: CategoricalSpace, archs: list[str], what: str = "architecture") -> np.ndarray:
    """Gene vectors (n, g) of ``archs``; one clear error naming the first string that is not in the space."""
    out = np.zeros((len(archs), space.n_genes), dtype=np.int64)
    for i, a in enumerate(archs):
        try:
            out[i] = space.from_string(str(a))
        except InvalidArchitectureError as exc:
            raise LatencyInputError(f"{what} {i} ({str(a)[:80]!r}) is not a {space.name} architecture: {exc}") from None
    return out


@dataclass
class LatencyTable:
    """Architectures (strings and genes) with measured latency (ms) per device."""

    space: CategoricalSpace
    archs: list[str]
    genes: np.ndarray
    latency: dict[str, np.ndarray]
    _index: dict[tuple[int, ...], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.archs) != len(self.genes):
            raise LatencyInputError("latency table: architecture strings and genes differ in length")
        for dev, lat in self.latency.items():
            lat = np.asarray(lat, dtype=np.float64)
            if lat.shape != (len(self.archs),):
                raise LatencyInputError(f"latency table: device {dev!r} has {lat.shape[0]} values for "
                                        f"{len(self.archs)} architectures")
            if not np.all(np.isfinite(lat)) or np.any(lat <= 0):
                raise LatencyInputError(f"latency table: device {dev!r} has missing, non-finite or non-positive "
                                        "latencies")
            self.latency[dev] = lat
        self._index = {self.space.key(g): i for i, g in enumerate(self.genes)}
        if len(self._index) != len(self.archs):
            raise LatencyInputError("latency table: an architecture appears more than once")

    @property
    def devices(self) -> list[str]:
        return sorted(self.latency)

    def rows(self, genes: np.ndarray) -> np.ndarray:
        """Table rows of ``genes``; a clear error for an architecture the table lacks."""
        g = self.space.validate(genes)
        out = np.empty(len(g), dtype=np.int64)
        for i, row in enumerate(g):
            key = self.space.key(row)
            if key not in self._index:
                raise LatencyInputError(f"architecture {self.space.to_string(row)} is not in the latency table")
            out[i] = self._index[key]
        return out

    def check_device(self, device: str) -> None:
        if device not in self.latency:
            raise LatencyInputError(f"unknown device {device!r}: the latency table has {', '.join(self.devices)}")

    def without(self, device: str | None) -> "LatencyTable":
        """The same table with ``device``'s column dropped (the device to adapt to must not be pre-trained on)."""
        if device is None or device not in self.latency:
            return self
        return LatencyTable(self.space, self.archs, self.genes, {d: v for d, v in self.latency.items() if d != device})

    @classmethod
    def from_columns(cls, archs: list[str], columns: dict[str, np.ndarray],
                     space: CategoricalSpace | None = None) -> "LatencyTable":
        space = space or space_for(archs)
        return cls(space, list(archs), encode(space, list(archs), "table row"), dict(columns))

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """A Parquet latency table (``arch`` + ``latency_ms_<device>`` columns)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise LatencyInputError(f"latency table {path} does not exist")
        try:
            t = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise LatencyInputError(f"latency table {path} is not a readable Parquet file: {exc}") from None
        if "arch" not in t.column_names:
            raise LatencyInputError(f"latency table {path} has no 'arch' column")
        cols = {c[len(PREFIX):]: t.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                for c in t.column_names if c.startswith(PREFIX)}
        if not cols:
            raise LatencyInputError(f"latency table {path} has no '{PREFIX}<device>' columns")
        return cls.from_columns([str(a) for a in t.column("arch").to_pylist()], cols)


@dataclass
class Measurements:
    """Latencies measured on one device: genes (n, g) and latency_ms (n,), distinct architectures."""

    genes: np.ndarray
    latency_ms: np.ndarray

    @classmethod
    def from_rows(cls, space: CategoricalSpace, archs: list[str], latency_ms) -> "Measurements":
        lat = np.asarray(latency_ms, dtype=np.float64)
        if len(archs) != len(lat):
            raise LatencyInputError(f"measurements: {len(archs)} architectures but {len(lat)} latencies")
        if not np.all(np.isfinite(lat)) or np.any(lat <= 0):
            raise LatencyInputError("measurements: every latency_ms must be a finite positive number")
        genes = encode(space, archs, "measured architecture")
        keys: dict[tuple[int, ...], list[float]] = {}
        for g, v in zip(genes, lat):
            keys.setdefault(space.key(g), []).append(float(v))
        # repeated measurements of one architecture are averaged (in log space: latency noise is multiplicative)
        g = np.array(list(keys), dtype=np.int64).reshape(-1, space.n_genes)
        v = np.array([float(np.exp(np.mean(np.log(vals)))) for vals in keys.values()])
        return cls(g, v)

    @classmethod
    def load(cls, path: str | Path, space: CategoricalSpace | None = None) -> "Measurements":
        """A Parquet (or CSV) of (``arch``, ``latency_ms``) rows measured on one device."""
        t = read_arch_file(path, "measurements", ("arch", "latency_ms"))
        archs = [str(a) for a in t.column("arch").to_pylist()]
        space = space or space_for(archs)
        return cls.from_rows(space, archs, t.column("latency_ms").to_numpy(zero_copy_only=False))


@dataclass
class TableLatency:
    """One device's column of a latency table as a measurement source (``space`` + ``evaluate(genes) -> ms``), to be
    wrapped in ``tasks.supernet.objectives.CountedEvaluator`` so a caller can take at most N measurements."""

    table: LatencyTable
    device: str

    def __post_init__(self) -> None:
        self.table.check_device(self.device)
        self.space = self.table.space

    def evaluate(self, genes) -> np.ndarray:
        return self.table.latency[self.device][self.table.rows(genes)]
