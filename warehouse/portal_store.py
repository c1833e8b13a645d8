"""Read models the dashboards share: chargers with their place and state, and locations.

Every function takes the charger ids the caller may see (``dashboards.access`` computed them)
and never returns anything outside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import dict_row

# The chip shown for a whole charger: its most telling connector status.
_STATUS_RANK = {"Error": 0, "Offline": 1, "Charging": 2, "Paused": 3, "Waiting for vehicle": 4, "Idle": 5}


@dataclass(frozen=True, slots=True)
class ChargerSummary:
    charger_id: str
    name: str                      # display name, else the charger id
    site_id: str | None
    site_name: str | None
    org_id: str | None
    status: str                    # the worst connector status (Error > Offline > Charging > ... > Idle)
    connectors: int
    power_w: float                 # all connectors together
    last_seen_at: datetime | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    ocpp_version: str | None
    cost_centre: str | None
    latitude: float | None
    longitude: float | None
    address: str | None


@dataclass(frozen=True, slots=True)
class Location:
    site_id: str | None            # None: chargers on no site ("Unassigned")
    name: str
    address: str | None
    latitude: float | None
    longitude: float | None
    chargers: int
    by_status: dict[str, int]


_CHARGERS = """
select c.charger_id, coalesce(nullif(c.display_name, ''), c.charger_id) as name, c.site_id, s.name as site_name,
       s.org_id, c.vendor, c.model, c.serial_number, c.firmware_version, c.ocpp_version, c.cost_centre,
       s.latitude, s.longitude, s.address,
       coalesce(l.statuses, '{}') as statuses, coalesce(l.connectors, 0) as connectors,
       coalesce(l.power_w, 0) as power_w, l.last_seen_at
from chargers c
left join sites s on s.site_id = c.site_id
left join lateral (
    select array_agg(status) as statuses, count(*) as connectors, sum(coalesce(power_w, 0)) as power_w,
           max(coalesce(last_seen_at, updated_at)) as last_seen_at
    from live_state ls where ls.charger_id = c.charger_id and ls.connector_id > 0
) l on true
where c.charger_id = any(%s)
order by s.name nulls last, name, c.charger_id
"""


def _worst(statuses: Sequence[str]) -> str:
    if not statuses:
        return "Offline"
    return min(statuses, key=lambda s: _STATUS_RANK.get(s, 9))


def charger_summaries(conn: Connection, charger_ids: Sequence[str]) -> list[ChargerSummary]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_CHARGERS, (list(charger_ids),)).fetchall()
    out = []
    for row in rows:
        statuses = row.pop("statuses")
        out.append(ChargerSummary(status=_worst(statuses), **row))
    return out


def locations(summaries: Sequence[ChargerSummary]) -> list[Location]:
    """Group charger summaries by site (pure, so a page reuses the summaries it already has)."""
    groups: dict[str | None, list[ChargerSummary]] = {}
    for s in summaries:
        groups.setdefault(s.site_id, []).append(s)
    out = []
    for site_id, members in groups.items():
        first = members[0]
        counts: dict[str, int] = {}
        for m in members:
            counts[m.status] = counts.get(m.status, 0) + 1
        out.append(Location(site_id, first.site_name or ("Unassigned" if site_id is None else site_id),
                            first.address, first.latitude, first.longitude, len(members), counts))
    return sorted(out, key=lambda loc: (loc.site_id is None, loc.name.lower()))
