"""When a connected charger is asked for its capabilities, and where they live meanwhile.

One :class:`SessionCapabilities` per connection (``ChargerSession.capabilities``):

* at connect the command task loads what PostgreSQL holds (:meth:`start`, one query: the
  capabilities and the last charge-point-wide profile write), so every SetChargingProfile is
  shaped from memory, with no round trip of its own;
* an accepted BootNotification makes the question due (:meth:`booted`): a boot on a new
  connection is a (re)boot, perhaps after a firmware update. A boot again on the same connection
  with the same firmware (a TriggerMessage, a duplicate frame) is not asked again;
* a charger that connects without booting (it booted before: a network blip, a bridge restart)
  is asked after ``grace_s`` if nothing is known of it or what is known is older than
  ``max_age_s``, and a long connection is asked again whenever that age is reached;
* the question (:meth:`learn`) goes out from the session's command task, which sends one CALL at
  a time anyway, ahead of the next command: the charger's own messages never wait for it. No
  answer, an error or a broken answer gives the safe defaults and a note
  (:mod:`ingest.capabilities`); either way the result is stored for every bridge process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from control.contract import OcppVersion
from ingest.capabilities import capability_request, learned, unanswered
from ingest.commands import OutboundCall
from ingest.validation import CallErrorFrame, CallResultFrame, check_payload
from warehouse.capability_store import ChargerCapabilities, MaxProfileWrite

log = logging.getLogger(__name__)

Call = Callable[[str, Mapping[str, Any], float], Awaitable[CallResultFrame | CallErrorFrame]]


class CapabilityKeeper(Protocol):
    """Where capabilities are kept for every bridge (``warehouse.capability_store.CapabilityStore``)."""

    async def load(self, charger_id: str) -> tuple[ChargerCapabilities | None, MaxProfileWrite | None]: ...

    async def save(self, caps: ChargerCapabilities) -> None: ...

    async def record_max_profile(self, charger_id: str, write: MaxProfileWrite) -> None: ...


@dataclass(frozen=True, slots=True)
class CapabilityPolicy:
    max_age_s: float = 7 * 86_400.0  # ask again when what we know is this old
    grace_s: float = 30.0  # after a connect without a boot: time for the boot to come first
    timeout_s: float = 10.0  # for the answer (the next command waits meanwhile, once per boot)
    station_max_interval_s: float = 900.0  # charge-point-wide profile writes per charger, at most one per

    @property
    def station_max_interval(self) -> timedelta:
        return timedelta(seconds=self.station_max_interval_s)


def boot_firmware(version: OcppVersion, payload: Mapping[str, Any]) -> str | None:
    if version is OcppVersion.V16:
        firmware = payload.get("firmwareVersion")
    else:
        station = payload.get("chargingStation")
        firmware = station.get("firmwareVersion") if isinstance(station, Mapping) else None
    return str(firmware) if firmware is not None else None


class SessionCapabilities:
    def __init__(self, charger_id: str, version: OcppVersion, keeper: CapabilityKeeper | None,
                 policy: CapabilityPolicy, clock: Callable[[], datetime], wake: Callable[[], None]) -> None:
        self._charger_id = charger_id
        self._version = version
        self._keeper = keeper  # None: nothing is loaded, asked or stored (capabilities stay unknown)
        self.policy = policy
        self._clock = clock
        self._wake = wake
        self.current: ChargerCapabilities | None = None
        self.station_max: MaxProfileWrite | None = None
        self._reason: str | None = None  # why the question is due
        self._busy = False  # asking now
        self._asked_here = False  # on this connection
        self._firmware: str | None = None  # as this connection's boot said
        self._booted_here = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def due(self) -> bool:
        return self._reason is not None and not self._closed

    async def start(self) -> None:
        """Load what is stored (in the command task, before the first command)."""
        if self._keeper is None:
            return
        try:
            self.current, self.station_max = await self._keeper.load(self._charger_id)
        except Exception:  # PG away: commands go out as commanded; asking will try to store again
            log.exception("%s: cannot load the stored capabilities", self._charger_id)
        if not self._booted_here:
            self._arm(self.policy.grace_s)

    def booted(self, payload: Mapping[str, Any]) -> None:
        """An accepted BootNotification, called once its answer went out."""
        firmware = boot_firmware(self._version, payload)
        again = self._asked_here and firmware == self._firmware
        self._booted_here, self._firmware = True, firmware
        if self._keeper is not None and not again:
            self._request("boot")

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _request(self, reason: str) -> None:
        self._reason = reason
        self._wake()

    def _arm(self, delay_s: float) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay_s), self._check_age)

    def _check_age(self) -> None:
        self._timer = None
        if self._closed or self._busy or self._reason is not None:
            return  # asking now or soon: the answer arms the next check
        caps = self.current
        if caps is None:
            self._request("nothing known")
            return
        age_s = (self._clock() - caps.learned_at).total_seconds()
        if age_s >= self.policy.max_age_s:
            self._request(f"learned {age_s / 86_400:.1f} days ago")
        else:
            self._arm(self.policy.max_age_s - age_s)

    async def learn(self, call: Call) -> None:
        """Ask (if due), keep the answer here and store it. Never raises for the charger's sake."""
        reason, self._reason = self._reason, None
        if reason is None or self._keeper is None or self._closed:
            return
        self._busy, self._asked_here = True, True
        try:
            caps = await self._ask(call)
            if caps is None:
                return  # the connection closed: the next one asks
            self.current = caps
            log.info("%s: capabilities learned (%s): units %s, max stack level %s, %s periods, phases %s%s",
                     self._charger_id, reason, caps.rate_units, caps.max_stack_level, caps.max_periods,
                     caps.phases, f"; {len(caps.notes)} note(s)" if caps.notes else "")
            try:
                await self._keeper.save(caps)
            except Exception:
                log.exception("%s: cannot store the capabilities (kept for this connection)", self._charger_id)
        finally:
            self._busy = False
            self._arm(self.policy.max_age_s)

    async def _ask(self, call: Call) -> ChargerCapabilities | None:
        action, payload = capability_request(self._version)
        asked_at = self._clock()
        firmware = self._firmware if self._booted_here else (self.current.firmware_version if self.current else None)

        def failed(problem: str, raw: Mapping[str, Any] | None = None) -> ChargerCapabilities:
            return unanswered(self._charger_id, self._version, asked_at, problem, firmware_version=firmware, raw=raw)

        timeout = self.policy.timeout_s
        try:
            answer = await call(action, payload, timeout)
        except TimeoutError:
            return failed(f"no answer to {action} within {timeout:g} s")
        except ConnectionClosed:
            return None
        if isinstance(answer, CallErrorFrame):
            return failed(f"{action} answered with CALLERROR {answer.code}: {answer.description[:200]}")
        problem = check_payload(self._version, action, answer.payload, response=True)
        if problem is not None:
            return failed(f"the {action} answer breaks the schema: {problem}", {"answer": answer.payload})
        return learned(self._charger_id, self._version, answer.payload, asked_at, firmware_version=firmware)

    async def record(self, call: OutboundCall, command_id: str, at: datetime) -> None:
        """The charger accepted ``call``: remember a charge-point-wide profile write (rate limit)."""
        if call.station_max is None:
            return
        limit, unit = call.station_max
        self.station_max = MaxProfileWrite(at, limit, unit, command_id)
        if self._keeper is None:
            return
        try:
            await self._keeper.record_max_profile(self._charger_id, self.station_max)
        except Exception:  # kept for this connection; another bridge would not see it
            log.exception("%s: cannot store the charge-point-wide profile write", self._charger_id)
