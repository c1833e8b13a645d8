"""Load-management configuration in PostgreSQL: sites, charging modes, operator limits.

Written by front ends and the CLI (every write is validated by the pure domain first, so a bad
configuration is refused before it can steer a charger), read by the dataflow, which polls
:func:`config_stamp` and reloads with :func:`load_site_configs` when it changes. Reads of what
the dataflow decided (the audit log, compliance) are here too.

Functions take an open ``psycopg`` connection; the caller owns transactions (``autocommit`` or
``with conn.transaction()``). Times are passed in, never read here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from control.contract import ChargingMode
from control.modes import ModeChange, ModeChangeResult, validate_mode_change
from control.rules_config import rules_to_mapping
from control.site import LimitScope, OperatorLimit, SiteModelError, site_to_mapping
from control.site_config import Departure, SiteControlConfig, build_config, fingerprint, settings_to_mapping
from control.tariffs import Tariff
from warehouse.tariff_store import load_tariffs

log = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]


class ControlConfigError(ValueError):
    """A configuration the domain refuses; the message names the bad value."""


# --------------------------------------------------------------------------- sites


def save_site(conn: Connection, site: Mapping[str, Any], *, rules: Sequence[Mapping[str, Any]] = (),
              timezone: str = "UTC", enabled: bool = True, updated_by: str | None = None) -> str:
    """Create or replace a site's configuration; returns its id. The chargers it lists are placed
    on it in the registry (``chargers.site_id``) when they are registered."""
    try:
        config = build_config(site=site, rules=rules, timezone=timezone)
    except ValueError as exc:  # SiteModelError, RuleError, an unknown time zone
        raise ControlConfigError(str(exc)) from exc
    site_id = config.site_id
    name = config.site.name or site_id
    stored = site_to_mapping(config.site)
    if site.get("control") is not None:  # the [control] table, normalised; absent stays absent
        stored["control"] = settings_to_mapping(config.settings)
    with conn.transaction():
        conn.execute(
            """insert into sites (site_id, name, timezone, config, rules, enabled, updated_at, updated_by)
               values (%s, %s, %s, %s, %s, %s, now(), %s)
               on conflict (site_id) do update set name = excluded.name, timezone = excluded.timezone,
                   config = excluded.config, rules = excluded.rules, enabled = excluded.enabled,
                   updated_at = now(), updated_by = excluded.updated_by""",
            # Stored normalised (JSON-ready): a hand-written TOML file's times and dates become strings.
            (site_id, name, timezone, Jsonb(stored), Jsonb(rules_to_mapping(config.rules)),
             enabled, updated_by))
        conn.execute("update chargers set site_id = null, updated_at = now() where site_id = %s"
                     " and not (charger_id = any(%s))", (site_id, list(config.charger_ids)))
        conn.execute("update chargers set site_id = %s, updated_at = now() where charger_id = any(%s)"
                     " and site_id is distinct from %s", (site_id, list(config.charger_ids), site_id))
    return site_id


def delete_site(conn: Connection, site_id: str) -> bool:
    with conn.transaction():
        deleted = conn.execute("delete from sites where site_id = %s", (site_id,)).rowcount
        conn.execute("update chargers set site_id = null, updated_at = now() where site_id = %s", (site_id,))
    return bool(deleted)


@dataclass(frozen=True, slots=True)
class SiteSummary:
    site_id: str
    name: str
    timezone: str
    enabled: bool
    chargers: tuple[str, ...]
    rules: int
    updated_at: datetime
    updated_by: str | None


def list_sites(conn: Connection) -> list[SiteSummary]:
    out = []
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute("select * from sites order by site_id"):
            chargers = tuple(sorted(str(c["id"]) for c in row["config"].get("chargers", [])))
            out.append(SiteSummary(row["site_id"], row["name"], row["timezone"], row["enabled"], chargers,
                                   len(row["rules"]), row["updated_at"], row["updated_by"]))
    return out


def site_mapping(conn: Connection, site_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The stored (site, rules) mappings, as saved."""
    row = conn.execute("select config, rules from sites where site_id = %s", (site_id,)).fetchone()
    return None if row is None else (row[0], row[1])


# --------------------------------------------------------------------------- modes


def current_mode(conn: Connection, charger_id: str, connector_id: int) -> ChargingMode:
    row = conn.execute("select mode from connector_modes where charger_id = %s and connector_id in (%s, 0)"
                       " order by connector_id desc limit 1", (charger_id, connector_id)).fetchone()
    return ChargingMode(row[0]) if row else ChargingMode.STANDARD


def set_mode(conn: Connection, charger_id: str, connector_id: int, mode: str, *, requested_by: str,
             now: datetime, confirmed: bool = False, session_id: str | None = None) -> ModeChangeResult:
    """Validate a mode request (Boost needs ``confirmed``) and store it; refused requests are
    recorded too. The dataflow applies an accepted mode at its next poll (well under a second)."""
    with conn.transaction():
        before = current_mode(conn, charger_id, connector_id)
        result = validate_mode_change(ModeChange(
            charger_id=charger_id, connector_id=connector_id, mode=mode, requested_by=requested_by,
            requested_at=now, current_mode=before, confirmed=confirmed, session_id=session_id))
        record = result.record
        conn.execute(
            """insert into mode_changes (ts, charger_id, connector_id, old_mode, new_mode, accepted, confirmed,
                                         requested_by, message)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (now, charger_id, connector_id, before.value, record.requested_mode, result.accepted,
             confirmed, requested_by, result.message))
        if result.accepted and result.mode is not before:
            conn.execute(
                """insert into connector_modes (charger_id, connector_id, mode, updated_at, updated_by)
                   values (%s, %s, %s, %s, %s)
                   on conflict (charger_id, connector_id) do update set mode = excluded.mode,
                       updated_at = excluded.updated_at, updated_by = excluded.updated_by""",
                (charger_id, connector_id, result.mode.value, now, requested_by))
    return result


# --------------------------------------------------------------------------- operator limits


def set_operator_limit(conn: Connection, limit_id: str, *, site_id: str, limit_a: float, starts_at: datetime,
                       source: str, charger_id: str | None = None, ends_at: datetime | None = None,
                       reason: str | None = None, created_by: str | None = None) -> None:
    """Create or replace a limit (the same ``limit_id`` again replaces it: an operator API's
    idempotent PUT)."""
    try:
        OperatorLimit(scope=LimitScope.CHARGER if charger_id else LimitScope.SITE, limit_a=limit_a,
                      target_id=charger_id, ends_at=ends_at, source=source)
    except SiteModelError as exc:
        raise ControlConfigError(str(exc)) from exc
    if ends_at is not None and ends_at <= starts_at:
        raise ControlConfigError("ends_at must be after starts_at")
    conn.execute(
        """insert into operator_limits (limit_id, site_id, charger_id, limit_a, starts_at, ends_at, source, reason,
                                        created_by, updated_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
           on conflict (limit_id) do update set site_id = excluded.site_id, charger_id = excluded.charger_id,
               limit_a = excluded.limit_a, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
               source = excluded.source, reason = excluded.reason, updated_at = now()""",
        (limit_id, site_id, charger_id, limit_a, starts_at, ends_at, source, reason, created_by))


def end_operator_limit(conn: Connection, limit_id: str, *, now: datetime) -> bool:
    """End a limit now (kept for the record)."""
    return bool(conn.execute(
        "update operator_limits set ends_at = greatest(%s, starts_at + interval '1 microsecond'), updated_at = now()"
        " where limit_id = %s and (ends_at is null or ends_at > %s)", (now, limit_id, now)).rowcount)


# --------------------------------------------------------------------------- departures


def set_departure(conn: Connection, charger_id: str, connector_id: int, departure: Departure, *,
                  set_by: str | None = None) -> None:
    """When the vehicle on a connector must leave, and with what (replaces the previous one)."""
    if departure.energy_wh is None and (departure.target_soc_pct is None or departure.battery_wh is None):
        raise ControlConfigError("a departure needs a target SoC and the battery size, or the energy to deliver")
    for name in ("target_soc_pct", "battery_wh", "energy_wh"):
        value = getattr(departure, name)
        if value is not None and not value > 0:
            raise ControlConfigError(f"{name} must be > 0")
    if departure.target_soc_pct is not None and departure.target_soc_pct > 100:
        raise ControlConfigError("target_soc_pct must be at most 100")
    conn.execute(
        """insert into departures (charger_id, connector_id, departure_at, target_soc_pct, battery_wh, energy_wh,
                                   set_by, updated_at)
           values (%s, %s, %s, %s, %s, %s, %s, now())
           on conflict (charger_id, connector_id) do update set departure_at = excluded.departure_at,
               target_soc_pct = excluded.target_soc_pct, battery_wh = excluded.battery_wh,
               energy_wh = excluded.energy_wh, set_by = excluded.set_by, updated_at = now()""",
        (charger_id, connector_id, departure.departure_at, departure.target_soc_pct, departure.battery_wh,
         departure.energy_wh, set_by))


def clear_departure(conn: Connection, charger_id: str, connector_id: int) -> bool:
    return bool(conn.execute("delete from departures where charger_id = %s and connector_id = %s",
                             (charger_id, connector_id)).rowcount)


# --------------------------------------------------------------------------- what the dataflow reads


def config_stamp(conn: Connection, now: datetime) -> str:
    """Changes whenever anything :func:`load_site_configs` returns would change (including an
    operator limit starting or ending by the clock). Tariffs change rarely: their rows' latest
    ``updated_at`` and counts (``save_tariff`` touches the tariff's row when it rewrites its
    versions) are enough, the prices themselves are only read when the stamp moves."""
    row = conn.execute(
        """select (select coalesce(max(updated_at)::text, '') || count(*) from sites),
                  (select coalesce(max(updated_at)::text, '') || count(*) from tariffs),
                  (select coalesce(max(updated_at)::text, '') || count(*) from tariff_assignments),
                  (select count(*) from tariff_versions),
                  (select coalesce(max(updated_at)::text, '') || count(*) from connector_modes),
                  (select coalesce(max(updated_at)::text, '') || count(*) from operator_limits),
                  (select coalesce(max(updated_at)::text, '') || count(*) from departures),
                  (select count(*) from operator_limits where starts_at <= %(now)s
                       and (ends_at is null or ends_at > %(now)s))""", {"now": now}).fetchone()
    return fingerprint(row)


@dataclass(frozen=True, slots=True)
class LoadedConfigs:
    configs: dict[str, SiteControlConfig]
    errors: dict[str, str]  # site id -> why its stored configuration could not be used


def tariffs_by_charger(conn: Connection, chargers_by_site: Mapping[str, Sequence[str]]) -> dict[str, Tariff]:
    """The tariff pricing each charger: its own assignment, else its site's (as costing does)."""
    rows = conn.execute("select scope_kind, scope_id, tariff_id from tariff_assignments").fetchall()
    assigned = {(kind, scope): tariff_id for kind, scope, tariff_id in rows}
    wanted: dict[str, str] = {}
    for site_id, charger_ids in chargers_by_site.items():
        for charger_id in charger_ids:
            tariff_id = assigned.get(("charger", charger_id)) or assigned.get(("site", site_id))
            if tariff_id is not None:
                wanted[charger_id] = tariff_id
    if not wanted:
        return {}
    tariffs = load_tariffs(conn, sorted(set(wanted.values())))
    return {charger_id: tariffs[tid] for charger_id, tid in wanted.items() if tid in tariffs}


def load_site_configs(conn: Connection, now: datetime) -> LoadedConfigs:
    """Every enabled site's configuration with the modes of its chargers, the operator limits in
    force at ``now``, the departures and each charger's tariff. A site whose stored rows no longer
    parse is reported in ``errors``."""
    with conn.cursor(row_factory=dict_row) as cur:
        sites = cur.execute("select * from sites where enabled order by site_id").fetchall()
        modes = cur.execute("select charger_id, connector_id, mode from connector_modes").fetchall()
        departures = cur.execute("select * from departures where departure_at > %(now)s", {"now": now}).fetchall()
        limits = cur.execute(
            """select * from operator_limits where starts_at <= %(now)s and (ends_at is null or ends_at > %(now)s)
               order by site_id, limit_id""", {"now": now}).fetchall()
    by_charger: dict[str, dict[tuple[str, int], str]] = {}
    for m in modes:
        by_charger.setdefault(m["charger_id"], {})[(m["charger_id"], m["connector_id"])] = m["mode"]
    leaving: dict[str, dict[tuple[str, int], Departure]] = {}
    for d in departures:
        leaving.setdefault(d["charger_id"], {})[(d["charger_id"], d["connector_id"])] = Departure(
            d["departure_at"].astimezone(UTC), d["target_soc_pct"], d["battery_wh"], d["energy_wh"])
    placed = {row["site_id"]: [str(c.get("id")) for c in row["config"].get("chargers", []) if isinstance(c, dict)]
              for row in sites}
    tariffs = tariffs_by_charger(conn, placed)
    configs: dict[str, SiteControlConfig] = {}
    errors: dict[str, str] = {}
    for row in sites:
        site_id = row["site_id"]
        charger_ids = placed[site_id]
        site_tariffs = {cid: tariffs[cid] for cid in charger_ids if cid in tariffs}
        site_modes = {k: v for cid in charger_ids for k, v in by_charger.get(cid, {}).items()}
        site_limits = [lim for lim in limits if lim["site_id"] == site_id]
        site_departures = {k: v for cid in charger_ids for k, v in leaving.get(cid, {}).items()}
        try:
            operator = [OperatorLimit(scope=LimitScope.CHARGER if lim["charger_id"] else LimitScope.SITE,
                                      limit_a=lim["limit_a"], target_id=lim["charger_id"],
                                      ends_at=lim["ends_at"].astimezone(UTC) if lim["ends_at"] else None,
                                      source=lim["source"]) for lim in site_limits]
            version = fingerprint(row["config"], row["rules"], row["timezone"], sorted(site_modes.items()),
                                  [(lim["limit_id"], lim["limit_a"], lim["charger_id"], lim["ends_at"])
                                   for lim in site_limits], sorted(site_departures.items()),
                                  sorted((cid, repr(t)) for cid, t in site_tariffs.items()))
            configs[site_id] = build_config(site=row["config"], rules=row["rules"], modes=site_modes,
                                            operator_limits=operator, timezone=row["timezone"], version=version,
                                            departures=site_departures, tariffs=site_tariffs)
        except ValueError as exc:
            errors[site_id] = str(exc)
    return LoadedConfigs(configs, errors)

