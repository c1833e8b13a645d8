"""``flowbank files``: uploads are written under the data dir, recorded in PostgreSQL and listed for support."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_fixtures import make_access

from dashboards import support_service as svc
from ingest.sim.uploader import put_file
from ingest.upload_server import UploadStore, make_server

pytestmark = pytest.mark.integration


@pytest.fixture()
def receiver(portal_dsn: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = UploadStore(tmp_path / "uploads", portal_dsn)
    server = make_server(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/upload", store.root
    server.shutdown()
    server.server_close()


def test_a_put_and_a_multipart_post_are_stored_and_listed(receiver: tuple[str, Path], portal_dsn: str) -> None:
    url, root = receiver
    assert put_file(f"{url}/SIM-0004/diagnostics-SIM-0004.log", b"line 1\n") == 201
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"log.zip\"\r\n"
            b"Content-Type: application/zip\r\n\r\nPK\x03\x04zip\r\n--B--\r\n")
    request = urllib.request.Request(f"{url}/SIM-0004", data=body, method="POST",  # noqa: S310 - local test server
                                     headers={"Content-Type": "multipart/form-data; boundary=B"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
        assert response.status == 201
    access = make_access(portal_dsn)
    support = access.principal("demo-support")
    files = svc.diagnostic_files(support, access, "SIM-0004")
    assert [(f.file_name, f.size_bytes, f.content_type) for f in files] == [
        ("log.zip", 7, "application/zip"), ("diagnostics-SIM-0004.log", 7, "text/plain; charset=utf-8")]
    record, data = svc.read_diagnostic_file(support, access, files[1].file_id, root)
    assert data == b"line 1\n" and record.path.startswith("SIM-0004/")
    assert not list(root.rglob("*.part"))


def test_unknown_chargers_and_bad_paths_are_refused(receiver: tuple[str, Path]) -> None:
    url, root = receiver
    assert put_file(f"{url}/NO-SUCH/x.log", b"x") == 404
    assert put_file(f"{url}/SIM-0004", b"x") == 400  # no file name
    with pytest.raises(urllib.error.HTTPError) as refused:
        other = urllib.request.Request(f"{url.rsplit('/', 1)[0]}/elsewhere/SIM-0004/x", data=b"x",  # noqa: S310
                                       method="PUT")
        urllib.request.urlopen(other, timeout=10)  # noqa: S310
    assert refused.value.code == 404
    refused.value.close()
    assert not root.exists() or not any(root.rglob("*.*"))
