"""Security checks: credentials never reach logs, Prefect's database or the catalog; the SQL surface cannot read
files or the environment; keys cannot escape the catalog root; model weights never load through pickle."""

from __future__ import annotations

import ast
import json
import uuid
from pathlib import Path

import pytest

from forgeflow.catalog import CatalogError, ReadOnlySQLError
from tests.conftest import make_bucket
from tests.ops._procs import REPO, forgeflow


def _torch_load_calls(root: Path) -> list[str]:
    """`torch.load(...)` calls (also `load` imported from torch) without ``weights_only=True``."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if any(part in {".git", "build", ".venv", "node_modules"} for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue
        from_torch = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                      and n.module == "torch" for a in n.names if a.name == "load"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            is_torch_load = (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                             and f.value.id == "torch") or (isinstance(f, ast.Name) and f.id in from_torch)
            if not is_torch_load:
                continue
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            if not safe:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    return offenders


def test_model_weights_never_unpickled():
    """Every torch.load in the tree passes weights_only=True (weights are otherwise safetensors objects)."""
    assert _torch_load_calls(REPO) == []


def test_torch_load_scanner_finds_offenders(tmp_path):
    (tmp_path / "a.py").write_text("import torch\ntorch.load('w.pt')\ntorch.load('w.pt', weights_only=True)\n")
    (tmp_path / "b.py").write_text("from torch import load as L\nL('w.pt', weights_only=False)\n")
    assert _torch_load_calls(tmp_path) == ["a.py:2", "b.py:2"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM sniff_csv('/etc/hostname')",
    "SELECT * FROM read_json('/etc/hostname')",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM runs, read_parquet('/tmp/*.parquet')",
    "EXPORT DATABASE '/tmp/forgeflow-export'",
    "CALL pragma_version()",
])
def test_sql_cannot_reach_files(tmp_path, sql):
    from forgeflow.catalog import open_catalog

    cat = open_catalog(str(tmp_path / "c"))
    cat.append("runs", [{"flow": "f", "status": "completed"}], run_id="r")
    with pytest.raises(ReadOnlySQLError):
        cat.query(sql)


@pytest.mark.parametrize("sql", ["SELECT getenv('AWS_SECRET_ACCESS_KEY') AS s", "SELECT * FROM '/etc/hostname'"])
def test_sql_cannot_read_environment_or_paths(tmp_path, monkeypatch, sql):
    from forgeflow.catalog import open_catalog

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-xyz")
    cat = open_catalog(str(tmp_path / "c"))
    with pytest.raises(CatalogError) as exc:
        cat.query(sql)
    assert "env-secret-xyz" not in str(exc.value)


def test_object_keys_cannot_escape_the_root(tmp_path):
    from forgeflow.catalog import open_catalog
    from forgeflow.catalog.errors import UnknownTableError

    cat = open_catalog(str(tmp_path / "c"))
    (tmp_path / "outside.txt").write_text("private")
    for key in ["objects/../../outside.txt", "../outside.txt", "objects/ab/../../../outside.txt"]:
        with pytest.raises(CatalogError):
            cat.get_object(key)
    with pytest.raises(CatalogError):
        cat.get_object("tables/runs/x.parquet")  # objects only
    with pytest.raises(CatalogError, match="unsafe"):
        cat.put_object(b"x", suffix="/../../escape")
    with pytest.raises(UnknownTableError):
        cat.append("../runs", [{"flow": "f"}], run_id="r")
    with pytest.raises(CatalogError, match="unsafe"):
        cat.store.put("tables/runs/day=../../../escape.parquet", b"x")
    assert not (tmp_path / "escape").exists() and not list(tmp_path.glob("escape*"))


@pytest.mark.slow
def test_aws_secret_never_logged_or_stored(s3_server, tmp_path):
    """A real run against S3 (moto on 127.0.0.1) with a recognisable secret key: the secret appears in no output,
    no Prefect database or log file, no catalog object; the access key id is not stored either."""
    secret = f"SeCrEt{uuid.uuid4().hex}"
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    bucket = make_bucket(s3_server)
    url = f"s3://{bucket}/cat"
    home = tmp_path / "prefect_home"
    # PREFECT_API_URL emptied: the run starts its own API on this PREFECT_HOME, whose database is scanned below
    env = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": key_id, "PREFECT_HOME": str(home),
           "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_LOGGING_LEVEL": "DEBUG", "PREFECT_API_URL": ""}
    p = forgeflow("profile", "--model", "forgeflow:digits_cnn", "--repeats", "1", "--warmup", "1", "--catalog", url,
                  "--s3-endpoint", s3_server, "--json", env=env, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    run_id = json.loads(p.stdout.strip().splitlines()[-1])["run_id"]
    assert secret not in p.stdout + p.stderr
    # everything Prefect kept: its SQLite database (flow-run parameters, logs), result storage, log files
    scanned = 0
    for f in home.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            scanned += 1
            assert secret.encode() not in data, f
            assert key_id.encode() not in data, f
    assert scanned > 0
    # everything in the bucket
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any("tables/graphs/" in k for k in keys)
    for k in keys:
        body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert secret.encode() not in body and key_id.encode() not in body, k
    from forgeflow.catalog import open_catalog

    run = open_catalog(url, endpoint_url=s3_server).run(run_id)
    assert run["status"] == "completed" and secret not in json.dumps(run, default=str)
