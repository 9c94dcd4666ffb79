"""`forgeflow serve` (every deployment with its schedule, from this process) and `forgeflow deploy` (register them
with a Prefect server and a process work pool)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from forgeflow.flows.cli_common import JsonOpt, emit_json, err_console

FileOpt = typer.Option(None, "--file", help="Deployment file [env FORGEFLOW_DEPLOYMENTS; default deploy/prefect.yaml]")
OnlyOpt = typer.Option([], "--only", help="Only this deployment: FLOW or FLOW/NAME (repeatable)")


def _specs(file: Optional[Path], only: List[str]):
    from forgeflow.flows.deployments import available_specs, load_specs, select

    specs, missing = available_specs(select(load_specs(file), only))
    for m in missing:
        err_console.print(f"[yellow]skipped[/yellow] {m}", highlight=False)
    return specs


def serve(file: Optional[Path] = FileOpt, only: List[str] = OnlyOpt,
          limit: Optional[int] = typer.Option(None, "--limit", help="Most flow runs at once (default: no limit)"),
          dry_run: bool = typer.Option(False, "--dry-run", help="Build and list the deployments, serve nothing"),
          json_out: bool = JsonOpt) -> None:
    """Serve every deployment in deploy/prefect.yaml with its schedule from this process (no work pool needed).

    Against PREFECT_API_URL when set, else Prefect's ephemeral API. Runs write to FORGEFLOW_CATALOG and fan out to
    FORGEFLOW_DASK_ADDRESS (or a LocalCluster), as with the other commands. Stop with Ctrl-C.
    """
    from forgeflow.flows.deployments import build_deployment, serve_all

    specs = _specs(file, only)
    if not specs:
        from forgeflow.tasks.errors import ForgeflowError

        raise ForgeflowError("no deployment to serve")
    rows = [{"deployment": f"{build_deployment(s).flow_name}/{s.name}", "entrypoint": s.entrypoint,
             "schedules": [c.cron for c in s.schedules], "parameters": s.parameters} for s in specs]
    if dry_run:
        if json_out:
            emit_json({"deployments": rows})
        else:
            for r in rows:
                print(f"{r['deployment']:<36} {', '.join(r['schedules']) or '(no schedule)'}")
        return
    if json_out:
        emit_json({"serving": rows})
    serve_all(specs, limit=limit)


def deploy(file: Optional[Path] = FileOpt, only: List[str] = OnlyOpt,
           work_pool: Optional[str] = typer.Option(None, "--work-pool", help="Work pool for every deployment "
                                                   "[default: the pool in the deployment file]"),
           create_pool: bool = typer.Option(True, "--create-pool/--no-create-pool", help="Create a missing pool "
                                            "(type process)"),
           json_out: bool = JsonOpt) -> None:
    """Register every deployment in deploy/prefect.yaml with the Prefect server at PREFECT_API_URL and a work pool.

    Then run them with `prefect worker start --pool POOL` on machines that have forgeflow installed.
    """
    import os

    from forgeflow.flows.deployments import deploy_all
    from forgeflow.tasks.errors import ForgeflowError

    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise ForgeflowError("forgeflow deploy needs a Prefect server: set PREFECT_API_URL (e.g. "
                                 "http://127.0.0.1:4200/api after `prefect server start`); use `forgeflow serve` "
                                 "to run deployments without one")
    specs = _specs(file, only)
    if not specs:
        raise ForgeflowError("no deployment to register")
    try:
        out = deploy_all(specs, work_pool, create_pool=create_pool)
    except (OSError, RuntimeError) as exc:
        raise ForgeflowError(f"cannot register deployments with the Prefect API: {type(exc).__name__}: {exc}") \
            from None
    except Exception as exc:
        import httpx

        if isinstance(exc, httpx.HTTPError):
            raise ForgeflowError(f"cannot reach the Prefect API: {type(exc).__name__}: {exc}") from None
        raise
    if json_out:
        emit_json({"deployments": out})
        return
    for r in out:
        print(f"{r['deployment']:<36} pool {r['work_pool']:<12} {', '.join(r['schedules']) or '(no schedule)'}")
    pools = sorted({r["work_pool"] for r in out})
    err_console.print(f"registered {len(out)} deployments; start a worker: prefect worker start --pool {pools[0]}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("deploy")(deploy)
