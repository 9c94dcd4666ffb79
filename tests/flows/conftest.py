"""One full `forgeflow optimize` of the digits CNN for the flow tests (minutes on 2 cores), run once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def optimized_cnn(shared_prefect_api, tmp_path_factory):
    """``(catalog folder, completed process)`` of ``forgeflow optimize --model forgeflow:digits_cnn --stages 2
    --json`` as a user runs it: a fresh interpreter, its own Dask LocalCluster (one worker), reporting to the
    session's Prefect API. tests/flows/test_cli.py checks its output, reruns it and queries the catalog;
    tests/flows/test_optimize_flow.py checks the rows, lineage and Prefect artifact the flow wrote."""
    tmp = tmp_path_factory.mktemp("optimize_cnn")
    cat = str(tmp / "cat")
    env = {**os.environ, "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_HOME": str(tmp / "prefect_home")}
    p = subprocess.run([sys.executable, "-m", "forgeflow.flows.cli", "optimize", "--model", "forgeflow:digits_cnn",
                        "--stages", "2", "--catalog", cat, "--json"], capture_output=True, text=True, timeout=900,
                       env=env, cwd=ROOT)
    return cat, p
