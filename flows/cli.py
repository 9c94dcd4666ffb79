"""The `forgeflow` command line. Each domain adds its commands through `register(app)` in flows/cli_<domain>.py."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

import typer

from flows.cli_common import err_console
from tasks.errors import ForgeflowError

app = typer.Typer(name="forgeflow", no_args_is_help=True, add_completion=False,
                  help="Distributed orchestration of DNN deployment-optimization jobs (Prefect + Dask + Parquet catalog).")

# one line per domain; each module defines register(app)
COMMAND_MODULES = [
    "flows.cli_catalog",
    "flows.cli_profile",
    "flows.cli_quantize",
    "flows.cli_partition",
    "flows.cli_federate",
    "flows.cli_ops",
    "flows.cli_search",
    "flows.cli_optimize",
]


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
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns (not raises) typer.Exit's code here
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
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


if __name__ == "__main__":
    main()
