"""SQL of the fleet, locations, bulk, departure-schedule and installer pages.

Read functions take the charger ids the caller may see (``dashboards.access`` computed them) and
return nothing outside them; writes take exactly one charger or site, checked by the caller.
The fleet grid is one query however many chargers there are (live state, open sessions and
today's energy joined in), so a fleet of 1,000 chargers costs one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import Connection
from psycopg.rows import dict_row

# Same order as warehouse.portal_store: a charger shows its most telling connector status.
STATUS_RANK = {"Error": 0, "Offline": 1, "Charging": 2, "Paused": 3, "Waiting for vehicle": 4, "Idle": 5}


def worst_status(statuses: Sequence[str]) -> str:
    if not statuses:
        return "Offline"
    return min(statuses, key=lambda s: STATUS_RANK.get(s, 9))


@dataclass(frozen=True, slots=True)
class FleetRow:
    charger_id: str
    name: str
    site_id: str | None
    site_name: str | None
    org_id: str | None
    status: str
    connectors: int
    active_sessions: int
    power_w: float
    energy_today_wh: float
    last_seen_at: datetime | None
    vendor: str | None
    model: str | None
    cost_centre: str | None
    latitude: float | None
    longitude: float | None
    address: str | None


_FLEET = """
with e as (
    select charger_id, sum(energy_wh) as energy_wh from session_day_energy
    where day = %(day)s and charger_id = any(%(ids)s) group by charger_id
), l as (
    select charger_id, array_agg(status) as statuses, count(*) as connectors,
           count(*) filter (where session_id is not null) as active_sessions,
           sum(coalesce(power_w, 0)) as power_w, max(coalesce(last_seen_at, updated_at)) as last_seen_at
    from live_state where connector_id > 0 and charger_id = any(%(ids)s) group by charger_id
)
select c.charger_id, coalesce(nullif(c.display_name, ''), c.charger_id) as name, c.site_id, s.name as site_name,
       s.org_id, coalesce(l.statuses, '{}') as statuses, coalesce(l.connectors, 0) as connectors,
       coalesce(l.active_sessions, 0) as active_sessions, coalesce(l.power_w, 0) as power_w,
       coalesce(e.energy_wh, 0) as energy_today_wh, l.last_seen_at, c.vendor, c.model, c.cost_centre,
       s.latitude, s.longitude, s.address
from chargers c
left join sites s on s.site_id = c.site_id
left join l on l.charger_id = c.charger_id
left join e on e.charger_id = c.charger_id
where c.charger_id = any(%(ids)s)
order by s.name nulls last, name, c.charger_id
"""


def fleet_rows(conn: Connection, charger_ids: Sequence[str], *, day: date) -> list[FleetRow]:
    """Every listed charger with its status, open sessions, power now and energy on ``day`` (UTC)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_FLEET, {"ids": list(charger_ids), "day": day}).fetchall()
    out = []
    for row in rows:
        statuses = row.pop("statuses")
        out.append(FleetRow(status=worst_status(statuses), **row))
    return out


# --------------------------------------------------------------------------- settings


def names_at_site(conn: Connection, site_id: str | None) -> dict[str, str]:
    """charger id -> display name of every charger at a site (or on no site)."""
    rows = conn.execute("select charger_id, coalesce(nullif(display_name, ''), charger_id) from chargers"
                        " where site_id is not distinct from %s", (site_id,)).fetchall()
    return {r[0]: r[1] for r in rows}


def site_name(conn: Connection, site_id: str | None) -> str:
    if site_id is None:
        return "no location"
    row = conn.execute("select name from sites where site_id = %s", (site_id,)).fetchone()
    return str(row[0]) if row else site_id


def rename_charger(conn: Connection, charger_id: str, name: str) -> None:
    conn.execute("update chargers set display_name = %s, updated_at = now() where charger_id = %s",
                 (name, charger_id))


def set_cost_centre(conn: Connection, charger_id: str, cost_centre: str | None) -> None:
    conn.execute("update chargers set cost_centre = %s, updated_at = now() where charger_id = %s",
                 (cost_centre, charger_id))


def set_site_location(conn: Connection, site_id: str, *, address: str | None, latitude: float | None,
                      longitude: float | None) -> bool:
    return bool(conn.execute("update sites set address = %s, latitude = %s, longitude = %s where site_id = %s",
                             (address, latitude, longitude, site_id)).rowcount)


def site_chargers(conn: Connection, site_id: str) -> list[str]:
    return [r[0] for r in conn.execute("select charger_id from chargers where site_id = %s order by charger_id",
                                       (site_id,))]


# --------------------------------------------------------------------------- bulk


def connectors_of(conn: Connection, charger_ids: Sequence[str]) -> dict[str, list[int]]:
    """The connectors each charger reported (connector 1 for one that reported none yet)."""
    found: dict[str, list[int]] = {cid: [] for cid in charger_ids}
    for cid, connector_id in conn.execute(
            "select charger_id, connector_id from live_state where charger_id = any(%s) and connector_id > 0"
            " order by charger_id, connector_id", (list(charger_ids),)):
        found[cid].append(connector_id)
    return {cid: ids or [1] for cid, ids in found.items()}


def id_tag_of(conn: Connection, user_id: str) -> str | None:
    """The user's first id tag (RFID card or app token), so a remote start is billed to them."""
    row = conn.execute("select id_tag from user_tokens where user_id = %s order by created_at, id_tag limit 1",
                       (user_id,)).fetchone()
    return None if row is None else str(row[0])


# --------------------------------------------------------------------------- departure schedule


@dataclass(frozen=True, slots=True)
class SessionSpan:
    charger_id: str
    connector_id: int
    session_id: str
    started_at: datetime
    ended_at: datetime | None
    energy_wh: float
    id_tag: str | None
    mode: str | None


@dataclass(frozen=True, slots=True)
class DepartureRow:
    charger_id: str
    connector_id: int
    departure_at: datetime
    target_soc_pct: float | None
    battery_wh: float | None
    energy_wh: float | None
    set_by: str | None


@dataclass(frozen=True, slots=True)
class LatestDecision:
    charger_id: str
    connector_id: int
    ts: datetime
    new_limit_a: float
    paused: bool
    reason: str


def sessions_overlapping(conn: Connection, charger_ids: Sequence[str], start: datetime,
                         end: datetime) -> list[SessionSpan]:
    """Sessions that ran at some point in [start, end)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select charger_id, connector_id, session_id, started_at, ended_at, energy_wh, id_tag, mode"
            " from sessions where charger_id = any(%s) and started_at < %s and (ended_at is null or ended_at >= %s)"
            " order by charger_id, connector_id, started_at", (list(charger_ids), end, start)).fetchall()
    return [SessionSpan(**r) for r in rows]


def departures_for(conn: Connection, charger_ids: Sequence[str]) -> list[DepartureRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("select charger_id, connector_id, departure_at, target_soc_pct, battery_wh, energy_wh,"
                           " set_by from departures where charger_id = any(%s) order by departure_at",
                           (list(charger_ids),)).fetchall()
    return [DepartureRow(**r) for r in rows]


def latest_decisions(conn: Connection, charger_ids: Sequence[str], since: datetime) -> list[LatestDecision]:
    """The newest control decision per connector since ``since``: the current planned limit."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select distinct on (charger_id, connector_id) charger_id, connector_id, ts, new_limit_a, paused, reason"
            " from control_decisions where charger_id = any(%s) and ts >= %s"
            " order by charger_id, connector_id, ts desc", (list(charger_ids), since)).fetchall()
    return [LatestDecision(**r) for r in rows]


# --------------------------------------------------------------------------- installer mode


@dataclass(frozen=True, slots=True)
class LiveConnector:
    connector_id: int
    status: str
    connector_status: str | None
    power_w: float | None
    current_a: float | None
    soc_pct: float | None
    error_code: str | None
    online: bool
    last_seen_at: datetime | None
    voltage_v: float | None
    temperature_c: float | None
    sample_at: datetime | None


def insert_installer_code(conn: Connection, *, code_sha256: bytes, site_id: str | None, issued_by: str,
                          issued_at: datetime, expires_at: datetime) -> None:
    conn.execute("insert into installer_codes (code_sha256, site_id, issued_by, issued_at, expires_at)"
                 " values (%s, %s, %s, %s, %s)", (code_sha256, site_id, issued_by, issued_at, expires_at))


@dataclass(frozen=True, slots=True)
class RedeemOutcome:
    redeemed: bool
    site_id: str | None
    reason: str          # "ok", "unknown", "used", "expired"


def redeem_installer_code(conn: Connection, *, code_sha256: bytes, user_id: str, now: datetime) -> RedeemOutcome:
    """Mark the code used by ``user_id`` if it is unused and unexpired (atomically: it works once)."""
    row = conn.execute("update installer_codes set used_at = %s, used_by = %s"
                       " where code_sha256 = %s and used_at is null and expires_at > %s returning site_id",
                       (now, user_id, code_sha256, now)).fetchone()
    if row is not None:
        return RedeemOutcome(True, row[0], "ok")
    seen = conn.execute("select used_at, expires_at, site_id from installer_codes where code_sha256 = %s",
                        (code_sha256,)).fetchone()
    if seen is None:
        return RedeemOutcome(False, None, "unknown")
    return RedeemOutcome(False, seen[2], "used" if seen[0] is not None else "expired")


def latest_redemption(conn: Connection, user_id: str, since: datetime) -> tuple[datetime, str | None] | None:
    """When the user last redeemed a code (at or after ``since``) and for which site."""
    row = conn.execute("select used_at, site_id from installer_codes where used_by = %s and used_at >= %s"
                       " order by used_at desc limit 1", (user_id, since)).fetchone()
    return None if row is None else (row[0], row[1])


BootProfile = tuple[str | None, str | None, str | None, datetime | None]


def boot_profile(conn: Connection, charger_id: str) -> BootProfile | None:
    """(serial number, firmware version, OCPP version, last boot) as the last BootNotification told."""
    row = conn.execute("select serial_number, firmware_version, ocpp_version, last_boot_at from chargers"
                       " where charger_id = %s", (charger_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def live_connectors(conn: Connection, charger_id: str, *, samples_since: datetime) -> list[LiveConnector]:
    """Each connector's live state with the newest voltage/temperature sample since ``samples_since``."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """select l.connector_id, l.status, l.connector_status, l.power_w, l.current_a, l.soc_pct, l.error_code,
                      l.online, coalesce(l.last_seen_at, l.updated_at) as last_seen_at,
                      m.voltage_v, m.temperature_c, m.ts as sample_at
               from live_state l
               left join lateral (
                   select voltage_v, temperature_c, ts from meter_samples ms
                   where ms.charger_id = l.charger_id and ms.connector_id = l.connector_id and ms.ts >= %s
                     and (ms.voltage_v is not null or ms.temperature_c is not null)
                   order by ms.ts desc limit 1
               ) m on true
               where l.charger_id = %s and l.connector_id > 0 order by l.connector_id""",
            (samples_since, charger_id)).fetchall()
    return [LiveConnector(**r) for r in rows]
