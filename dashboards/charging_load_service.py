"""Building load vs the site's limit, the chargers' share, and the throttling audit trail.

Needs ``VIEW_LOAD`` on at least one charger of the site. The site's totals (building load, the
limit, the EV current of every charger) are shown to such a user; per-charger detail and the
audit trail only for the chargers they may see (the rest is one "other chargers" figure).
Currents are per phase on the worst phase: building worst phase + the sum of the chargers'
per-phase currents, an upper bound (every charger counted as if on that phase).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from control.access import Decision, Permission
from control.site import site_from_mapping
from dashboards.access import Access, AccessDenied, Principal
from warehouse import charging_store
from warehouse.charging_store import AuditRow, BuildingLoadPoint

DEFAULT_WINDOW: Final = timedelta(hours=2)
SAFE_FALLBACK_BANNER: Final = "External controller offline: safe local fallback"


@dataclass(frozen=True, slots=True)
class ChargerShare:
    charger_id: str
    name: str
    current_a: float
    power_w: float


@dataclass(frozen=True, slots=True)
class LoadPoint:
    ts: datetime
    series: str   # "Building", "EV limit set", "Limit"
    current_a: float


@dataclass(frozen=True, slots=True)
class SiteLoad:
    site_id: str
    site_name: str
    limit_a: float | None            # main breaker, worst phase
    building_a: float | None         # latest building reading, worst phase (None: no meter reading)
    building_at: datetime | None
    ev_a: float                      # every charger of the site, per phase summed
    shares: tuple[ChargerShare, ...]  # the visible chargers
    other_chargers_a: float          # chargers of the site the user cannot see
    stale: bool
    stale_reason: str | None
    series: tuple[LoadPoint, ...]
    audit: tuple[AuditRow, ...]
    meter_timeout_s: float

    @property
    def total_a(self) -> float:
        return (self.building_a or 0.0) + self.ev_a

    @property
    def share(self) -> float | None:
        return None if not self.limit_a else self.total_a / self.limit_a


# --------------------------------------------------------------------------- pure helpers


def _worst_a(point: BuildingLoadPoint, voltage_v: float) -> float:
    return point.worst_phase_a if point.worst_phase_a is not None else point.power_w / (3 * voltage_v)


def stale_reason(latest: BuildingLoadPoint | None, site_state: str | None, *, now: datetime,
                 meter_timeout_s: float) -> str | None:
    """Why the site runs on its safe fallback, or None (the pipeline's state wins; else the meter's age)."""
    if site_state == "safe_fallback":
        return "the controller reports a stale or missing building meter reading"
    if latest is not None and (now - latest.ts).total_seconds() > meter_timeout_s:
        return f"the last building meter reading is {(now - latest.ts).total_seconds():.0f} s old"
    return None


def ev_limit_series(audit: Sequence[AuditRow], since: datetime) -> list[tuple[datetime, float]]:
    """The sum of the connectors' latest limits after each decision, oldest first (audit is newest first)."""
    limits: dict[tuple[str, int], float] = {}
    out: list[tuple[datetime, float]] = []
    for row in sorted(audit, key=lambda r: r.ts):
        limits[(row.charger_id, row.connector_id)] = 0.0 if row.paused else row.new_limit_a
        if row.ts >= since:
            total = sum(limits.values())
            if out and out[-1][0] == row.ts:
                out[-1] = (row.ts, total)
            else:
                out.append((row.ts, total))
    return out


# --------------------------------------------------------------------------- read


def site_load(who: Principal, access: Access, site_id: str, *, now: datetime,
              window: timedelta = DEFAULT_WINDOW) -> SiteLoad:
    since = now - window
    with access.connection() as conn:
        site_chargers = charging_store.site_charger_ids(conn, site_id)
        stored = charging_store.site_row(conn, site_id)
    visible = [c for c in access.visible_ids(who, site_id=site_id) if c in site_chargers]
    if not any(access.check(who, Permission.VIEW_LOAD, c).allowed for c in visible):
        access.log(who, Permission.VIEW_LOAD.value, None, allowed=False, detail=f"site {site_id}")
        raise AccessDenied(Decision(False, f"you may not view the load of site {site_id}"), Permission.VIEW_LOAD,
                           None)
    if stored is None:
        raise LookupError(f"site {site_id} has no load-management configuration (no limit to compare with)")
    site = site_from_mapping(stored.config)
    main = next((c for c in site.circuits if c.parent_id is None), None)
    limit_a = min(main.limit_a.as_tuple()) if main is not None else None
    with access.connection() as conn:
        rows = charging_store.connector_rows(conn, site_chargers)
        latest = charging_store.latest_building_load(conn, site_id, now)
        history = charging_store.building_load(conn, site_id, since, now)
        state = charging_store.latest_site_state(conn, site_id, now)
        audit_all = charging_store.control_audit(conn, site_id, site_chargers, since - timedelta(hours=12), now,
                                                 limit=5000)
    by_charger: dict[str, ChargerShare] = {}
    for row in rows:
        current = (row.live.current_a or 0.0) if row.live.online else 0.0
        prev = by_charger.get(row.charger_id)
        by_charger[row.charger_id] = ChargerShare(
            row.charger_id, row.charger_name, (prev.current_a if prev else 0.0) + current,
            (prev.power_w if prev else 0.0) + (row.live.power_w or 0.0))
    ev_a = sum(s.current_a for s in by_charger.values())
    shares = tuple(s for cid, s in by_charger.items() if cid in visible)
    reason = stale_reason(latest, state[1] if state else None, now=now, meter_timeout_s=site.meter_timeout_s)
    series: list[LoadPoint] = [LoadPoint(p.ts, "Building", _worst_a(p, site.voltage_v)) for p in history]
    series += [LoadPoint(ts, "EV limit set", a) for ts, a in ev_limit_series(audit_all, since)]
    if limit_a is not None:
        series += [LoadPoint(since, "Limit", limit_a), LoadPoint(now, "Limit", limit_a)]
    audit = tuple(r for r in audit_all if r.charger_id in visible and r.ts >= since)
    return SiteLoad(site_id, stored.name, limit_a, None if latest is None else _worst_a(latest, site.voltage_v),
                    None if latest is None else latest.ts, ev_a, shares, ev_a - sum(s.current_a for s in shares),
                    reason is not None, reason, tuple(series), audit, site.meter_timeout_s)
