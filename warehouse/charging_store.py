"""Reads for the owner-facing charging pages: connectors with their limits, load, audit, device.

Every function takes the charger ids (or the site) the caller may see; ``dashboards.access``
computed them. Nothing here checks permissions. A database failure raises
:class:`warehouse.queries.QueryError` (never an empty result). Times are UTC and passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import psycopg

from control.contract import ChargingMode
from control.records import LiveState, LiveStatus
from warehouse.queries import fetch_dicts

Connection = psycopg.Connection[Any]


_fetch = fetch_dicts


# --------------------------------------------------------------------------- connectors


@dataclass(frozen=True, slots=True)
class LatestDecision:
    """The dataflow's last limit for a connector (``control_decisions``)."""

    ts: datetime
    new_limit_a: float
    paused: bool
    reason: str
    binding: str | None
    site_state: str


@dataclass(frozen=True, slots=True)
class ConnectorRow:
    charger_id: str
    connector_id: int
    charger_name: str
    site_id: str | None
    live: LiveState
    mode: ChargingMode
    hardware_max_a: float | None   # the site model's max_current_a, else the device model's
    phases: int                    # phases the charger is wired to (1 when unknown: the conservative ETA)
    decision: LatestDecision | None
    battery_wh: float | None       # from a departure, if one is set
    target_soc_pct: float | None


_CONNECTORS = """
select ls.charger_id, ls.connector_id, ls.status, ls.updated_at, ls.last_seen_at, ls.connector_status, ls.power_w,
       ls.current_a, ls.session_id, ls.session_started_at, ls.session_energy_wh, ls.soc_pct, ls.error_code, ls.online,
       coalesce(nullif(c.display_name, ''), c.charger_id) as charger_name, c.site_id,
       coalesce(cm.mode, cm0.mode, 'standard') as mode,
       coalesce((sc.conf ->> 'max_current_a')::float8, dm.max_current_a) as hardware_max_a,
       coalesce(jsonb_array_length(case when jsonb_typeof(sc.conf -> 'phases') = 'array' then sc.conf -> 'phases'
                                        when sc.conf ? 'phases' then '[1]'::jsonb end), dm.phases) as phases,
       d.ts as d_ts, d.new_limit_a as d_new_limit_a, d.paused as d_paused, d.reason as d_reason,
       d.binding as d_binding, d.site_state as d_site_state,
       dep.battery_wh, dep.target_soc_pct
from live_state ls
join chargers c on c.charger_id = ls.charger_id
left join sites s on s.site_id = c.site_id
left join lateral (
    select conf from jsonb_array_elements(s.config -> 'chargers') conf where conf ->> 'id' = ls.charger_id limit 1
) sc on true
left join device_models dm on dm.vendor = c.vendor and dm.model = c.model
left join connector_modes cm on cm.charger_id = ls.charger_id and cm.connector_id = ls.connector_id
left join connector_modes cm0 on cm0.charger_id = ls.charger_id and cm0.connector_id = 0
left join lateral (
    select ts, new_limit_a, paused, reason, binding, site_state from control_decisions cd
    where cd.charger_id = ls.charger_id and cd.connector_id = ls.connector_id
    order by ts desc limit 1
) d on true
left join departures dep on dep.charger_id = ls.charger_id and dep.connector_id = ls.connector_id
where ls.charger_id = any(%(chargers)s) and ls.connector_id > 0
order by ls.charger_id, ls.connector_id
"""

_LIVE_FIELDS = ("charger_id", "connector_id", "status", "updated_at", "last_seen_at", "connector_status", "power_w",
                "current_a", "session_id", "session_started_at", "session_energy_wh", "soc_pct", "error_code",
                "online")


def connector_rows(conn: Connection, charger_ids: Sequence[str]) -> list[ConnectorRow]:
    """Every connector of ``charger_ids`` with its live state, mode, hardware cap and last decision."""
    rows = _fetch(conn, "the connectors' live state", _CONNECTORS, {"chargers": list(charger_ids)})
    out = []
    for row in rows:
        live = LiveState(**{k: row[k] for k in _LIVE_FIELDS} | {"status": LiveStatus(row["status"])})
        decision = None if row["d_ts"] is None else LatestDecision(
            row["d_ts"], row["d_new_limit_a"], row["d_paused"], row["d_reason"], row["d_binding"],
            row["d_site_state"])
        out.append(ConnectorRow(
            charger_id=row["charger_id"], connector_id=row["connector_id"], charger_name=row["charger_name"],
            site_id=row["site_id"], live=live, mode=ChargingMode(row["mode"]), hardware_max_a=row["hardware_max_a"],
            phases=int(row["phases"] or 1), decision=decision, battery_wh=row["battery_wh"],
            target_soc_pct=row["target_soc_pct"]))
    return out


@dataclass(frozen=True, slots=True)
class LimitInForce:
    limit_id: str
    site_id: str
    charger_id: str | None
    limit_a: float
    ends_at: datetime | None
    source: str
    reason: str | None


def operator_limits_in_force(conn: Connection, site_ids: Sequence[str], now: datetime) -> list[LimitInForce]:
    rows = _fetch(conn, "operator limits", """
        select limit_id, site_id, charger_id, limit_a, ends_at, source, reason from operator_limits
        where site_id = any(%(sites)s) and starts_at <= %(now)s and (ends_at is null or ends_at > %(now)s)
        order by site_id, limit_id""", {"sites": list(site_ids), "now": now})
    return [LimitInForce(**row) for row in rows]


def id_tag_of(conn: Connection, user_id: str) -> str | None:
    """The user's first id tag (sessions they start remotely are then theirs), if they have one."""
    rows = _fetch(conn, "the user's id tags", "select id_tag from user_tokens where user_id = %(user)s"
                  " order by created_at, id_tag limit 1", {"user": user_id})
    return str(rows[0]["id_tag"]) if rows else None


# --------------------------------------------------------------------------- sites and their rules


@dataclass(frozen=True, slots=True)
class StoredSite:
    site_id: str
    name: str
    timezone: str
    enabled: bool
    config: dict[str, Any]
    rules: list[dict[str, Any]]
    updated_at: datetime
    updated_by: str | None


_SITE = ("select site_id, name, timezone, enabled, config, rules, updated_at, updated_by from sites"
         " where site_id = %(site)s")
_SITE_FOR_UPDATE = _SITE + " for update"


def site_row(conn: Connection, site_id: str, *, for_update: bool = False) -> StoredSite | None:
    """The stored site; ``for_update`` locks the row until the caller's transaction ends
    (read-modify-write of the rules list)."""
    query = _SITE_FOR_UPDATE if for_update else _SITE
    rows = _fetch(conn, f"site {site_id}", query, {"site": site_id})
    return StoredSite(**rows[0]) if rows else None


def site_charger_ids(conn: Connection, site_id: str) -> list[str]:
    rows = _fetch(conn, f"the chargers of site {site_id}", "select charger_id from chargers where site_id = %(site)s"
                  " order by charger_id", {"site": site_id})
    return [str(r["charger_id"]) for r in rows]


# --------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class BuildingLoadPoint:
    ts: datetime
    circuit_id: str | None
    power_w: float
    worst_phase_a: float | None    # the highest of the three phase currents, when metered per phase
    source: str | None


def building_load(conn: Connection, site_id: str, since: datetime, until: datetime) -> list[BuildingLoadPoint]:
    rows = _fetch(conn, f"the building load of site {site_id}", """
        select ts, circuit_id, power_w,
               nullif(greatest(coalesce(current_l1_a, -1), coalesce(current_l2_a, -1), coalesce(current_l3_a, -1)),
                      -1) as worst_phase_a, source
        from building_loads where site_id = %(site)s and ts >= %(since)s and ts < %(until)s
        order by ts""", {"site": site_id, "since": since, "until": until})
    return [BuildingLoadPoint(**r) for r in rows]


def latest_building_load(conn: Connection, site_id: str, until: datetime) -> BuildingLoadPoint | None:
    rows = _fetch(conn, f"the latest building load of site {site_id}", """
        select ts, circuit_id, power_w,
               nullif(greatest(coalesce(current_l1_a, -1), coalesce(current_l2_a, -1), coalesce(current_l3_a, -1)),
                      -1) as worst_phase_a, source
        from building_loads where site_id = %(site)s and ts <= %(until)s
        order by ts desc limit 1""", {"site": site_id, "until": until})
    return BuildingLoadPoint(**rows[0]) if rows else None


@dataclass(frozen=True, slots=True)
class AuditRow:
    ts: datetime
    charger_id: str
    connector_id: int
    old_limit_a: float | None
    new_limit_a: float
    paused: bool
    reason: str
    binding: str | None
    site_state: str
    command_outcome: str | None


def control_audit(conn: Connection, site_id: str, charger_ids: Sequence[str], since: datetime, until: datetime,
                  *, limit: int = 500) -> list[AuditRow]:
    """The site's decisions for ``charger_ids`` in ``[since, until)``, newest first."""
    rows = _fetch(conn, f"the control audit of site {site_id}", """
        select ts, charger_id, connector_id, old_limit_a, new_limit_a, paused, reason, binding, site_state,
               command_outcome
        from control_audit
        where site_id = %(site)s and charger_id = any(%(chargers)s) and ts >= %(since)s and ts < %(until)s
        order by ts desc, charger_id, connector_id limit %(limit)s""",
                  {"site": site_id, "chargers": list(charger_ids), "since": since, "until": until, "limit": limit})
    return [AuditRow(**r) for r in rows]


def latest_site_state(conn: Connection, site_id: str, until: datetime) -> tuple[datetime, str] | None:
    rows = _fetch(conn, f"the control state of site {site_id}", """
        select ts, site_state from control_decisions where site_id = %(site)s and ts <= %(until)s
        order by ts desc limit 1""", {"site": site_id, "until": until})
    return (rows[0]["ts"], str(rows[0]["site_state"])) if rows else None


# --------------------------------------------------------------------------- device profile and V2G


@dataclass(frozen=True, slots=True)
class DeviceRow:
    charger_id: str
    name: str
    site_id: str | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    ocpp_version: str | None
    registered_at: datetime | None
    model_known: bool
    model_max_current_a: float | None
    model_phases: int | None
    bidirectional: str | None
    model_notes: str | None


def device_row(conn: Connection, charger_id: str) -> DeviceRow | None:
    rows = _fetch(conn, f"the device profile of {charger_id}", """
        select c.charger_id, coalesce(nullif(c.display_name, ''), c.charger_id) as name, c.site_id, c.vendor, c.model,
               c.serial_number, c.firmware_version, c.ocpp_version, c.created_at as registered_at,
               dm.vendor is not null as model_known, dm.max_current_a as model_max_current_a,
               dm.phases as model_phases, dm.bidirectional, dm.notes as model_notes
        from chargers c left join device_models dm on dm.vendor = c.vendor and dm.model = c.model
        where c.charger_id = %(charger)s""", {"charger": charger_id})
    return DeviceRow(**rows[0]) if rows else None


@dataclass(frozen=True, slots=True)
class V2GPreferences:
    notify: bool = False
    vehicle_bidirectional: bool = False
    grid_approved: bool = False
    discharge_start: time | None = None
    discharge_end: time | None = None
    min_soc_pct: float | None = None
    price_threshold_eur_kwh: float | None = None


def v2g_preferences(conn: Connection, user_id: str, charger_id: str) -> V2GPreferences:
    rows = _fetch(conn, "your V2G preferences", """
        select notify, vehicle_bidirectional, grid_approved, discharge_start, discharge_end, min_soc_pct,
               price_threshold_eur_kwh
        from v2g_preferences where user_id = %(user)s and charger_id = %(charger)s""",
                  {"user": user_id, "charger": charger_id})
    return V2GPreferences(**rows[0]) if rows else V2GPreferences()


def save_v2g_preferences(conn: Connection, user_id: str, charger_id: str, prefs: V2GPreferences,
                         *, now: datetime) -> None:
    conn.execute(
        """insert into v2g_preferences (user_id, charger_id, notify, vehicle_bidirectional, grid_approved,
                                        discharge_start, discharge_end, min_soc_pct, price_threshold_eur_kwh,
                                        updated_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (user_id, charger_id) do update set notify = excluded.notify,
               vehicle_bidirectional = excluded.vehicle_bidirectional, grid_approved = excluded.grid_approved,
               discharge_start = excluded.discharge_start, discharge_end = excluded.discharge_end,
               min_soc_pct = excluded.min_soc_pct, price_threshold_eur_kwh = excluded.price_threshold_eur_kwh,
               updated_at = excluded.updated_at""",
        (user_id, charger_id, prefs.notify, prefs.vehicle_bidirectional, prefs.grid_approved, prefs.discharge_start,
         prefs.discharge_end, prefs.min_soc_pct, prefs.price_threshold_eur_kwh, now))
