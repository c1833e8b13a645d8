"""Limits from an external system (a grid operator, an EMS) talking to the station directly, and
the control file that lets a person or a test impose them on demand.

A real 2.0.1 station obeys such a limit at once (a ``ChargingStationExternalConstraints``
profile, which the CSMS can neither set nor clear) and tells the CSMS with NotifyChargingLimit;
when the source withdraws it, ClearedChargingLimit. :func:`set_limit` and :func:`clear_limit` do
both on a :class:`~ingest.sim.station.Station` (pure, like the station). A 1.6 station has no such
messages: it obeys the limit and says nothing.

The control file (``flowbank simulate --control-file PATH``) takes JSON lines appended while the
simulator runs, each done once as it arrives (:class:`ControlFile`)::

    {"action": "notify_charging_limit", "charger": "SIM-0001", "source": "SO", "evse": 1,
     "limit": 8, "unit": "A", "duration_s": 600, "phases": 3, "grid_critical": true}
    {"action": "cleared_charging_limit", "charger": "SIM-0001", "source": "SO", "evse": 1}

``charger`` omitted: every station; ``evse`` omitted or 0: the whole station; ``limit`` omitted:
a limit whose value the station does not report; ``unit`` A (per phase) or W; ``duration_s``,
``phases`` and ``grid_critical`` are optional. A line that cannot be used is logged and skipped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from control.contract import RateUnit
from ingest.sim.events import ExternalLimitEvent
from ingest.sim.profiles import Period, Profile, Purpose
from ingest.sim.station import Station

log = logging.getLogger(__name__)

SOURCES: Final = ("EMS", "Other", "SO", "CSO")  # OCPP 2.0.1 ChargingLimitSourceEnumType
ACTIONS: Final = ("notify_charging_limit", "cleared_charging_limit")


class ControlError(ValueError):
    """A control line that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class LimitCommand:
    """One control line: impose (or withdraw, ``cleared``) a source's limit."""

    source: str
    charger: str | None = None  # None: every station
    evse: int = 0  # 0: the whole station
    cleared: bool = False
    limit: float | None = None
    unit: str = "A"
    duration_s: int | None = None
    phases: int | None = None
    grid_critical: bool = False


def parse_command(line: str) -> LimitCommand:
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ControlError("a control line is a JSON object")
    unknown = sorted(set(raw) - {"action", "charger", "source", "evse", "limit", "unit", "duration_s", "phases",
                                 "grid_critical"})
    if unknown:
        raise ControlError(f"unknown keys {unknown}")
    action, source = raw.get("action"), raw.get("source")
    if action not in ACTIONS:
        raise ControlError(f"action must be one of {list(ACTIONS)}, got {action!r}")
    if source not in SOURCES:
        raise ControlError(f"source must be one of {list(SOURCES)}, got {source!r}")
    charger, evse, limit = raw.get("charger"), raw.get("evse", 0), raw.get("limit")
    unit, duration, phases = raw.get("unit", "A"), raw.get("duration_s"), raw.get("phases")
    critical = raw.get("grid_critical", False)
    if charger is not None and (not isinstance(charger, str) or not charger):
        raise ControlError("charger must be a charger id")
    if not _int(evse, 0):
        raise ControlError("evse must be an integer >= 0")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)
                              or not math.isfinite(limit) or limit < 0):
        raise ControlError("limit must be a number >= 0")
    if unit not in ("A", "W"):
        raise ControlError("unit must be A or W")
    if duration is not None and not _int(duration, 1):
        raise ControlError("duration_s must be an integer >= 1")
    if phases is not None and (not _int(phases, 1) or phases > 3):
        raise ControlError("phases must be 1, 2 or 3")
    if not isinstance(critical, bool):
        raise ControlError("grid_critical must be true or false")
    cleared = action == "cleared_charging_limit"
    if cleared and any(raw.get(k) is not None for k in ("limit", "duration_s", "phases")):
        raise ControlError("a cleared limit has no limit, duration_s or phases")
    return LimitCommand(source, charger, evse, cleared, None if limit is None else float(limit), unit, duration,
                        phases, critical)


def _int(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def _profile_id(source: str, evse: int) -> int:
    # Negative: never the id of a profile the CSMS set (theirs are >= 0 in practice).
    return -(1 + evse * len(SOURCES) + SOURCES.index(source))


def set_limit(st: Station, now: datetime, command: LimitCommand) -> bool:
    """Obey the limit and tell the CSMS (2.0.1); False when the station has no such EVSE."""
    if command.cleared:
        return clear_limit(st, now, command)
    if command.evse != 0 and command.evse not in st.connectors:
        return False
    if command.limit is not None:
        st.profiles.install(Profile(
            id=_profile_id(command.source, command.evse), connector_id=command.evse, purpose=Purpose.EXTERNAL,
            stack_level=SOURCES.index(command.source), kind="Absolute", unit=RateUnit(command.unit),
            periods=(Period(0.0, command.limit, command.phases),), received_at=now, start_schedule=now,
            duration_s=float(command.duration_s) if command.duration_s is not None else None))
        _recommand(st, now)
    st.emit(ExternalLimitEvent(now, command.source, command.evse, limit=command.limit, unit=command.unit,
                               duration_s=command.duration_s, phases=command.phases,
                               grid_critical=command.grid_critical))
    return True


def clear_limit(st: Station, now: datetime, command: LimitCommand) -> bool:
    """Withdraw the source's limit (on every EVSE when ``evse`` is 0) and tell the CSMS (2.0.1)."""
    if command.evse != 0 and command.evse not in st.connectors:
        return False
    st.profiles.clear(connector_id=command.evse or None, purpose=Purpose.EXTERNAL,
                      stack_level=SOURCES.index(command.source))
    _recommand(st, now)
    st.emit(ExternalLimitEvent(now, command.source, command.evse, cleared=True))
    return True


def _recommand(st: Station, now: datetime) -> None:
    for c in st.connectors.values():
        st.command_limit(c, now)


class ControlFile:
    """The lines appended to ``path`` since the last :meth:`poll` (a missing file has none yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[LimitCommand]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        commands = []
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                commands.append(parse_command(text))
            except ControlError as exc:
                log.warning("control file %s: skipped %r: %s", self.path, text[:200], exc)
        return commands
