"""The charger's outgoing CALL queue: one in flight, in order, surviving offline periods.

While offline (or before the boot is accepted) only *durable* messages are kept: the
transaction-related ones (1.6 StartTransaction, StopTransaction and MeterValues of a transaction;
2.0.1 TransactionEvent). Volatile messages (StatusNotification, Heartbeat, Authorize, ...) are
dropped at once, as a real charger does; on reconnect it reports fresh statuses instead. The
queue is replayed strictly in order, and an item leaves it only once the CSMS has answered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.sim.model import Session

Result = dict[str, Any] | None  # the CALLRESULT payload, or None (CALLERROR, dropped, gave up)


@dataclass(eq=False)
class Outgoing:
    action: str
    payload: dict[str, Any]
    durable: bool = False
    session: Session | None = None
    on_result: Callable[[Result], None] | None = None
    sample: bool = False  # a periodic meter sample (benchmark accounting)
    queued_offline: bool = False
    attempts: int = 0
    future: asyncio.Future[Result] | None = None


class Outbox:
    def __init__(self, max_items: int = 20_000) -> None:
        self._max_items = max_items  # a charger's queue memory is finite: the oldest samples go first
        self._items: deque[Outgoing] = deque()
        self._online = False
        self._changed = asyncio.Event()
        self.dropped = 0

    @property
    def online(self) -> bool:
        return self._online

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Outgoing]:
        return list(self._items)

    @property
    def pending_samples(self) -> int:
        return sum(1 for item in self._items if item.sample)

    def push(self, item: Outgoing) -> bool:
        """Queue ``item``; a volatile item is dropped (and answered None) while offline."""
        if not self._online and not item.durable:
            self.dropped += 1
            self.finish(item, None)
            return False
        item.queued_offline = not self._online
        self._items.append(item)
        if len(self._items) > self._max_items:
            self._drop_oldest_sample()
        self._changed.set()
        return True

    def _drop_oldest_sample(self) -> None:
        for index, queued in enumerate(self._items):
            if queued.sample and index > 0:  # never the head: it may be in flight
                del self._items[index]
                self.dropped += 1
                self.finish(queued, None)
                return

    def set_online(self, online: bool) -> None:
        self._online = online
        if not online:
            kept: deque[Outgoing] = deque()
            for item in self._items:
                if item.durable:
                    kept.append(item)
                else:
                    self.dropped += 1
                    self.finish(item, None)
            self._items = kept
        self._changed.set()

    def head(self) -> Outgoing | None:
        return self._items[0] if self._items and self._online else None

    def pop(self, item: Outgoing, result: Result) -> None:
        """The CSMS answered ``item`` (or we gave up on it): remove it and deliver the result."""
        if self._items and self._items[0] is item:
            self._items.popleft()
        self.finish(item, result)

    async def next(self) -> Outgoing:
        """Wait for the head item (only while online)."""
        while True:
            item = self.head()
            if item is not None:
                return item
            self._changed.clear()
            await self._changed.wait()

    @staticmethod
    def finish(item: Outgoing, result: Result) -> None:
        if item.on_result is not None:
            callback, item.on_result = item.on_result, None
            callback(result)
        if item.future is not None and not item.future.done():
            item.future.set_result(result)
