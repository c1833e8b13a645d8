"""One websocket connection to the CSMS, as the charger side of OCPP-J.

Outgoing CALLs are sent as raw frames (so the simulator can also send duplicated and broken
ones) and matched to their CALLRESULT/CALLERROR by message id. Only one CALL is in flight at a
time, as OCPP-J requires. Schema validation of our own CALLs is optional (off for benchmarks).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from ingest.sim._ocpp import validate_outgoing
from ingest.sim.faults import DuplicateMode


class LinkClosed(ConnectionError):
    """The connection went away while a CALL was waiting for its answer."""


class CallErrorReply(Exception):
    """The CSMS answered a CALL with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code} {description}".strip())
        self.code = code


def basic_auth_header(charger_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


async def open_connection(base_url: str, charger_id: str, *, subprotocol: str, password: str | None,
                          open_timeout_s: float = 10.0) -> ClientConnection:
    """Connect to ``<base_url>/<charger_id>`` offering one OCPP subprotocol (Basic auth if a password)."""
    ws = await connect(
        f"{base_url.rstrip('/')}/{charger_id}",
        subprotocols=[Subprotocol(subprotocol)],
        additional_headers=basic_auth_header(charger_id, password) if password is not None else None,
        open_timeout=open_timeout_s,
        proxy=None,  # a charger talks to its CSMS directly
        compression=None,
        max_size=4 * 1024 * 1024,
    )
    if ws.subprotocol != subprotocol:
        await ws.close()
        raise ConnectionError(f"CSMS did not accept subprotocol {subprotocol} (got {ws.subprotocol!r})")
    return ws


class Link:
    def __init__(self, ws: ClientConnection, *, ocpp_version: str, new_id: Callable[[], str],
                 validate: bool = True, response_timeout_s: float = 30.0) -> None:
        self.ws = ws
        self._version = ocpp_version
        self._new_id = new_id
        self._validate = validate
        self._timeout = response_timeout_s
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    def deliver(self, message: list[Any]) -> None:
        """A CALLRESULT or CALLERROR arrived; wake whoever waits for it (strays are ignored)."""
        future = self._pending.pop(str(message[1]), None)
        if future is not None and not future.done():
            future.set_result(message)

    def close(self) -> None:
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkClosed("connection closed"))
        self._pending.clear()

    async def call(self, action: str, payload: dict[str, Any], *,
                   duplicate: DuplicateMode | None = None) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload; raise on CALLERROR or timeout."""
        unique_id = self._new_id()
        if self._validate:
            validate_outgoing(action, payload, self._version)
        frame = json.dumps([2, unique_id, action, payload], separators=(",", ":"))
        async with self._lock:
            reply = await self._exchange(unique_id, [frame, frame] if duplicate == "same_id" else [frame])
            if duplicate == "new_id":  # a retransmission with a fresh id, after the first answer
                again = self._new_id()
                again_frame = json.dumps([2, again, action, payload], separators=(",", ":"))
                try:
                    await self._exchange(again, [again_frame])
                except (TimeoutError, LinkClosed):
                    pass
        if reply[0] == 4:
            raise CallErrorReply(action, str(reply[2]), str(reply[3]) if len(reply) > 3 else "")
        result = reply[2] if len(reply) > 2 else {}
        return result if isinstance(result, dict) else {}

    async def send_raw(self, text: str, *, reply_id: str | None, timeout_s: float = 5.0) -> list[Any] | None:
        """Send a frame as is; wait briefly for an answer when it carries a readable id."""
        async with self._lock:
            if reply_id is None:
                await self.ws.send(text)
                return None
            try:
                return await self._exchange(reply_id, [text], timeout_s=timeout_s)
            except TimeoutError:
                return None

    async def _exchange(self, unique_id: str, frames: list[str], *, timeout_s: float | None = None) -> list[Any]:
        if self._closed:
            raise LinkClosed("connection closed")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = future
        try:
            for frame in frames:
                await self.ws.send(frame)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that races with
            # the answer, and the cancelled task would then run on forever.
            async with asyncio.timeout(timeout_s or self._timeout):
                return await future
        finally:
            self._pending.pop(unique_id, None)
