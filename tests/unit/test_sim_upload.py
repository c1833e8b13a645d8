"""Simulated chargers upload their diagnostics (1.6 GetDiagnostics) and logs (2.0.1 GetLog) over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ocpp.v16 import call as call16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201.enums import Action as Action201
from test_sim_loopback import Csms16, Csms201, Received, sim_args, start_csms

from ingest.sim._ocpp import after
from ingest.sim.cli import run


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        _Sink.received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(HTTPStatus.CREATED)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture()
def sink() -> Iterator[str]:
    _Sink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/upload"
    server.shutdown()
    server.server_close()


def test_both_versions_upload_to_the_location_they_are_given(tmp_path: Path, sink: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, str] = {}

    class Diag16(Csms16):
        @after(Action16.boot_notification)
        async def ask_for_diagnostics(self, **_: Any) -> None:
            result = await self.call(call16.GetDiagnostics(location=f"{sink}/{self.id}"))
            answers[self.id] = result.file_name

    class Log201(Csms201):
        @after(Action201.boot_notification)
        async def ask_for_log(self, **_: Any) -> None:
            result = await self.call(call201.GetLog(log={"remote_location": f"{sink}/{self.id}"},
                                                    log_type="DiagnosticsLog", request_id=7))
            answers[self.id] = result.filename

    import test_sim_loopback

    monkeypatch.setattr(test_sim_loopback, "Csms16", Diag16)
    monkeypatch.setattr(test_sim_loopback, "Csms201", Log201)
    rx = Received()
    args = sim_args(tmp_path, "--duration", "60")

    async def scenario() -> None:
        server, url = await start_csms(rx)
        stop = asyncio.Event()
        task = asyncio.create_task(run(args, url=url, stop=stop))
        deadline = time.monotonic() + 45
        while (len(answers) < 2 or len(_Sink.received) < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await task
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    assert len(answers) == 2, answers
    uploaded = dict(_Sink.received)
    for charger_id, file_name in answers.items():
        body = uploaded[f"/upload/{charger_id}/{file_name}"]
        assert body.startswith(b"# FlowSim ") and f"of {charger_id}".encode() in body
        assert b"config.HeartbeatInterval=" in body

