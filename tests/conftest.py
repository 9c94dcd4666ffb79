"""Shared fixtures: a moto S3 server on 127.0.0.1, catalogs on every backend, a Prefect test harness."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

# s3fs/botocore against moto: only send checksums when required; never touch real AWS credentials
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")

# Prefect's console handler on the root logger binds sys.stderr when logging is first set up. Set it up now, while
# sys.stderr is pytest's session-long capture: set up inside a test it would bind that test's capsys stream, which is
# closed after the test, and a later log record (dp-accounting's absl, at a later test or at exit) kills the run with
# "lost sys.stderr".
from prefect.logging.configuration import setup_logging  # noqa: E402

setup_logging()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server) on 127.0.0.1 with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"ff-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def catalog_url(request, tmp_path):
    """(url, endpoint) of an empty catalog on each backend: the conformance suite runs against both."""
    if request.param == "local":
        return str(tmp_path / "catalog"), None
    endpoint = request.getfixturevalue("s3_server")
    return f"s3://{make_bucket(endpoint)}/catalog", endpoint


@pytest.fixture
def catalog(catalog_url):
    from forgeflow.catalog import open_catalog

    url, endpoint = catalog_url
    return open_catalog(url, endpoint_url=endpoint)


_API: dict = {}  # the session's Prefect API server (pytest_sessionstart): its URL and whether it answered yet


def _worker(config) -> bool:
    """Whether this process is a pytest-xdist worker (the main process starts the server and the optimize run)."""
    return hasattr(config, "workerinput")


def pytest_sessionstart(session):
    """Start the session's Prefect API server (below) now, without waiting for it: it comes up (10-40 s on 2 cores)
    while the tests are collected and the catalog tests (no Prefect) run. Under pytest-xdist the main process starts it
    before its workers (``FORGEFLOW_TEST_API_URL`` in their environment), and each worker reports to it with a Prefect
    home of its own; the folder of the session's one background optimize (tests/flows/_optimize.py) is shared the same
    way (``FORGEFLOW_TEST_OPTIMIZE_DIR``)."""
    if session.config.getoption("collectonly", False):
        return
    import tempfile
    from pathlib import Path

    if _worker(session.config):
        if os.environ.get("FORGEFLOW_TEST_API_URL"):
            home = Path(tempfile.mkdtemp(prefix="forgeflow-test-prefect-home-"))
            os.environ["PREFECT_HOME"] = str(home)
            _API.update(url=os.environ["FORGEFLOW_TEST_API_URL"], home=home, ready=False)
        return
    tmp = Path(tempfile.mkdtemp(prefix="forgeflow-test-optimize-"))
    _API["optimize_tmp"] = tmp
    os.environ["FORGEFLOW_TEST_OPTIMIZE_DIR"] = str(tmp)
    if os.environ.get("PREFECT_API_URL"):
        return
    home = Path(tempfile.mkdtemp(prefix="forgeflow-test-prefect-home-"))
    os.environ["PREFECT_HOME"] = str(home)
    from forgeflow.flows.api import LocalServer

    server = LocalServer(log=home / "server.log")
    _API.update(server=server, url=server.api_url, home=home, ready=False)
    os.environ["FORGEFLOW_TEST_API_URL"] = server.api_url


def _wait_api(timeout: float = 240) -> str:
    server = _API.get("server")
    if server is not None:
        return server.wait(timeout=timeout)
    import time

    from forgeflow.flows.api import healthy

    deadline = time.monotonic() + timeout
    while not healthy(_API["url"], timeout=0.5):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the session's Prefect API {_API['url']} did not answer within {timeout:.0f} s")
        time.sleep(0.1)
    return _API["url"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of a test that may talk to the API (every test outside tests/catalog): wait until the
    session's server answers, then point the environment (CLI subprocesses, in-process flows) at it."""
    if _API.get("url") is None or _API["ready"]:
        return
    if item.path.parent.name == "catalog" and "prefect_harness" not in item.fixturenames:
        return
    os.environ["PREFECT_API_URL"] = _wait_api()
    _API["ready"] = True


def pytest_collection_finish(session):
    """When a collected test uses the session's one full `forgeflow optimize` (tests/flows/_optimize.py), start it
    now in the background, with the environment as it is before any test; it waits for the API. Under pytest-xdist
    the first worker to claim the session's folder starts it and the others share it."""
    if session.config.getoption("collectonly", False) or not os.environ.get("FORGEFLOW_TEST_OPTIMIZE_DIR"):
        return
    if not any("optimized_cnn" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    url = _API.get("url") or os.environ.get("PREFECT_API_URL")
    if not url:
        return
    from tests.flows._optimize import STARTED, OptimizeRun

    STARTED["digits_cnn"] = OptimizeRun.start(os.environ["FORGEFLOW_TEST_OPTIMIZE_DIR"], dict(os.environ), url)


def pytest_sessionfinish(session):
    import shutil

    if _worker(session.config):
        return
    from tests.flows._optimize import OptimizeRun

    if _API.get("optimize_tmp"):
        OptimizeRun(_API["optimize_tmp"]).stop()
        shutil.rmtree(_API["optimize_tmp"], ignore_errors=True)
    server = _API.pop("server", None)  # still here when no test ran here (shared_prefect_api stops it otherwise)
    if server is not None:
        server.stop()
        shutil.rmtree(_API["home"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def shared_prefect_api(tmp_path_factory):
    """One real Prefect API server (Prefect's app under uvicorn on 127.0.0.1, SQLite in a temporary PREFECT_HOME) for
    the whole session, as `forgeflow up` gives a user: every CLI subprocess and in-process flow reports to it
    (``PREFECT_API_URL`` in the environment) instead of starting a temporary server of its own, seconds each.
    Started with the session and waited for before the first test outside tests/catalog (pytest_runtest_setup).
    Tests of the cold path take PREFECT_API_URL out of their child's environment. A developer's own `forgeflow up`
    is kept out (a temporary FORGEFLOW_STATE_DIR)."""
    os.environ["FORGEFLOW_STATE_DIR"] = str(tmp_path_factory.mktemp("forgeflow_state"))
    if _API.get("url") is None:  # given by the environment
        yield os.environ.get("PREFECT_API_URL")
        return
    try:
        yield _API["url"]
    finally:
        import shutil

        from forgeflow.flows.api import _drain_prefect

        if _API.get("ready"):
            _drain_prefect()  # this process's Prefect logs and events reach the server before it stops
        os.environ.pop("PREFECT_API_URL", None)
        server = _API.pop("server", None)  # the main process's (an xdist worker's stops with the main process)
        if server is not None:
            server.stop()
        shutil.rmtree(_API["home"], ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness(shared_prefect_api):
    """Real Prefect for in-process flows: this process's settings point at the session's API server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: shared_prefect_api}):
        yield os.environ.get("PREFECT_HOME")
