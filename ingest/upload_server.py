"""``flowbank files``: the HTTP endpoint chargers upload diagnostics and logs to (GetDiagnostics / GetLog).

The support console asks a charger to upload to ``<upload_base_url>/<charger_id>`` (see
``Settings.upload_base_url``). Chargers differ in how they send the file, so three forms are
accepted:

* ``PUT /upload/<charger_id>/<file name>`` with the bytes as the body;
* ``POST /upload/<charger_id>`` with ``multipart/form-data`` (the first part with a file name);
* ``POST /upload/<charger_id>/<file name>`` with the bytes as the body.

Each file is written to ``<data_dir>/uploads/<charger_id>/<UTC stamp>-<file name>`` (written to
a temporary name first, then renamed, so a half-received file is never listed) and recorded in
``diagnostic_files`` (warehouse/support_store.py), which is what the troubleshooting page lists.
Only chargers in the registry may upload; a file is at most :data:`MAX_UPLOAD_BYTES`.

A small standard-library server (``ThreadingHTTPServer``): uploads are rare and one-off.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import psycopg

from control.settings import Settings
from control.support import UPLOADS_SUBDIR
from warehouse import support_store

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(ValueError):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class StoredUpload:
    charger_id: str
    file_name: str
    path: Path
    size_bytes: int
    sha256: str


def safe_file_name(name: str) -> str:
    """A file name without directories or odd characters (``../x y.log`` -> ``x_y.log``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base).strip("._")[:120]
    return cleaned or "upload.bin"


def parse_target(path: str) -> tuple[str, str | None]:
    """``/upload/<charger_id>[/<file name>]`` -> (charger_id, file name or None)."""
    parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
    if len(parts) not in (2, 3) or parts[0] != "upload" or not parts[1] or _SAFE_NAME.search(parts[1]):
        raise UploadError(HTTPStatus.NOT_FOUND, "upload to /upload/<charger_id>[/<file name>]")
    return parts[1], (parts[2] if len(parts) == 3 else None)


def multipart_file(content_type: str, body: bytes) -> tuple[str, bytes, str | None]:
    """The first file part of a ``multipart/form-data`` body: (file name, bytes, content type)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise UploadError(HTTPStatus.BAD_REQUEST, "expected multipart/form-data")
    for part in message.iter_parts():
        name = part.get_filename()
        if name:
            data = part.get_payload(decode=True)
            return name, data if isinstance(data, bytes) else b"", part.get_content_type()
    raise UploadError(HTTPStatus.BAD_REQUEST, "the form has no file part")


class UploadStore:
    """Writes the bytes under ``root`` and records them in PostgreSQL."""

    def __init__(self, root: Path, dsn: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.root, self._dsn, self._clock = root, dsn, clock

    def known_charger(self, charger_id: str) -> bool:
        with psycopg.connect(self._dsn, connect_timeout=5) as conn:
            return conn.execute("select 1 from chargers where charger_id = %s", (charger_id,)).fetchone() is not None

    def store(self, charger_id: str, file_name: str, data: bytes, content_type: str | None) -> StoredUpload:
        now = self._clock()
        name = safe_file_name(file_name)
        relative = Path(charger_id) / f"{now:%Y%m%dT%H%M%S%fZ}-{name}"
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        digest = hashlib.sha256(data).hexdigest()
        with psycopg.connect(self._dsn, connect_timeout=5) as conn:
            support_store.record_upload(conn, charger_id=charger_id, file_name=name, path=relative.as_posix(),
                                        size_bytes=len(data), sha256=digest, content_type=content_type,
                                        received_at=now)
        return StoredUpload(charger_id, name, target, len(data), digest)


def _handler(store: UploadStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FlowBankUpload/1"

        def log_message(self, format: str, *args: object) -> None:
            log.info("upload %s: " + format, self.client_address[0], *args)

        def _reply(self, status: HTTPStatus, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _receive(self) -> None:
            try:
                charger_id, name = parse_target(self.path)
                length = int(self.headers.get("Content-Length") or "-1")
                if length < 0:
                    raise UploadError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length")
                if length > MAX_UPLOAD_BYTES:
                    raise UploadError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_UPLOAD_BYTES} bytes")
                if not store.known_charger(charger_id):
                    raise UploadError(HTTPStatus.NOT_FOUND, f"unknown charger {charger_id}")
                body = self.rfile.read(length)
                ctype = self.headers.get("Content-Type") or ""
                if self.command == "POST" and ctype.startswith("multipart/form-data"):
                    name, body, part_type = multipart_file(ctype, body)
                    ctype = part_type or ""
                if name is None:
                    raise UploadError(HTTPStatus.BAD_REQUEST, "name the file: /upload/<charger_id>/<file name>")
                stored = store.store(charger_id, name, body, ctype or None)
            except UploadError as exc:
                self._reply(exc.status, str(exc))
                return
            except (psycopg.Error, OSError) as exc:
                log.error("upload failed: %s", exc)
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, "could not store the file; try again")
                return
            log.info("stored %s from %s (%d bytes)", stored.file_name, stored.charger_id, stored.size_bytes)
            self._reply(HTTPStatus.CREATED, f"stored {stored.file_name} ({stored.size_bytes} bytes)")

        def do_PUT(self) -> None:
            self._receive()

        def do_POST(self) -> None:
            self._receive()

    return Handler


def make_server(store: UploadStore, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(store))
    server.daemon_threads = True
    return server


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / UPLOADS_SUBDIR


def run_upload_server(settings: Settings, *, host: str | None = None, port: int | None = None,
                      stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C (or ``stop`` is set)."""
    store = UploadStore(uploads_dir(settings), settings.pg_dsn.reveal())
    server = make_server(store, host or settings.bridge_host, port or settings.upload_port)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    log.info("diagnostics uploads on http://%s:%d/upload (files under %s)", bound_host, bound_port, store.root)
    print(f"receiving diagnostics uploads on http://{bound_host}:{bound_port}/upload; files under {store.root}",
          flush=True)
    if stop is not None:
        def stop_when_set() -> None:
            stop.wait()
            server.shutdown()

        threading.Thread(target=stop_when_set, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
