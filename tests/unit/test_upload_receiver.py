"""Diagnostics uploads without a database: the receiver's parsing and the simulator's uploader."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from ingest.sim.uploader import put_file, start_upload, upload_url
from ingest.upload_server import UploadError, multipart_file, parse_target, safe_file_name


@pytest.mark.parametrize(("name", "safe"), [
    ("diagnostics-CP-1-20261126T120000Z.log", "diagnostics-CP-1-20261126T120000Z.log"),
    ("../../etc/passwd", "passwd"),
    ("C:\\logs\\my log.zip", "my_log.zip"),
    ("..", "upload.bin"),
])
def test_file_names_are_made_safe(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


def test_targets() -> None:
    assert parse_target("/upload/SIM-0001/a.log") == ("SIM-0001", "a.log")
    assert parse_target("/upload/SIM-0001?x=1") == ("SIM-0001", None)
    for bad in ("/other/SIM-0001/a.log", "/upload", "/upload/a%2Fb/x", "/upload/x/y/z"):
        with pytest.raises(UploadError):
            parse_target(bad)


def test_a_multipart_form_gives_its_file_part() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"diag.log\"\r\n"
            b"Content-Type: text/plain\r\n\r\nline 1\nline 2\n\r\n--XyZ--\r\n")
    name, data, ctype = multipart_file("multipart/form-data; boundary=XyZ", body)
    assert (name, data, ctype) == ("diag.log", b"line 1\nline 2\n", "text/plain")
    with pytest.raises(UploadError, match="no file part"):
        multipart_file("multipart/form-data; boundary=XyZ",
                       b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XyZ--\r\n")


def test_only_http_locations_are_uploaded_to() -> None:
    assert upload_url("http://h:8090/upload/CP-1/", "a b.log") == "http://h:8090/upload/CP-1/a%20b.log"
    assert upload_url("ftp://h/x", "a.log") is None
    assert start_upload("ftp://h/x", "a.log", b"x") is None


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        _Sink.received.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(HTTPStatus.CREATED)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture()
def sink() -> Iterator[str]:
    _Sink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/upload/CP-1"
    server.shutdown()
    server.server_close()


def test_the_simulator_puts_the_file_to_the_location(sink: str) -> None:
    thread = start_upload(sink, "diagnostics-CP-1.log", b"report\n")
    assert thread is not None
    thread.join(timeout=30)
    assert _Sink.received == [("PUT", "/upload/CP-1/diagnostics-CP-1.log", b"report\n")]


def test_an_unreachable_receiver_is_status_0() -> None:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        assert put_file(f"http://127.0.0.1:{port}/upload/CP-1/x.log", b"x", timeout_s=5) == 0
