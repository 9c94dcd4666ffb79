"""The quantize job as plain functions over a catalog: train (or reuse) a model, measure sensitivities, plan bits
under the requested budgets plus a Pareto sweep over size, and evaluate the plans on held-out data.

Each function reads its inputs from the catalog and writes its results there (the catalog is the source of truth);
``tasks/quantize/steps.py`` wraps them as Prefect tasks. ``validate_request`` checks everything that can be checked
without a Hessian (model, data, bits, budgets against the smallest achievable values, ties, pins, latency table)
before any run is recorded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from forgeflow.tasks.config import Config
from forgeflow.tasks.dask_fanout import SERIAL
from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.quantize.apply import evaluate_accuracy, quantize_model
from forgeflow.tasks.quantize.costs import load_latency_table, model_problem, parse_bits
from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.export import torchao_config_data, torchao_unsupported
from forgeflow.tasks.quantize.ilp import Allocation, solve_allocation
from forgeflow.tasks.quantize.layers import describe_layers
from forgeflow.tasks.quantize.pareto import budget_grid, pareto_sweep
from forgeflow.tasks.quantize.problem import FLOAT_BITS, uniform_plan
from forgeflow.tasks.quantize.records import from_sensitivity_rows, plan_rows, sensitivity_rows
from forgeflow.tasks.quantize.sensitivity import LayerSensitivity, layer_sensitivities

DIGITS = "sklearn:digits"


@dataclass(frozen=True)
class QuantizeRequest(Config):
    """What the user asked for. ``model`` or ``source_run`` (a run whose trained model, and sensitivities when they
    cover ``bits``, are reused). Budgets in bytes / BOPs / ms; ``latency_table`` a JSON or CSV path."""

    model: str | None = None
    source_run: str | None = None
    dataset: str | None = None
    bits: tuple[int, ...] = (2, 3, 4, 8, FLOAT_BITS)
    act_bits: int | None = 8
    size_budget: float | None = None
    bops_budget: float | None = None
    latency_budget: float | None = None
    latency_table: str | None = None
    ties: tuple[tuple[str, ...], ...] = ()
    pinned: tuple[tuple[str, int], ...] = ()
    pin_ends: int | None = None  # pin the first and last quantizable layer to this width (e.g. 8)
    seed: int = 0
    epochs: int = 30
    pareto_points: int = 8
    hutchinson_samples: int = 128
    calibration_batches: int = 4
    batch_size: int = 256
    time_limit: float = 60.0

    def budgets(self) -> dict[str, float]:
        return {k: float(v) for k, v in (("size_bytes", self.size_budget), ("bops", self.bops_budget),
                                         ("latency_ms", self.latency_budget)) if v is not None}

    def pins_for(self, layers) -> dict[str, int]:
        """Explicit pins plus, with ``pin_ends``, the first and last layer (an explicit pin wins)."""
        pins = {}
        if self.pin_ends is not None and layers:
            pins = {layers[0]: int(self.pin_ends), layers[-1]: int(self.pin_ends)}
        pins.update({k: int(v) for k, v in self.pinned})
        return pins

    def validate(self) -> "QuantizeRequest":
        """The checks that need neither the model nor the data (``validate_request`` does the rest)."""
        if bool(self.model) == bool(self.source_run):
            raise QuantizeError("give exactly one of --model SPEC or --run ID")
        parse_bits(self.bits, keep_float=False)
        if self.act_bits is not None and not 2 <= self.act_bits <= 16:
            raise QuantizeError(f"--act-bits must be in 2..16; got {self.act_bits}")
        for name, v in self.budgets().items():
            if not np.isfinite(v) or v <= 0:
                raise QuantizeError(f"the {name} budget must be a positive number; got {v}")
        if self.latency_budget is not None and not self.latency_table:
            raise QuantizeError("--latency-budget needs --latency-table PATH (per-layer, per-bit latencies in ms)")
        if self.epochs < 0 or self.pareto_points < 2 or self.hutchinson_samples < 2:
            raise QuantizeError("--epochs must be >= 0, --pareto-points >= 2 and Hutchinson samples >= 2")
        if not self.time_limit > 0:
            raise QuantizeError(f"the solver time limit must be positive seconds; got {self.time_limit}")
        return self


@dataclass(frozen=True)
class ModelRecord:
    """A trained model in the catalog (one quant_models row)."""

    model: str
    dataset: str
    seed: int
    epochs: int
    weights_key: str
    float_accuracy: float
    extra: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- data and models

def load_data(dataset: str | None, seed: int, test_fraction: float = 0.25):
    """(x_train, y_train, x_test, y_test) as tensors from ``tasks.datasets`` (digits, .npz or Parquet)."""
    from forgeflow.tasks.datasets import load_dataset
    from forgeflow.tasks.models.digits import dataset_tensors

    return dataset_tensors(load_dataset(dataset, seed=seed, test_fraction=test_fraction, min_rows=4))


def build_model(spec: str) -> torch.nn.Module:
    from forgeflow.tasks.models.spec import resolve_model

    return resolve_model(spec)


def find_model_record(cat, run_id: str) -> ModelRecord:
    t = cat.read("quant_models", filter=pc.field("run_id") == run_id)
    if t.num_rows == 0:
        raise QuantizeError(f"run {run_id!r} has no trained model in the catalog (table quant_models); "
                            "run `forgeflow quantize --model SPEC` first")
    r = t.to_pylist()[-1]
    return ModelRecord(r["model"], r["dataset"], int(r["seed"]), int(r["epochs"]), r["weights_key"],
                       float(r["float_accuracy"]))


def load_trained(cat, record: ModelRecord) -> torch.nn.Module:
    model = build_model(record.model)
    arrays = cat.get_arrays(record.weights_key)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    return model.eval()


def train_and_store(cat, run_id: str, req: QuantizeRequest) -> ModelRecord:
    """Train ``req.model`` on the data (or reuse ``req.source_run``'s weights) and record it in quant_models."""
    from forgeflow.tasks.models.digits import train_classifier

    if req.source_run:
        rec = find_model_record(cat, req.source_run)
        cat.append("quant_models", [{"model": rec.model, "dataset": rec.dataset, "seed": rec.seed,
                                     "epochs": rec.epochs, "weights_key": rec.weights_key,
                                     "float_accuracy": rec.float_accuracy}], run_id=run_id)
        return rec
    torch.manual_seed(req.seed)
    xtr, ytr, xte, yte = load_data(req.dataset, req.seed)
    model = build_model(req.model)
    if req.epochs > 0:
        model = train_classifier(model, xtr, ytr, epochs=req.epochs, seed=req.seed)
    acc = evaluate_accuracy(model, xte, yte)
    key = cat.put_arrays({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, run_id=run_id,
                         description=f"weights of {req.model}")
    rec = ModelRecord(req.model, req.dataset or DIGITS, req.seed, req.epochs, key, acc)
    cat.append("quant_models", [{"model": rec.model, "dataset": rec.dataset, "seed": rec.seed, "epochs": rec.epochs,
                                 "weights_key": key, "n_train": len(xtr), "n_test": len(xte),
                                 "float_accuracy": acc}], run_id=run_id)
    return rec


# ---------------------------------------------------------------- sensitivities

def _calibration(rec: ModelRecord, req: QuantizeRequest):
    xtr, ytr, xte, yte = load_data(None if rec.dataset == DIGITS else rec.dataset, rec.seed)
    n = min(len(xtr), req.calibration_batches * req.batch_size)
    batches = [(xtr[i:i + req.batch_size], ytr[i:i + req.batch_size]) for i in range(0, n, req.batch_size)]
    return batches, (xte, yte)


def sensitivities_to_catalog(cat, run_id: str, rec: ModelRecord, req: QuantizeRequest) -> dict[str, Any]:
    """Hutchinson traces + perturbations into quant_sensitivities (reused from ``req.source_run`` when it has them
    for every candidate width)."""
    if req.source_run:
        old = cat.read("quant_sensitivities", filter=pc.field("run_id") == req.source_run)
        if old.num_rows:
            have = set(old.column("bits").to_pylist())
            if set(req.bits) <= have:
                keep = old.filter(pc.is_in(old.column("bits"), value_set=pa.array(list(req.bits), pa.int64())))
                cols = [f.name for f in cat.tables()["quant_sensitivities"].schema]
                cat.append("quant_sensitivities", keep.select(cols), run_id=run_id)
                return {"layers": len(set(keep.column("layer").to_pylist())), "reused_from": req.source_run,
                        "rows_run_id": run_id}
    model = load_trained(cat, rec)
    batches, _ = _calibration(rec, req)
    infos, base = describe_layers(model, batches[0][0][:1])
    sens = layer_sensitivities(model, batches, [b for b in req.bits if b < FLOAT_BITS],
                               max_samples=req.hutchinson_samples, seed=req.seed)
    cat.append("quant_sensitivities", sensitivity_rows(rec.model, infos, sens, base), run_id=run_id)
    return {"layers": len(infos), "samples": max(s.samples for s in sens), "base_bytes": base, "rows_run_id": run_id}


# ---------------------------------------------------------------- plans and evaluations

def problem_from_catalog(cat, run_id: str, req: QuantizeRequest):
    t = cat.read("quant_sensitivities", filter=pc.field("run_id") == run_id)
    infos, sens, base = from_sensitivity_rows(t)
    latency = load_latency_table(req.latency_table) if req.latency_table else None
    return model_problem(infos, sens, req.bits, act_bits=req.act_bits or FLOAT_BITS, base_bytes=base,
                         latency_ms=latency, ties=req.ties, pinned=req.pins_for([i.name for i in infos]),
                         budgets=req.budgets())


def plan_and_evaluate(cat, run_id: str, rec: ModelRecord, req: QuantizeRequest, executor: Any = SERIAL,
                      sensitivity_run: str | None = None) -> dict[str, Any]:
    """Solve the requested plan and a size sweep, evaluate uniform / ILP plans, write quant_plans and
    quant_evaluations and a PNG of accuracy against size; returns a JSON-able summary. The sensitivities are read
    from ``sensitivity_run``'s rows (default this run; another when the sensitivity step was reused)."""
    problem = problem_from_catalog(cat, sensitivity_run or run_id, req)
    model = load_trained(cat, rec)
    batches, (xte, yte) = _calibration(rec, req)
    act_batches = [x for x, _ in batches]
    plans: list[tuple[str, str, Any, Mapping[str, int], Allocation | None]] = []  # id, kind, problem, bits, alloc
    requested = solve_allocation(problem, time_limit=req.time_limit)
    plans.append(("requested", "requested", problem, requested.bits, requested))
    free = problem.with_budgets(size_bytes=None, bops=None, latency_ms=None)
    for i, pt in enumerate(pareto_sweep(free, "size_bytes", budget_grid(free, "size_bytes", req.pareto_points),
                                        executor=executor, time_limit=req.time_limit)):
        if pt.allocation is not None:
            plans.append((f"pareto-{i}", "pareto", free.with_budgets(size_bytes=pt.budget), pt.allocation.bits,
                          pt.allocation))
    for b in req.bits:
        if b < FLOAT_BITS:
            try:
                u = uniform_plan(problem, b)
                if free.plan_is_admissible(u):
                    plans.append((f"uniform-{b}", "uniform", free, u, None))
            except QuantizeError:
                pass
    plan_table, eval_table, summary_rows = [], [], []
    for pid, kind, prob, bits, alloc in plans:
        plan_table += plan_rows(pid, rec.model, kind, prob, bits, alloc, req.act_bits,
                                torchao_config_data(model, bits))
        q = quantize_model(model, bits, req.act_bits, act_batches).model
        acc = evaluate_accuracy(q, xte, yte)
        totals = prob.plan_totals(bits)
        eval_table.append({"plan_id": pid, "model": rec.model, "kind": kind, "size_bytes": totals["size_bytes"],
                           "bops": totals["bops"], "act_bits": req.act_bits, "accuracy": acc, "n_eval": len(xte)})
        summary_rows.append({"plan": pid, "kind": kind, "accuracy": acc, "size_bytes": totals["size_bytes"],
                             "bops": totals["bops"], "objective": totals["objective"],
                             "bits": ",".join(str(bits[x]) for x in problem.layers)})
    float_totals = free.plan_totals({x: FLOAT_BITS for x in free.layers}) if FLOAT_BITS in req.bits else None
    eval_table.append({"plan_id": "float", "model": rec.model, "kind": "float",
                       "size_bytes": float_totals["size_bytes"] if float_totals else None,
                       "bops": float_totals["bops"] if float_totals else None, "act_bits": None,
                       "accuracy": evaluate_accuracy(model, xte, yte), "n_eval": len(xte)})
    cat.append("quant_plans", plan_table, run_id=run_id)
    cat.append("quant_evaluations", eval_table, run_id=run_id)
    png = accuracy_plot_png(eval_table, rec.model)
    plot_key = cat.put_object(png, suffix=".png", run_id=run_id, description="accuracy vs model size")
    req_eval = next(e for e in eval_table if e["plan_id"] == "requested")
    return {"model": rec.model, "layers": list(problem.layers), "bits": requested.bits_in_order(problem.layers),
            "status": requested.status.value, "objective": requested.objective, "dual_bound": requested.dual_bound,
            "seconds": requested.seconds,
            "totals": {k: (None if v != v else v) for k, v in requested.totals.items()}, "budgets": dict(problem.budgets),
            "accuracy": req_eval["accuracy"], "float_accuracy": eval_table[-1]["accuracy"],
            "plot": plot_key, "plans": summary_rows, "torchao": torchao_config_data(model, requested.bits),
            "torchao_unsupported": torchao_unsupported(model, requested.bits)}


def accuracy_plot_png(evals: list[dict[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {"pareto": ("o-", "tab:blue", "ILP (size sweep)"), "uniform": ("s", "tab:red", "uniform"),
              "requested": ("*", "tab:green", "requested budgets"), "float": ("D", "black", "float")}
    for kind, (fmt, color, label) in styles.items():
        pts = sorted((e["size_bytes"], e["accuracy"]) for e in evals if e["kind"] == kind and e["size_bytes"])
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, fmt, color=color, label=label, markersize=9 if kind == "requested" else 5)
    ax.set_xlabel("model size (bytes)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"{title}: accuracy vs size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- validation before any run

def validate_request(req: QuantizeRequest, cat=None) -> None:
    """Everything checkable without a Hessian; raises a ForgeflowError naming the problem."""
    req.validate()
    if req.source_run:
        if cat is None:
            raise QuantizeError("--run needs a catalog")
        rec = find_model_record(cat, req.source_run)
        model = build_model(rec.model)
        xtr = load_data(None if rec.dataset == DIGITS else rec.dataset, rec.seed)[0]
    else:
        model = build_model(req.model)
        xtr = load_data(req.dataset, req.seed)[0]
    try:
        infos, base = describe_layers(model, xtr[:1])
    except ForgeflowError:
        raise
    except Exception as exc:  # the data does not fit the model
        raise QuantizeError(f"model {req.model or rec.model} cannot run on the data "
                            f"(input shape {tuple(xtr.shape[1:])}): {type(exc).__name__}: {exc}") from None
    # the budgets do not depend on the Hessian: check them (and ties, pins, latency table) with zero sensitivity
    flat = [LayerSensitivity(i.name, 0.0, 0.0, 0.0, 0, {b: 0.0 for b in req.bits}) for i in infos]
    latency = load_latency_table(req.latency_table) if req.latency_table else None
    problem = model_problem(infos, flat, req.bits, act_bits=req.act_bits or FLOAT_BITS, base_bytes=base,
                            latency_ms=latency, ties=req.ties, pinned=req.pins_for([i.name for i in infos]),
                         budgets=req.budgets())
    solve_allocation(problem, time_limit=req.time_limit)


def uniform_size_budget(model: str, bits: int, dataset: str | None = None) -> float:
    """The model size (bytes) with every quantizable layer at ``bits``: a default size budget."""
    m = build_model(model)
    x = load_data(dataset, 0)[0]
    infos, base = describe_layers(m, x[:1])
    return float(sum(i.size_bytes(bits) for i in infos) + base)
