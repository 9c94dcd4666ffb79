"""The supernet search as catalog-backed steps: train once, fit predictors, search, compare with training from scratch.

Each function reads what it needs from the catalog, writes its results there under ``run_id``, and returns a small
JSON-able dict; ``steps.py`` wraps them as Prefect tasks. Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.compute as pc
import torch

from forgeflow.tasks.config import Config
from forgeflow.tasks.dask_fanout import SERIAL
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.supernet.objectives import CountedEvaluator
from forgeflow.tasks.supernet.predictors import (AccuracyPredictor, LatencyPredictor, PredictorObjective, SupernetObjective,
                                       fit_predictors)
from forgeflow.tasks.supernet.search import run_search
from forgeflow.tasks.supernet.space import ElasticSpace
from forgeflow.tasks.supernet.supernet import ElasticSupernet, SupernetConfig
from forgeflow.tasks.supernet.train import (Dataset, TrainConfig, load_dataset, load_state_arrays, state_arrays,
                                  subnet_accuracy, supernet_config_for, train_from_scratch, train_supernet)


class SearchRequestError(ForgeflowError):
    """A search request with an impossible or inconsistent setting."""


@dataclass(frozen=True)
class SearchRequest(Config):
    dataset: str | None = None  # None: scikit-learn digits; else .npz / .parquet path
    epochs: int = 15
    random_subnets: int = 2
    seed: int = 0
    budget: int = 200  # distinct subnets the search evaluates
    latency_limit_ms: float | None = None
    source: str = "supernet"  # 'supernet': measured accuracy of extracted subnets; 'predictors': predicted
    supernet_run: str | None = None  # reuse the supernet trained by this run
    n_accuracy: int = 60  # subnets measured to fit the accuracy predictor
    n_latency: int = 30  # subnets measured to fit the latency correction
    latency_batch: int = 32  # batch size of latency measurements
    scratch_compare: int = 0  # architectures also trained from scratch for the gap report
    stage_channels: tuple[int, ...] = (8, 16, 24)
    latency_device: str | None = None  # a device fitted by `forgeflow latency fit`: its predicted latency is searched

    def validate(self) -> "SearchRequest":
        if self.budget < 4:
            raise SearchRequestError(f"--budget must be at least 4 subnets, got {self.budget}")
        if self.epochs < 1 and self.supernet_run is None:
            raise SearchRequestError(f"--epochs must be >= 1, got {self.epochs}")
        if self.latency_limit_ms is not None and not self.latency_limit_ms > 0:
            raise SearchRequestError(f"--latency-limit-ms must be positive, got {self.latency_limit_ms}")
        if self.source not in ("supernet", "predictors"):
            raise SearchRequestError(f"--source must be 'supernet' or 'predictors', got {self.source!r}")
        if self.n_accuracy < 8 or self.n_latency < 8:
            raise SearchRequestError("predictors need at least 8 measured subnets each")
        if self.scratch_compare < 0:
            raise SearchRequestError("--scratch-compare must be >= 0")
        if self.latency_device is not None and not self.latency_device.strip():
            raise SearchRequestError("--latency-device must be a non-empty device name")
        if not self.stage_channels or any(c < 1 for c in self.stage_channels):
            raise SearchRequestError(f"stage channels must be positive integers, got {self.stage_channels}")
        return self


def _config_json(cfg: SupernetConfig) -> str:
    d = asdict(cfg)
    return json.dumps(d, sort_keys=True)


def _config_from_json(text: str) -> SupernetConfig:
    d = json.loads(text)
    sp = d.pop("space")
    sp.pop("cardinalities", None)
    space = ElasticSpace(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in sp.items()
                            if k in ("name", "resolutions", "depths", "expand_ratios", "kernel_sizes", "n_stages")})
    return SupernetConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}, space=space)


def dataset_for(request: SearchRequest) -> Dataset:
    return load_dataset(request.dataset, seed=request.seed)


def train_and_store(cat, run_id: str, request: SearchRequest) -> dict:
    """Train the supernet (or reuse ``request.supernet_run``'s); weights to the catalog; a supernet_models row."""
    data = dataset_for(request)
    if request.supernet_run is not None:
        rows = cat.read("supernet_models", filter=pc.field("run_id") == request.supernet_run).to_pylist()
        if not rows:
            raise SearchRequestError(f"run {request.supernet_run} trained no supernet in catalog {cat.url}")
        return {k: rows[-1][k] for k in ("supernet_id", "config_json", "weights_key")}
    torch.manual_seed(request.seed)
    cfg = supernet_config_for(data, stage_channels=request.stage_channels)
    net = ElasticSupernet(cfg)
    report = train_supernet(net, data, TrainConfig(epochs=request.epochs, random_subnets=request.random_subnets,
                                                   seed=request.seed))
    arrays = state_arrays(net)
    weights_key = cat.put_arrays(arrays, run_id=run_id, description="elastic supernet state dict")
    supernet_id = hashlib.sha256(weights_key.encode()).hexdigest()[:16]
    sp = cfg.space
    row = {
        "supernet_id": supernet_id, "dataset": request.dataset or "sklearn:digits", "config_json": _config_json(cfg),
        "weights_key": weights_key, "seed": request.seed, "epochs": request.epochs,
        "random_subnets": request.random_subnets, "n_train": len(data.x_train), "n_test": len(data.x_test),
        "train_seconds": report.seconds,
        "largest_accuracy_pct": subnet_accuracy(net, sp.largest(), data),
        "smallest_accuracy_pct": subnet_accuracy(net, sp.smallest(), data),
    }
    cat.append("supernet_models", [row], run_id=run_id)
    return {k: row[k] for k in ("supernet_id", "config_json", "weights_key")} | {
        "largest_accuracy_pct": row["largest_accuracy_pct"], "smallest_accuracy_pct": row["smallest_accuracy_pct"],
        "train_seconds": report.seconds}


def load_supernet(cat, record: dict) -> ElasticSupernet:
    net = ElasticSupernet(_config_from_json(record["config_json"]))
    load_state_arrays(net, cat.get_arrays(record["weights_key"]))
    return net.eval()


def _predictor_json(acc: AccuracyPredictor, lat: LatencyPredictor) -> bytes:
    return json.dumps({
        "accuracy": acc.to_json(),
        "latency": {"table": [[*k, v] for k, v in lat.table.items()], "base": lat.base, "sides": lat.sides,
                    "correction": lat.correction, "batch_size": lat.batch_size},
    }).encode()


def fit_and_store_predictors(cat, run_id: str, record: dict, request: SearchRequest):
    """Fit both predictors on measured subnets; supernet_predictors rows; returns (objects, summary)."""
    torch.set_num_threads(1)
    net = load_supernet(cat, record)
    data = dataset_for(request)
    acc, lat, reports, _ = fit_predictors(net, data, n_accuracy=request.n_accuracy, n_latency=request.n_latency,
                                          batch_size=request.latency_batch, seed=request.seed)
    key = cat.put_object(_predictor_json(acc, lat), suffix=".json", run_id=run_id)
    cat.append("supernet_predictors", [{
        "supernet_id": record["supernet_id"], "predictor": r.name, "n_train": r.n_train, "n_test": r.n_test,
        "spearman": r.spearman, "rmse": r.rmse, "unit": r.unit, "detail_json": json.dumps(r.detail),
        "model_key": key} for r in reports], run_id=run_id)
    summary = {f"{r.name}_spearman": r.spearman for r in reports} | {f"{r.name}_rmse": r.rmse for r in reports}
    return (net, data, acc, lat), summary | {"predictors_key": key}


def search_and_store(cat, run_id: str, record: dict, request: SearchRequest, fitted, executor: Any = SERIAL) -> dict:
    """Run the evolutionary search on the chosen objective source; search_candidates + search_fronts rows + PNG."""
    from forgeflow.tasks.supernet.plot import front_png

    net, data, acc, lat = fitted
    space = net.config.space
    latency_source = {"device": "local-cpu", "batch_size": request.latency_batch}
    if request.latency_device is not None:  # a fitted device's predicted latency replaces this machine's
        from forgeflow.tasks.latency.store import device_latency

        lat = device_latency(cat, request.latency_device, space)
        latency_source = lat.describe()
    source = SupernetObjective(net, data, lat) if request.source == "supernet" else PredictorObjective(space, acc, lat)
    evaluator = CountedEvaluator(source, request.budget)
    # the budget is charged on the driver; workers receive only the (picklable) source and a chunk of subnets
    result = run_search(space, source.evaluate, request.budget, seed=request.seed,
                        latency_limit_ms=request.latency_limit_ms, executor=executor, chunk_size=8,
                        charge=evaluator.charge)
    search_id = f"{record['supernet_id']}-{request.seed}-{request.budget}"
    title = f"supernet {record['supernet_id'][:8]}: {result.evaluations} subnets ({request.source})"
    if request.latency_device is not None:
        title += f", latency on {request.latency_device} (predicted)"
    png = front_png(result, title, request.latency_limit_ms)
    plot_key = cat.put_object(png, suffix=".png", run_id=run_id)
    front = set(result.front_index.tolist())
    archs = [space.to_string(g) for g in result.genes]
    cat.append("search_candidates", [{
        "search_id": search_id, "space": space.name, "source": request.source, "order": i, "arch": archs[i],
        "accuracy_pct": float(result.accuracy[i]), "latency_ms": float(result.latency_ms[i]), "on_front": i in front}
        for i in range(result.evaluations)], run_id=run_id)
    best = result.best_under(request.latency_limit_ms) if request.latency_limit_ms is not None else None
    rows = []
    for pos, i in enumerate(result.front_index):
        rows.append({
            "search_id": search_id, "supernet_id": record["supernet_id"], "position": pos, "arch": archs[i],
            "accuracy_pct": float(result.accuracy[i]), "latency_ms": float(result.latency_ms[i]),
            "best_under_limit": bool(best is not None and i == best), "latency_limit_ms": request.latency_limit_ms,
            "status": result.status.value, "evaluations": result.evaluations, "budget": request.budget,
            "seconds": result.seconds, "plot_key": plot_key})
    cat.append("search_fronts", rows, run_id=run_id)
    out = {
        "search_id": search_id, "status": result.status.value, "evaluations": result.evaluations,
        "seconds": result.seconds, "plot": plot_key, "latency_source": latency_source,
        "front": [{"arch": archs[i], "accuracy_pct": float(result.accuracy[i]), "latency_ms": float(result.latency_ms[i])}
                  for i in result.front_index],
        "best": None if best is None else {"arch": archs[best], "accuracy_pct": float(result.accuracy[best]),
                                           "latency_ms": float(result.latency_ms[best])},
    }
    if request.latency_limit_ms is not None and best is None:
        out["status"] = "infeasible"
    return out


def compare_and_store(cat, run_id: str, record: dict, request: SearchRequest, archs: list[str], fitted) -> list[dict]:
    """Train each architecture from scratch with the supernet's epochs/optimiser; supernet_gaps rows."""
    net, data, _, _ = fitted
    space = net.config.space
    cfg = net.config
    train = TrainConfig(epochs=max(request.epochs, 1), seed=request.seed)
    rows = []
    for text in archs:
        arch = space.decode(space.from_string(text))
        ext = subnet_accuracy(net, arch, data)
        scratch = train_from_scratch(cfg, arch, data, train)
        rows.append({"supernet_id": record["supernet_id"], "arch": text, "extracted_accuracy_pct": ext,
                     "scratch_accuracy_pct": scratch, "gap_pp": scratch - ext})
    if rows:
        cat.append("supernet_gaps", rows, run_id=run_id)
    return rows

