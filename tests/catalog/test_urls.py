"""Opening catalogs: URL schemes, unreachable stores, credentials kept out of URLs."""

import pytest

from forgeflow.catalog import CatalogError, open_catalog
from tests.conftest import free_port


@pytest.mark.parametrize("url", ["ftp://host/x", "gs://bucket/x", "http://example.com/catalog"])
def test_unknown_scheme(url):
    with pytest.raises(CatalogError, match="unsupported catalog URL scheme"):
        open_catalog(url)


def test_unreachable_s3_endpoint():
    port = free_port()  # nothing listens there
    with pytest.raises(CatalogError, match="cannot reach S3 catalog"):
        open_catalog("s3://bucket/prefix", endpoint_url=f"http://127.0.0.1:{port}")


def test_missing_bucket(s3_server):
    with pytest.raises(CatalogError, match="does not exist"):
        open_catalog("s3://no-such-bucket-here/prefix", endpoint_url=s3_server)


def test_credentials_in_url_are_refused():
    with pytest.raises(CatalogError, match="credentials"):
        open_catalog("s3://AKIA:secret@bucket/prefix")


def test_file_url_and_plain_path_are_the_same(tmp_path):
    a = open_catalog(f"file://{tmp_path}/c")
    b = open_catalog(str(tmp_path / "c"))
    a.append("runs", [{"flow": "f", "status": "running"}], run_id="r")
    assert b.read("runs").num_rows == 1
