"""Device & V2G: the charger's profile, live diagnostics, V2G readiness and the owner's V2G settings.

Reads need ``VIEW`` on the charger. "Notify me" is the user's own wish (``VIEW`` suffices); the
vehicle/grid confirmations and the discharge settings change how the charger may be used, so they
need ``CHANGE_SETTINGS``, and the discharge settings are refused until every prerequisite is met.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time

from control.access import Permission
from control.site import site_from_mapping
from control.v2g import Prerequisite, ReadinessBadge, all_met, prerequisites, readiness
from dashboards.access import Access, Principal
from warehouse import charging_store
from warehouse.charging_store import ConnectorRow, DeviceRow, V2GPreferences


class V2GNotReadyError(ValueError):
    """Discharge settings asked for while a prerequisite is unmet (the message lists them)."""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    device: DeviceRow
    hardware_max_a: float | None
    hardware_max_source: str          # "site configuration", "device model" or "unknown"
    phases: int | None
    connectors: tuple[ConnectorRow, ...]
    badge: ReadinessBadge
    prerequisites: tuple[Prerequisite, ...]
    preferences: V2GPreferences
    may_change: bool                  # CHANGE_SETTINGS on this charger

    @property
    def v2g_unlocked(self) -> bool:
        return all_met(self.prerequisites)


def device_profile(who: Principal, access: Access, charger_id: str) -> DeviceProfile:
    access.require(who, Permission.VIEW, charger_id)
    with access.connection() as conn:
        device = charging_store.device_row(conn, charger_id)
        if device is None:
            raise LookupError(f"charger {charger_id} is not registered")
        connectors = charging_store.connector_rows(conn, [charger_id])
        prefs = charging_store.v2g_preferences(conn, who.user_id, charger_id)
        stored = charging_store.site_row(conn, device.site_id) if device.site_id else None
    site_max: float | None = None
    site_phases: int | None = None
    if stored is not None:
        site = site_from_mapping(stored.config)
        conf = next((c for c in site.chargers if c.charger_id == charger_id), None)
        if conf is not None:
            site_max, site_phases = conf.max_current_a, len(conf.phases)
    hardware_max = site_max if site_max is not None else device.model_max_current_a
    source = "site configuration" if site_max is not None else "device model" if hardware_max is not None \
        else "unknown"
    badge = readiness(device.bidirectional if device.model_known else None, device.vendor, device.model)
    items = prerequisites(badge, ocpp_version=device.ocpp_version, vehicle_bidirectional=prefs.vehicle_bidirectional,
                          grid_approved=prefs.grid_approved)
    return DeviceProfile(device, hardware_max, source, site_phases or device.model_phases, tuple(connectors), badge,
                         items, prefs, access.check(who, Permission.CHANGE_SETTINGS, charger_id).allowed)


def _store(who: Principal, access: Access, charger_id: str, prefs: V2GPreferences, now: datetime,
           action: str) -> V2GPreferences:
    with access.connection() as conn:
        charging_store.save_v2g_preferences(conn, who.user_id, charger_id, prefs, now=now)
    access.log(who, action, charger_id, allowed=True)
    return prefs


def set_v2g_notify(who: Principal, access: Access, charger_id: str, notify: bool, *, now: datetime) -> V2GPreferences:
    """Ask to be told when V2G becomes possible on this charger (the user's own preference)."""
    access.require(who, Permission.VIEW, charger_id)
    with access.connection() as conn:
        prefs = charging_store.v2g_preferences(conn, who.user_id, charger_id)
    return _store(who, access, charger_id, replace(prefs, notify=notify), now, "v2g_notify")


def confirm_v2g_prerequisites(who: Principal, access: Access, charger_id: str, *, vehicle_bidirectional: bool,
                              grid_approved: bool, now: datetime) -> V2GPreferences:
    access.require(who, Permission.CHANGE_SETTINGS, charger_id)
    with access.connection() as conn:
        prefs = charging_store.v2g_preferences(conn, who.user_id, charger_id)
    return _store(who, access, charger_id, replace(prefs, vehicle_bidirectional=vehicle_bidirectional,
                                                   grid_approved=grid_approved), now, "v2g_confirm")


def save_v2g_settings(who: Principal, access: Access, charger_id: str, *, discharge_start: time,
                      discharge_end: time, min_soc_pct: float, price_threshold_eur_kwh: float,
                      now: datetime) -> V2GPreferences:
    """The discharge window, reserve and price threshold; refused until every prerequisite is met."""
    access.require(who, Permission.CHANGE_SETTINGS, charger_id)
    profile = device_profile(who, access, charger_id)
    unmet = [p.name for p in profile.prerequisites if not p.met]
    if unmet:
        access.log(who, "v2g_settings", charger_id, allowed=False, detail="unmet: " + "; ".join(unmet))
        raise V2GNotReadyError("V2G settings stay locked until every prerequisite is met; unmet: " + "; ".join(unmet))
    if not 0 <= min_soc_pct <= 100 or price_threshold_eur_kwh < 0:
        raise ValueError("the reserve must be 0-100 % and the price threshold >= 0 €/kWh")
    if discharge_start == discharge_end:
        raise ValueError("the discharge window needs different start and end times")
    prefs = replace(profile.preferences, discharge_start=discharge_start, discharge_end=discharge_end,
                    min_soc_pct=min_soc_pct, price_threshold_eur_kwh=price_threshold_eur_kwh)
    return _store(who, access, charger_id, prefs, now, "v2g_settings")
