"""`forgeflow latency fit|predict`: few-shot latency models of devices never seen before (tasks/latency)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from forgeflow.flows.cli_common import CatalogOpt, EndpointOpt, JsonOpt, emit_json, err_console

latency_app = typer.Typer(help="Few-shot latency predictors: fit a new device from N measurements, predict any "
                               "architecture of its space.", no_args_is_help=True)
TABLE_ENV = "FORGEFLOW_LATENCY_TABLE"
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_hw.parquet"


def _table_path(table: Optional[Path]) -> Path:
    from forgeflow.tasks.latency.table import LatencyInputError

    if table is not None:
        return table
    from forgeflow.flows.settings import load_settings

    configured = load_settings().latency_table
    if configured:
        return Path(configured)
    if DEFAULT_TABLE.exists():
        return DEFAULT_TABLE
    raise LatencyInputError(f"no pre-training latency table: pass --table PATH (a Parquet with arch and "
                            f"latency_ms_<device> columns) or set {TABLE_ENV}")


@latency_app.command("fit")
def fit(
    device: str = typer.Option(..., "--device", help="Name of the new device (stored under this name)"),
    measurements: Path = typer.Option(..., "--measurements", help="Parquet or CSV of (arch, latency_ms) rows "
                                      "measured on the device"),
    table: Optional[Path] = typer.Option(None, "--table", help="Pre-training latency table (arch + latency_ms_<device> "
                                         f"columns) [env {TABLE_ENV}; default ../shared/data/nb201_hw.parquet]"),
    seed: int = typer.Option(0, "--seed"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Pre-train on the table's devices and adapt to DEVICE from its measurements; store the model in the catalog."""
    from threadpoolctl import threadpool_limits

    from forgeflow.flows.runtime import open_settings_catalog, recorded_run
    from forgeflow.flows.settings import load_settings
    from forgeflow.tasks.latency.fewshot import MIN_SAMPLES, adapt
    from forgeflow.tasks.latency.prior import pretrain
    from forgeflow.tasks.latency.store import save_device
    from forgeflow.tasks.latency.table import LatencyInputError, LatencyTable, Measurements

    t0 = time.perf_counter()
    if not device.strip():
        raise LatencyInputError("--device must be a non-empty name")
    path = _table_path(table)
    tab = LatencyTable.load(path)
    meas = Measurements.load(measurements, tab.space)
    if len(meas.genes) < MIN_SAMPLES:
        raise LatencyInputError(f"too few measurements in {measurements}: {len(meas.genes)} distinct architectures, "
                                f"at least {MIN_SAMPLES} are needed")
    settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint)
    cat = open_settings_catalog(settings)  # validated before anything is written
    with threadpool_limits(limits=1):
        prior = pretrain(tab, exclude=device, seed=seed)
        model = adapt(prior, meas)
    seconds = time.perf_counter() - t0
    with recorded_run(cat, flow="latency_fit", parameters={"device": device, "measurements": str(measurements),
                                                          "table": str(path), "seed": seed}) as run:
        key = save_device(cat, run.id, device, model, table=str(path), seconds=seconds)
        summary = {"device": device, "space": tab.space.name, "n_measurements": model.n_measurements,
                   "known_devices": prior.devices, "loo_log_rmse": round(model.loo_log_rmse(), 5),
                   "noise_log_std": round(model.noise_log_std, 5), "model_key": key, "seconds": round(seconds, 3)}
        run.summary.update(summary)
    if json_out:
        emit_json({**summary, "run_id": run.id, "catalog": cat.url})
        return
    err_console.print(f"[green]fitted[/green] device [bold]{device}[/bold] from {model.n_measurements} measurements "
                      f"({len(prior.devices)} known devices, {seconds:.1f} s)")
    print(f"leave-one-out error of the log latency {model.loo_log_rmse():.4f} "
          f"(~{100 * model.loo_log_rmse():.1f} %), fitted noise {model.noise_log_std:.4f}")
    print(f"stored in catalog {cat.url} (run_id {run.id}); predict with: forgeflow latency predict --device {device}")


@latency_app.command("predict")
def predict(
    device: str = typer.Option(..., "--device", help="A device fitted with forgeflow latency fit"),
    archs: Optional[Path] = typer.Option(None, "--archs", help="Parquet or CSV with an arch column"),
    arch: Optional[List[str]] = typer.Option(None, "--arch", help="An architecture string (repeatable)"),
    all_: bool = typer.Option(False, "--all", help="Every member of the device model's space (NB201: 15,625 cells)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write arch, predicted_latency_ms, log_std, lower_ms, "
                                       "upper_ms (Parquet) here"),
    top: int = typer.Option(10, "--top", help="Rows printed (fastest first) when not --json"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Predict latency (ms, with a 90 % interval) on DEVICE for the given architectures."""
    import numpy as np

    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.flows.settings import load_settings
    from forgeflow.tasks.latency.store import load_device
    from forgeflow.tasks.latency.table import LatencyInputError, encode

    chosen = sum([archs is not None, bool(arch), all_])
    if chosen != 1:
        raise LatencyInputError("give exactly one of --archs FILE, --arch STRING (repeatable) or --all")
    settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint)
    cat = open_settings_catalog(settings)
    model = load_device(cat, device)
    space = model.prior.space
    if all_:
        genes = space.enumerate()
        names = [space.to_string(g) for g in genes]
    else:
        if archs is not None:
            names = _read_archs(archs)
        else:
            names = list(arch or [])
        genes = encode(space, names)
    pred = model.predict(genes)
    rows = {"arch": names, "predicted_latency_ms": pred.latency_ms, "log_std": pred.log_std,
            "lower_ms": pred.lower, "upper_ms": pred.upper}
    if out is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(rows), out)
    if json_out:
        shown = np.argsort(pred.latency_ms)[: max(top, 0)] if out is not None else np.arange(len(names))
        emit_json({"device": device, "n": len(names), "out": str(out) if out else None,
                   "predictions": [{"arch": names[i], "latency_ms": float(pred.latency_ms[i]),
                                    "lower_ms": float(pred.lower[i]), "upper_ms": float(pred.upper[i])}
                                   for i in shown]})
        return
    print(f"{len(names)} architectures on {device} (fastest first; 90 % interval):")
    for i in np.argsort(pred.latency_ms)[: max(top, 0)]:
        print(f"{pred.latency_ms[i]:10.3f} ms  [{pred.lower[i]:.3f}, {pred.upper[i]:.3f}]  {names[i]}")
    if out is not None:
        print(f"all predictions: {out}")


def _read_archs(path: Path) -> list[str]:
    from forgeflow.tasks.latency.table import read_arch_file

    return [str(a) for a in read_arch_file(path, "architectures").column("arch").to_pylist()]


def register(app: typer.Typer) -> None:
    app.add_typer(latency_app, name="latency")
