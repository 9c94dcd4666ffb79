"""S3 faults: the S3 server (moto on 127.0.0.1) stops in the middle of `optimize`, right after its first step
committed. The next step fails cleanly (retried, then failed, nothing torn or half-listed in the bucket); after the
server restarts, a rerun completes and reuses the finished step instead of recomputing it."""

from __future__ import annotations

import boto3
import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.catalog.verify import verify_catalog
from tests.conftest import free_port
from tests.ops._s3 import RestartableS3

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = RestartableS3(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _keys(endpoint: str, bucket: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys, token = [], None
    while True:
        kw = {"Bucket": bucket, **({"ContinuationToken": token} if token else {})}
        page = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def test_s3_stops_mid_flow_then_rerun_reuses_finished_step(s3, prefect_harness):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.optimize import optimize_flow

    bucket = "ff-faults"
    boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/cat"
    flow = optimize_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    params = dict(model="forgeflow:digits_cnn", stages=2, catalog=url, s3_endpoint=s3.endpoint)

    # stop the server at the first write of the next step, once the summary step finished: its file, its step_cache
    # row (tasks.step_cache) and their lineage are written (a file may take more than one PUT: temporary + copy)
    seen: set[str] = set()

    def stop_after_first_step(method: str, path: str) -> bool:
        if method != "PUT":
            return False
        if "/tables/model_summaries/" in path:
            seen.add("summary")
        elif "/tables/step_cache/" in path:
            seen.add("cache")
        elif "/tables/artifacts/" not in path and "/tables/runs/" not in path and seen == {"summary", "cache"}:
            return True
        return False

    s3.stop_before = stop_after_first_step
    with pytest.raises(Exception) as failure:
        flow(**params)
    assert not s3.running and seen == {"summary", "cache"}, "the server did not stop mid-flow"
    assert "Traceback" not in str(failure.value)

    # restart: the bucket holds only whole objects, each listed one readable, and nothing the failed step tore
    s3.start()
    keys = _keys(s3.endpoint, bucket)
    cat = open_catalog(url, endpoint_url=s3.endpoint)
    report = verify_catalog(cat)
    assert not report.damaged and report.count("orphan") == 0, report.to_dict()
    assert report.files_checked == sum(k.endswith(".parquet") for k in keys)
    summary_files = cat.visible_files("model_summaries")
    assert len(summary_files) == 1
    failed_run = cat.runs().to_pylist()
    assert len(failed_run) == 1 and failed_run[0]["status"] == "running"  # its end was never recorded: S3 was down
    assert cat.read("quant_models").num_rows == 0  # the step after the stop wrote nothing

    # rerun: completes, and the summary step is a cache hit (no second model_summaries file)
    result = flow(**params)
    assert result["model_summary"]["file"] == summary_files[0]
    assert cat.visible_files("model_summaries") == summary_files
    run = cat.run(result["run_id"])
    assert run["status"] == "completed"
    assert cat.read("quant_models", filter=pc.field("run_id") == result["run_id"]).num_rows >= 1
    report = verify_catalog(cat)
    assert not report.damaged and report.count("orphan") == 0, report.to_dict()
