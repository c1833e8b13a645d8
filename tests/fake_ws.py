"""A websocket seen from the bridge, for its session tests: frames in (``inbox``), out (``sent``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

CLOSED = object()  # put in the inbox: the charger closes the connection


class FakeWs:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[list[Any]] = []
        self.on_call: Callable[[list[Any]], None] | None = None  # called with each CALL the bridge sends

    async def recv(self, decode: bool = False) -> bytes:
        item = await self.inbox.get()
        if item is CLOSED:
            raise ConnectionClosed(Close(1000, "bye"), Close(1000, "bye"), True)
        return item  # type: ignore[no-any-return]

    async def send(self, data: bytes, text: bool | None = None) -> None:
        frame = orjson.loads(data)
        self.sent.append(frame)
        if frame[0] == 2 and self.on_call is not None:
            self.on_call(frame)
