"""Charger capabilities (migration 0017): what each charger takes in a charging profile.

The bridge asks every charger once per boot (``ingest/capabilities.py``) and keeps the answer
here, so every bridge process sees it: :class:`CapabilityStore` is the bridge's asyncio face
(load at connect, save after asking, and the last charge-point-wide profile write for its rate
limit). :func:`charger_capabilities` is the read for pages (the installer's device profile).

A value the charger did not give is ``None``; the bridge then uses a safe default and says so
in ``notes``. OCPP types stay in ``ingest/``: ``raw`` is the answer as JSON, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from warehouse.queries import Connection, fetch_dicts


@dataclass(frozen=True, slots=True)
class ChargerCapabilities:
    charger_id: str
    ocpp_version: str  # "1.6" | "2.0.1"
    learned_at: datetime
    answered: bool  # False: no answer or an error; every value is None
    rate_units: tuple[str, ...] | None = None  # subset of ("A", "W")
    max_stack_level: int | None = None
    max_periods: int | None = None  # schedule periods per profile
    max_profiles: int | None = None  # profiles installed at once (1.6 only)
    phases: int | None = None  # AC phases (1..3); 0 = DC
    connectors: int | None = None
    smart_charging: bool | None = None
    firmware_version: str | None = None
    notes: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MaxProfileWrite:
    """A charge-point-wide profile the charger accepted (``limit`` None: the profile was cleared)."""

    written_at: datetime
    limit: float | None
    unit: str | None
    command_id: str


_SELECT = """
select charger_id, ocpp_version, learned_at, answered, rate_units, max_stack_level, max_periods, max_profiles,
       phases, connectors, smart_charging, firmware_version, notes, raw
from charger_capabilities where charger_id = %(charger_id)s
"""

_SAVE = """
insert into charger_capabilities (charger_id, ocpp_version, learned_at, answered, rate_units, max_stack_level,
    max_periods, max_profiles, phases, connectors, smart_charging, firmware_version, notes, raw, bridge_id)
values (%(charger_id)s, %(ocpp_version)s, %(learned_at)s, %(answered)s, %(rate_units)s, %(max_stack_level)s,
        %(max_periods)s, %(max_profiles)s, %(phases)s, %(connectors)s, %(smart_charging)s, %(firmware_version)s,
        %(notes)s, %(raw)s, %(bridge_id)s)
on conflict (charger_id) do update set
    ocpp_version = excluded.ocpp_version, learned_at = excluded.learned_at, answered = excluded.answered,
    rate_units = excluded.rate_units, max_stack_level = excluded.max_stack_level,
    max_periods = excluded.max_periods, max_profiles = excluded.max_profiles, phases = excluded.phases,
    connectors = excluded.connectors, smart_charging = excluded.smart_charging,
    firmware_version = excluded.firmware_version, notes = excluded.notes, raw = excluded.raw,
    bridge_id = excluded.bridge_id
where charger_capabilities.learned_at <= excluded.learned_at
"""

_LOAD = """
select c.charger_id, c.ocpp_version, c.learned_at, c.answered, c.rate_units, c.max_stack_level, c.max_periods,
       c.max_profiles, c.phases, c.connectors, c.smart_charging, c.firmware_version, c.notes, c.raw,
       w.written_at, w.limit_value, w.rate_unit, w.command_id
from chargers r
left join charger_capabilities c on c.charger_id = r.charger_id
left join charger_max_profile_writes w on w.charger_id = r.charger_id
where r.charger_id = %s
"""

_RECORD_WRITE = """
insert into charger_max_profile_writes (charger_id, written_at, limit_value, rate_unit, command_id)
values (%s, %s, %s, %s, %s)
on conflict (charger_id) do update set written_at = excluded.written_at, limit_value = excluded.limit_value,
    rate_unit = excluded.rate_unit, command_id = excluded.command_id
where charger_max_profile_writes.written_at <= excluded.written_at
"""


def _params(caps: ChargerCapabilities, bridge_id: str) -> dict[str, Any]:
    return {
        "charger_id": caps.charger_id, "ocpp_version": caps.ocpp_version, "learned_at": caps.learned_at,
        "answered": caps.answered, "rate_units": list(caps.rate_units) if caps.rate_units is not None else None,
        "max_stack_level": caps.max_stack_level, "max_periods": caps.max_periods,
        "max_profiles": caps.max_profiles, "phases": caps.phases, "connectors": caps.connectors,
        "smart_charging": caps.smart_charging, "firmware_version": caps.firmware_version,
        "notes": list(caps.notes), "raw": Jsonb(dict(caps.raw)), "bridge_id": bridge_id,
    }


def _capabilities(row: Mapping[str, Any]) -> ChargerCapabilities:
    units = row["rate_units"]
    return ChargerCapabilities(
        charger_id=row["charger_id"], ocpp_version=row["ocpp_version"], learned_at=row["learned_at"],
        answered=row["answered"], rate_units=tuple(units) if units is not None else None,
        max_stack_level=row["max_stack_level"], max_periods=row["max_periods"], max_profiles=row["max_profiles"],
        phases=row["phases"], connectors=row["connectors"], smart_charging=row["smart_charging"],
        firmware_version=row["firmware_version"], notes=tuple(row["notes"] or ()), raw=row["raw"] or {},
    )


class CapabilityStore:
    """What the bridge reads and writes, over its shared async pool. Errors are psycopg's."""

    def __init__(self, pool: AsyncConnectionPool, bridge_id: str) -> None:
        self._pool = pool
        self._bridge_id = bridge_id

    async def load(self, charger_id: str) -> tuple[ChargerCapabilities | None, MaxProfileWrite | None]:
        """The stored capabilities and the last charge-point-wide profile write (one query)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_LOAD, (charger_id,))
            row = await cur.fetchone()
            names = [d.name for d in cur.description or ()]
        if row is None:
            return None, None
        values = dict(zip(names, row, strict=True))
        caps = _capabilities(values) if values["learned_at"] is not None else None
        write = None
        if values["written_at"] is not None:
            write = MaxProfileWrite(values["written_at"], values["limit_value"], values["rate_unit"],
                                    values["command_id"])
        return caps, write

    async def save(self, caps: ChargerCapabilities) -> None:
        """Keep the newest answer (an older one arriving late from another bridge loses)."""
        async with self._pool.connection() as conn:
            await conn.execute(_SAVE, _params(caps, self._bridge_id))

    async def record_max_profile(self, charger_id: str, write: MaxProfileWrite) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(_RECORD_WRITE, (charger_id, write.written_at, write.limit, write.unit,
                                               write.command_id))


# --------------------------------------------------------------------------- pages (sync)


def charger_capabilities(conn: Connection, charger_id: str) -> ChargerCapabilities | None:
    """What the bridge last learned from the charger (None: never asked yet), for the installer's
    device profile. Raises ``warehouse.queries.QueryError`` when the database fails."""
    rows = fetch_dicts(conn, "charger capabilities",
                       _SELECT, {"charger_id": charger_id})
    return _capabilities(rows[0]) if rows else None


def last_max_profile_write(conn: Connection, charger_id: str) -> MaxProfileWrite | None:
    """The last charge-point-wide profile the charger accepted from us (None: none yet)."""
    rows = fetch_dicts(conn, "charge-point-wide profile writes",
                       "select written_at, limit_value, rate_unit, command_id from charger_max_profile_writes"
                       " where charger_id = %(charger_id)s", {"charger_id": charger_id})
    if not rows:
        return None
    row = rows[0]
    return MaxProfileWrite(row["written_at"], row["limit_value"], row["rate_unit"], row["command_id"])
