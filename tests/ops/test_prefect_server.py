"""Deployments on a real `prefect server start` (SQLite in a temporary PREFECT_HOME) on 127.0.0.1:

- `forgeflow serve`: the deployment is registered with its cron schedule; a run triggered through the Prefect
  client is executed by the serving process and its rows land in the catalog;
- `forgeflow deploy` + `prefect worker start --type process`: the same through a work pool.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from tests.conftest import free_port
from tests.ops._procs import Proc, bin_path, forgeflow, http_ok, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect_server")]  # one worker starts the module's server

# a deployment of deploy/prefect.yaml whose run is light enough for a test (parameters overridden at trigger time)
DEPLOYMENT = "profile_models/nightly"
PARAMS = {"models": ["forgeflow:digits_cnn"], "repeats": 1, "warmup": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server with its own home and SQLite database; yields (env for children, API URL)."""
    home = tmp_path_factory.mktemp("prefect_server_home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_API_DATABASE_CONNECTION_URL":
           f"sqlite+aiosqlite:///{home}/prefect.db", "PREFECT_LOGGING_LEVEL": "INFO",
           "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    proc = Proc([bin_path("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
                 "--analytics-off"], home / "server.log", env=env)
    try:
        wait_until(lambda: http_ok(f"{api}/health"), 170, "prefect server health", procs=[proc])
        yield env, api
    finally:
        proc.stop()


def _client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Ctx:
        def __enter__(self):
            self.ts = temporary_settings(updates={PREFECT_API_URL: api})
            self.ts.__enter__()
            self.cm = get_client(sync_client=True)
            return self.cm.__enter__()

        def __exit__(self, *exc):
            self.cm.__exit__(*exc)
            self.ts.__exit__(*exc)

    return _Ctx()


def _trigger_and_wait(api: str, procs: list[Proc], timeout: float = 240) -> tuple[str, str]:
    """Create a flow run of DEPLOYMENT through the Prefect client and wait for a final state; (flow_run_id, state)."""
    with _client(api) as client:
        dep = client.read_deployment_by_name(DEPLOYMENT)
        assert [s.schedule.cron for s in dep.schedules] == ["30 3 * * *"]  # the schedule from deploy/prefect.yaml
        assert dep.entrypoint == "forgeflow.flows.deployments.profile_models"
        fr = client.create_flow_run_from_deployment(dep.id, parameters=PARAMS)

        def final():
            state = client.read_flow_run(fr.id).state
            return state if state is not None and state.is_final() else None

        state = wait_until(final, timeout, f"flow run {fr.id} to finish", interval=2, procs=procs)
        return str(fr.id), state.type.value


def _catalog_rows(cat_dir, flow_run_id: str) -> tuple[dict, int]:
    """The catalog's run row of Prefect flow run ``flow_run_id`` and the parameter count of the graph it wrote."""
    cat = open_catalog(str(cat_dir))
    runs = [r for r in cat.runs().to_pylist() if r["flow_run_id"] == flow_run_id]
    assert len(runs) == 1, runs
    graphs = cat.read("graphs", filter=pc.field("run_id") == runs[0]["run_id"]).to_pylist()
    assert [g["model"] for g in graphs] == PARAMS["models"]
    return runs[0], graphs[0]["params"]


def test_serve_runs_a_triggered_deployment(server, tmp_path):
    env, api = server
    cat = tmp_path / "cat"
    proc = Proc([*_forgeflow_cmd(), "serve", "--only", DEPLOYMENT], tmp_path / "serve.log",
                env={**env, "FORGEFLOW_CATALOG": str(cat)})
    try:
        def registered():
            with _client(api) as client:
                try:
                    return client.read_deployment_by_name(DEPLOYMENT)
                except Exception:
                    return None

        wait_until(registered, 150, "forgeflow serve to register its deployment", interval=2, procs=[proc])
        flow_run_id, state = _trigger_and_wait(api, [proc])
        assert state == "COMPLETED", proc.output()
        run, params = _catalog_rows(cat, flow_run_id)
        assert run["status"] == "completed" and run["flow"] == "profile_models"
        assert params == 6186  # digits_cnn's parameter count, written by the served run
        assert json.loads(run["parameters"])["models"] == PARAMS["models"]
    finally:
        proc.stop()


def test_deploy_to_process_work_pool(server, tmp_path):
    env, api = server
    cat = tmp_path / "cat"
    pool = f"ff-{uuid.uuid4().hex[:6]}"
    p = forgeflow("deploy", "--work-pool", pool, "--json", env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    registered = json.loads(p.stdout.strip().splitlines()[-1])["deployments"]
    names = {r["deployment"] for r in registered}
    assert {DEPLOYMENT, "optimize/nightly", "quantize/weekly"} <= names and len(names) >= 5
    assert all(r["work_pool"] == pool for r in registered)
    with _client(api) as client:
        assert client.read_work_pool(pool).type == "process"
    worker = Proc([bin_path("prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"],
                  tmp_path / "worker.log", env={**env, "FORGEFLOW_CATALOG": str(cat)})
    try:
        time.sleep(1)
        flow_run_id, state = _trigger_and_wait(api, [worker])
        assert state == "COMPLETED", worker.output()
        run, params = _catalog_rows(cat, flow_run_id)
        assert run["status"] == "completed" and params == 6186
    finally:
        worker.stop()


def _forgeflow_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "forgeflow.flows.cli"]


def test_prefect_cli_reads_the_same_file(server, tmp_path):
    """`prefect deploy --all --prefect-file deploy/prefect.yaml` registers the same deployments (module entrypoints,
    crons and pool from the anchors) without forgeflow in between."""
    import subprocess

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forgeflow.flows.deployments import ensure_work_pool

    env, api = server
    with temporary_settings(updates={PREFECT_API_URL: api}):
        ensure_work_pool("forgeflow")  # the pool named in the file's anchor
    p = subprocess.run([bin_path("prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"],
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, **env}, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    with _client(api) as client:
        dep = client.read_deployment_by_name("quantize/weekly")
        assert dep.entrypoint == "forgeflow.flows.deployments.quantize"
        assert [s.schedule.cron for s in dep.schedules] == ["0 4 * * 0"]
        assert dep.parameters["request"]["size_budget"] == 4096
        assert dep.work_pool_name == "forgeflow"  # re-registered by the Prefect CLI from the anchor
