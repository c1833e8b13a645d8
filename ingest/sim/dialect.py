"""What the 1.6 and 2.0.1 chargers share: the ChargePoint base and the dialect interface.

A *dialect* turns station events into OCPP calls (payloads in camelCase, as they go on the wire)
and binds results back into the station. Its ChargePoint subclass answers the CSMS's calls; the
station changes made while handling a call are held back until the reply has been sent (the
``@after`` hook), so a charger never reports a consequence before its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterator
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ingest.sim.clock import Clock
from ingest.sim.events import SimEvent
from ingest.sim.faults import ReplyFault
from ingest.sim.link import Link
from ingest.sim.outbox import Outgoing, Result
from ingest.sim.station import Station

log = logging.getLogger(__name__)


class Host(Protocol):
    """The runtime as seen from a ChargePoint."""

    station: Station
    clock: Clock

    @property
    def link(self) -> Link | None: ...

    def dispatch(self) -> None: ...

    def reply_fault(self, action: str) -> ReplyFault | None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


class SimChargePointMixin:
    """Mixed in before the ocpp ChargePoint class: fault-aware routing and held-back effects."""

    host: Host
    _held: dict[str, list[SimEvent]]

    def _setup(self, host: Host) -> None:
        self.host = host
        self._held = {}

    @property
    def station(self) -> Station:
        return self.host.station

    @contextlib.contextmanager
    def effects(self, unique_id: str) -> Iterator[None]:
        """Collect the events a command causes; ``release`` sends them after the reply."""
        with self.host.station.capture() as held:
            yield
        self._held[unique_id] = held

    def release(self, unique_id: str) -> None:
        held = self._held.pop(unique_id, [])
        self.host.station.events.extend(held)
        self.host.dispatch()

    async def sim_route(self, raw_msg: str | bytes, route: Any) -> None:
        """Answers go to the link; CSMS calls may be delayed or lost (fault injection)."""
        try:
            message = json.loads(raw_msg)
        except ValueError:
            message = None
        if isinstance(message, list) and len(message) >= 3 and message[0] in (3, 4):
            link = self.host.link
            if link is not None:
                link.deliver(message)
            return
        if isinstance(message, list) and len(message) >= 4 and message[0] == 2:
            fault = self.host.reply_fault(str(message[2]))
            if fault is not None:
                kind, delay = fault
                if kind == "slow":
                    self.host.spawn(self._late(raw_msg, delay, route))
                return
        await route(raw_msg)

    async def _late(self, raw_msg: str | bytes, delay_s: float, route: Any) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(ConnectionClosed):
            await route(raw_msg)


class Dialect(ABC):
    """OCPP-version specifics; one instance per station, living across connections."""

    subprotocol: str

    def __init__(self, station: Station, clock: Clock) -> None:
        self.station = station
        self.clock = clock

    @abstractmethod
    def make_charge_point(self, ws: ClientConnection, host: Host) -> Any:
        """The ocpp ChargePoint subclass instance that reads this connection."""

    @abstractmethod
    def boot(self, reason: str) -> Outgoing: ...

    @abstractmethod
    def heartbeat(self) -> Outgoing: ...

    @abstractmethod
    def translate(self, event: SimEvent) -> list[Outgoing]: ...

    def prepare(self, item: Outgoing) -> dict[str, Any] | None:
        """The payload to send now (None: drop the item). 1.6 fills in transaction ids here."""
        return item.payload

    def on_connected(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """A new connection: forget what was reported on the previous one."""

    @staticmethod
    def boot_accepted(result: Result) -> tuple[bool, int]:
        if result is None:
            return False, 0
        interval = result.get("interval")
        return result.get("status") == "Accepted", int(interval) if isinstance(interval, int) else 0

    def stop_result(self, item: Outgoing, result: Result) -> None:
        session = item.session
        if session is None:
            return
        if result is None:
            session.stop_failed = True
        else:
            session.stop_acked = True
        self.station.write_settled()
