"""One full `forgeflow optimize` of the digits CNN for the flow tests (minutes on 2 cores), run once per session."""

from __future__ import annotations

import os

import pytest

from tests.flows._optimize import STARTED, OptimizeRun


@pytest.fixture(scope="session")
def optimized_cnn(shared_prefect_api, tmp_path_factory):
    """``(catalog folder, completed process)`` of ``forgeflow optimize --model forgeflow:digits_cnn --stages 2
    --json`` as a user runs it: a fresh interpreter, its own Dask LocalCluster (one worker), reporting to the
    session's Prefect API (tests/flows/_optimize.py; usually started in the background when the tests were collected,
    tests/conftest.py, and shared by every xdist worker). tests/flows/test_cli.py checks its output, reruns it and
    queries the catalog; tests/flows/test_optimize_flow.py checks the rows, lineage and Prefect artifact the flow wrote."""
    run = STARTED.get("digits_cnn")
    if run is None:  # not started in the background: start it now (or join the run another xdist worker started)
        tmp = os.environ.get("FORGEFLOW_TEST_OPTIMIZE_DIR") or tmp_path_factory.mktemp("optimize_cnn")
        run = OptimizeRun.start(tmp, dict(os.environ), shared_prefect_api)
        STARTED["digits_cnn"] = run
    return run.wait()
