"""The `forgeflow` command line. Each domain adds its commands through `register(app)` in flows/cli_<domain>.py.

Importing this module is cheap (standard library only): the console command first offers itself to the warm command
server of a running `forgeflow up` (``flows.warm_client``), and only builds the typer app (``app``, on first use) when
it runs in-process.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Optional

# commands that run a Prefect flow (they get one local API unless PREFECT_API_URL or `forgeflow up` gives one)
FLOW_COMMANDS = {"optimize", "profile", "quantize", "partition", "federate", "search", "plan", "verify"}

# one line per domain; each module defines register(app)
COMMAND_MODULES = [
    "forgeflow.flows.cli_catalog",
    "forgeflow.flows.cli_profile",
    "forgeflow.flows.cli_quantize",
    "forgeflow.flows.cli_partition",
    "forgeflow.flows.cli_federate",
    "forgeflow.flows.cli_ops",
    "forgeflow.flows.cli_search",
    "forgeflow.flows.cli_latency",
    "forgeflow.flows.cli_up",
    "forgeflow.flows.cli_verify",
    "forgeflow.flows.cli_optimize",
    "forgeflow.flows.cli_plan",
]


def build_app():
    import typer

    app = typer.Typer(name="forgeflow", no_args_is_help=True, add_completion=False,
                      help="Distributed orchestration of DNN deployment-optimization jobs (Prefect + Dask + Parquet "
                      "catalog).")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(app)
    return app


_app = None


def __getattr__(name: str):
    global _app
    if name == "app":  # built on first use: `from forgeflow.flows.cli import app` still works
        if _app is None:
            _app = build_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: a ForgeflowError becomes one line on stderr and exit code 2."""
    from forgeflow.flows.warm_client import ENV_DEFAULTS, forward

    if argv is None:  # the console command: the warm command server of `forgeflow up` runs it, if it can
        rc = forward(sys.argv[1:])
        if rc is not None:
            sys.exit(rc)
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from forgeflow.flows import api, shutdown

    whole_process = argv is None  # the console command (not a call from Python): it owns its process
    if whole_process:
        shutdown.install()  # Ctrl-C / SIGTERM: bounded shutdown, nothing left running
        import atexit
        import gc

        # Registered first, so it runs after every later atexit handler (Prefect's flushes, the API's stop): the
        # exit then skips a full GC scan of the ~500,000 objects torch and Prefect leave (1-3 s); see tasks/dask_worker.py
        atexit.register(gc.freeze)
    import typer

    from forgeflow.flows.cli_common import err_console
    from forgeflow.tasks.errors import ForgeflowError

    from forgeflow.flows import cli_common

    cli_common.EARLY_CLUSTER = whole_process
    try:
        args = sys.argv[1:] if whole_process else []
        if args and args[0] in FLOW_COMMANDS and "--help" not in args:
            api.start_api_early()  # this command's one Prefect API comes up while it imports and validates
        app = __getattr__("app")  # every command module
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
        if shutdown.received() is not None:  # an error the interrupt caused (e.g. inside an import or a C extension)
            err_console.print("interrupted" + (" (SIGTERM)" if shutdown.received() == signal.SIGTERM else ""))
            sys.exit(128 + shutdown.received())
        import click

        if any(c.__name__ == "UsageError" for c in type(exc).__mro__) and hasattr(exc, "format_message"):
            # a bad option value (typer's own click): one line naming the option, exit 2, nothing run
            err_console.print(f"[red]error:[/red] {exc.format_message()}", highlight=False, soft_wrap=True)
            sys.exit(2)

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
        if "forgeflow.flows.runtime" in sys.modules:  # a LocalCluster started early by a command that failed first
            sys.modules["forgeflow.flows.runtime"].stop_early_cluster()
        api.stop_started_api()
        if whole_process:
            shutdown.kill_descendants(timeout=3.0)  # a worker or server that outlived its cluster's close


if __name__ == "__main__":
    main()
