"""The `forgeflow` command line. Each domain adds its commands through `register(app)` in flows/cli_<domain>.py."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Optional

import typer

from flows.cli_common import (CatalogOpt, DaskOpt, EndpointOpt, JsonOpt, emit_json, err_console, progress_bar,
                              quiet_prefect_for_json)
from tasks.errors import ForgeflowError

app = typer.Typer(name="forgeflow", no_args_is_help=True, add_completion=False,
                  help="Distributed orchestration of DNN deployment-optimization jobs (Prefect + Dask + Parquet catalog).")

# commands that run a Prefect flow (they get one local API unless PREFECT_API_URL or `forgeflow up` gives one)
FLOW_COMMANDS = {"optimize", "profile", "quantize", "partition", "federate", "search", "plan"}

# one line per domain; each module defines register(app)
COMMAND_MODULES = [
    "flows.cli_catalog",
    "flows.cli_profile",
    "flows.cli_quantize",
    "flows.cli_partition",
    "flows.cli_federate",
    "flows.cli_ops",
    "flows.cli_search",
    "flows.cli_latency",
    "flows.cli_up",
]


@app.command()
def optimize(
    model: str = typer.Option("torchvision:resnet18", "--model", help="Model spec: torchvision:NAME, "
                              "package.module:factory or forgeflow:digits_cnn"),
    stages: int = typer.Option(4, "--stages", help="Number of pipelined accelerators (k)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="e.g. 1,3,224,224 (default per model)"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run the end-to-end optimization flow for MODEL on STAGES accelerators and print where the results are."""
    from flows.optimize import optimize_flow, validate_inputs
    from flows.runtime import check_dask_address, open_settings_catalog, task_runner_for
    from flows.settings import load_settings

    quiet_prefect_for_json(json_out)
    settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint, dask_address=dask_address)
    shape = parse_shape(input_shape)
    validate_inputs(model, stages, shape)
    check_dask_address(settings.dask_address)
    cat = open_settings_catalog(settings)  # fails now, before any run, on a bad or unreachable catalog
    flow = optimize_flow.with_options(task_runner=task_runner_for(settings))
    with progress_bar(not json_out):
        result = flow(model=model, stages=stages, catalog=cat.url,
                      s3_endpoint=settings.s3_endpoint, input_shape=list(shape) if shape else None)
    if json_out:
        emit_json(result)
    else:
        err_console.print(f"[green]optimize completed[/green] run [bold]{result['run_id']}[/bold]")
        for line in step_lines(result):
            print(line)
        print(f"results: catalog {result['catalog']} (run_id {result['run_id']})")
        print(f"  forgeflow catalog show {result['run_id']} --catalog {result['catalog']}")


def step_lines(result: dict) -> list[str]:
    """One human line per optimize step (the full figures are in the catalog and --json)."""
    ms = result["model_summary"]
    lines = [f"model     {result['model']}: {ms['params']:,} parameters, {ms['flops'] / 1e9:.3f} GFLOPs "
             f"(multiply-add = 2), {ms['modules']} modules"]
    for step in ("quantize", "partition", "federated", "search"):
        info = result.get(step)
        if not isinstance(info, dict):
            continue
        if "skipped" in info:
            lines.append(f"{step:<9} skipped: {info['skipped']}")
        elif step == "partition":
            lines.append(f"partition k={info.get('k')}: bottleneck {info.get('bottleneck', float('nan')):.4g} ms, "
                         f"proven lower bound {info.get('lower_bound', float('nan')):.4g} "
                         f"({info.get('lower_bound_method')}), ratio {info.get('ratio', float('nan')):.4f}, "
                         f"status {info.get('status')}")
        elif step == "search" and info.get("front"):
            best = max(info["front"], key=lambda c: c.get("accuracy_pct", 0))
            lines.append(f"search    {info.get('evaluations')} subnets evaluated, Pareto front of {len(info['front'])}; "
                         f"most accurate {best.get('accuracy_pct', 0):.1f} % at {best.get('latency_ms', 0):.2f} ms")
        else:
            keys = [k for k in ("accuracy", "size_bytes", "bits", "uplink_bytes", "rounds", "evaluations", "best")
                    if k in info and not isinstance(info[k], (list, dict))]
            lines.append(f"{step:<9} " + ", ".join(f"{k}={info[k]}" for k in keys) if keys else f"{step:<9} done")
    return lines


def parse_shape(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if not text:
        return None
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ForgeflowError(f"input shape {text!r} must be integers separated by commas, e.g. 1,3,224,224") from None
    if not shape or any(s < 1 for s in shape):
        raise ForgeflowError(f"input shape {text!r} must be positive integers")
    return shape


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: a ForgeflowError becomes one line on stderr and exit code 2."""
    # the ephemeral API server can take long to start on a busy 2-core machine (Prefect's default is 20 s)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls from the local API
    from flows import api, shutdown

    whole_process = argv is None  # the console command (not a call from Python): it owns its process
    if whole_process:
        shutdown.install()  # Ctrl-C / SIGTERM: bounded shutdown, nothing left running
        args = sys.argv[1:]
        if args and args[0] in FLOW_COMMANDS and "--help" not in args:
            api.start_api_early()  # this command's one Prefect API comes up while it validates its input
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns (not raises) typer.Exit's code here
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except KeyboardInterrupt:
        err_console.print("interrupted" + (" (SIGTERM)" if shutdown.received() == signal.SIGTERM else ""))
        sys.exit(128 + (shutdown.received() or signal.SIGINT))
    except ForgeflowError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors come as ClickException
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    except BaseException:
        if shutdown.received() is None:
            raise
        err_console.print("interrupted" + (" (SIGTERM)" if shutdown.received() == signal.SIGTERM else ""))
        sys.exit(128 + shutdown.received())
    finally:
        api.stop_started_api()
        if whole_process:
            shutdown.kill_descendants(timeout=3.0)  # a worker or server that outlived its cluster's close


if __name__ == "__main__":
    main()
