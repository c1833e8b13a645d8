"""The fleet, locations, bulk and departure-schedule pages' service: every read scoped, every action checked.

Each public method takes the signed-in :class:`~dashboards.access.Principal` first and checks it
through :class:`~dashboards.access.Access` before touching data, so a test calling the service
directly is refused exactly like a click in the app. Actions are written to the access log with
their outcome. No Streamlit here: pages draw what these methods return.

Bulk actions are checked twice: ``BULK_ACTIONS`` (may this user use bulk at all?) and then the
action's own permission on each charger. A charger the user may not act on is reported in the
results as refused and is never acted on; the others go ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

from control.access import ChargerRef, Decision, Permission, decide
from control.contract import ChargingMode, JsonScalar
from control.modes import describe
from control.naming import NameVerdict, check_name
from dashboards.access import Access, AccessDenied, Principal
from dashboards.fleet_views import FleetOverview, Schedule, build_schedule, totals_of
from warehouse import control_store, fleet_store
from warehouse.command_api import DEFAULT_TIMEOUT_S, Action, CommandReply, Target
from warehouse.control_store import ControlConfigError
from warehouse.fleet_store import FleetRow


class CommandSender(Protocol):
    """``warehouse.command_api.CommandService`` (or a test double)."""

    def send_many(self, action: Action, targets: Sequence[Target], *, requested_by: str | None,
                  params: Mapping[str, JsonScalar] | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> list[CommandReply]: ...


# --------------------------------------------------------------------------- bulk


class BulkAction(StrEnum):
    START = "start"
    STOP = "stop"
    SET_MODE = "set_mode"
    SET_LIMIT = "set_limit"
    CLEAR_LIMIT = "clear_limit"


_BULK_PERMISSION: Final = {BulkAction.START: Permission.START_STOP, BulkAction.STOP: Permission.START_STOP,
                           BulkAction.SET_MODE: Permission.SET_MODE, BulkAction.SET_LIMIT: Permission.SET_LIMIT,
                           BulkAction.CLEAR_LIMIT: Permission.SET_LIMIT}


@dataclass(frozen=True, slots=True)
class BulkResult:
    charger_id: str
    ok: bool
    outcome: str           # done | refused | failed | no_answer
    message: str


def failed_ids(results: Iterable[BulkResult]) -> list[str]:
    """What "Retry failed" sends again: everything that did not succeed, except refusals (retrying cannot help)."""
    return [r.charger_id for r in results if not r.ok and r.outcome != "refused"]


def limit_id_for(charger_id: str) -> str:
    """One dashboard limit per charger: setting a new one replaces the previous one."""
    return f"dashboard-{charger_id}"


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class LocationInput:
    address: str | None
    latitude: float | None
    longitude: float | None


def check_location(address: str, latitude: float | None, longitude: float | None) -> LocationInput:
    """Manual address and coordinates (no geocoding): both coordinates or neither, in range."""
    if (latitude is None) != (longitude is None):
        raise ValueError("Enter both latitude and longitude, or neither.")
    if latitude is not None and not -90 <= latitude <= 90:
        raise ValueError("Latitude must be between -90 and 90.")
    if longitude is not None and not -180 <= longitude <= 180:
        raise ValueError("Longitude must be between -180 and 180.")
    cleaned = " ".join(address.split()) or None
    if cleaned is None and latitude is None:
        raise ValueError("Enter an address or coordinates.")
    return LocationInput(cleaned, latitude, longitude)


class FleetService:
    def __init__(self, access: Access, commands: Callable[[], CommandSender] | None = None,
                 *, command_timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._access, self._commands, self._timeout_s = access, commands, command_timeout_s

    def _sender(self) -> CommandSender:
        if self._commands is None:
            raise RuntimeError("this service was built without a command channel")
        return self._commands()

    # reads ---------------------------------------------------------------------------------------

    def overview(self, who: Principal, *, site_id: str | None = None) -> FleetOverview:
        """Every charger the user may see (of one site, or all), with totals. One grid query."""
        ids = self._access.visible_ids(who, site_id=site_id)
        with self._access.connection() as conn:
            rows = fleet_store.fleet_rows(conn, ids, day=self._access.now().date())
        return FleetOverview(rows, totals_of(rows))

    def schedule(self, who: Principal, *, start: datetime, end: datetime, site_id: str | None = None) -> Schedule:
        """Sessions and planned charging of the chargers whose every session the user may see."""
        refs = [r for r in self._access.visible(who, site_id=site_id)
                if decide(who.grants, Permission.VIEW_ALL_SESSIONS, r).allowed]
        ids = [r.charger_id for r in refs]
        now = self._access.now()
        with self._access.connection() as conn:
            rows = fleet_store.fleet_rows(conn, ids, day=now.date())
            sessions = fleet_store.sessions_overlapping(conn, ids, start, end)
            departures = fleet_store.departures_for(conn, ids)
            decisions = fleet_store.latest_decisions(conn, ids, now - timedelta(hours=24))
        return build_schedule(rows, sessions, departures, decisions, now=now, start=start, end=end)

    # per-charger actions -------------------------------------------------------------------------

    def quick_action(self, who: Principal, charger_id: str, action: Action) -> CommandReply:
        """Start or stop one charger from its card; the reply within ~5 s."""
        if action not in (Action.START, Action.STOP):
            raise ValueError(f"{action} is not a quick action")
        self._access.require(who, Permission.START_STOP, charger_id)
        params = self._start_params(who) if action is Action.START else None
        reply = self._sender().send_many(action, [Target(charger_id)], requested_by=who.user_id, params=params,
                                         timeout_s=self._timeout_s)[0]
        self._access.log(who, action.value, charger_id, allowed=True, detail=reply.message)
        return reply

    def rename(self, who: Principal, charger_id: str, name: str) -> NameVerdict:
        """Rename, refusing a name another charger of the same location already has."""
        ref = self._require_ref(who, Permission.CHANGE_SETTINGS, charger_id)
        with self._access.connection() as conn:
            names = fleet_store.names_at_site(conn, ref.site_id)
            verdict = check_name(name, others=[n for cid, n in names.items() if cid != charger_id],
                                 location=fleet_store.site_name(conn, ref.site_id))
            if verdict.ok:
                fleet_store.rename_charger(conn, charger_id, verdict.name)
        self._access.log(who, "rename", charger_id, allowed=True,
                         detail=verdict.name if verdict.ok else f"refused: {verdict.message}")
        return verdict

    def set_cost_centre(self, who: Principal, charger_id: str, cost_centre: str) -> str | None:
        self._access.require(who, Permission.CHANGE_SETTINGS, charger_id)
        cleaned = " ".join(cost_centre.split())[:60] or None
        with self._access.connection() as conn:
            fleet_store.set_cost_centre(conn, charger_id, cleaned)
        self._access.log(who, "set_cost_centre", charger_id, allowed=True, detail=cleaned or "cleared")
        return cleaned

    def set_site_location(self, who: Principal, site_id: str, *, address: str, latitude: float | None,
                          longitude: float | None) -> LocationInput:
        """Manual address/coordinates for a site: needs CHANGE_SETTINGS on every charger there."""
        with self._access.connection() as conn:
            chargers = fleet_store.site_chargers(conn, site_id)
        if not chargers or not self._access.visible(who, site_id=site_id):
            # Same refusal whether the site exists or not: neither site nor charger ids are probed.
            reason = f"you have no access to location {site_id}"
            self._access.log(who, "set_site_location", None, allowed=False, detail=reason)
            raise AccessDenied(Decision(False, reason), Permission.CHANGE_SETTINGS, None)
        self._access.require_all(who, Permission.CHANGE_SETTINGS, chargers)
        location = check_location(address, latitude, longitude)
        with self._access.connection() as conn:
            fleet_store.set_site_location(conn, site_id, address=location.address, latitude=location.latitude,
                                          longitude=location.longitude)
        self._access.log(who, "set_site_location", None, allowed=True,
                         detail=f"{site_id}: {location.address} ({location.latitude}, {location.longitude})")
        return location

    # bulk ----------------------------------------------------------------------------------------

    def bulk(self, who: Principal, charger_ids: Sequence[str], action: BulkAction, *, mode: str | None = None,
             limit_a: float | None = None, confirmed: bool = False) -> list[BulkResult]:
        """Act on many chargers; one result per charger, in the given order (duplicates dropped)."""
        self._access.require(who, Permission.BULK_ACTIONS)
        ids = list(dict.fromkeys(charger_ids))
        permission = _BULK_PERMISSION[action]
        if action is BulkAction.SET_MODE:
            try:
                if ChargingMode((mode or "").lower()) is ChargingMode.BOOST:
                    permission = Permission.BOOST
            except ValueError:
                raise ValueError(f"{mode!r} is not a charging mode") from None
        if action is BulkAction.SET_LIMIT and (limit_a is None or not limit_a >= 0):
            raise ValueError("a limit needs a current of 0 A or more")
        results: dict[str, BulkResult] = {}
        allowed: list[ChargerRef] = []
        for cid in ids:
            refusal, ref = self._decide(who, permission, cid)
            if ref is None:  # Access.require logged the refusal
                results[cid] = BulkResult(cid, False, "refused", refusal or "refused")
            else:
                allowed.append(ref)
        if allowed:
            if action in (BulkAction.START, BulkAction.STOP):
                done = self._bulk_commands(who, allowed, Action(action.value))
            elif action is BulkAction.SET_MODE:
                done = self._bulk_modes(who, allowed, str(mode), confirmed)
            else:
                done = self._bulk_limits(who, allowed, limit_a if action is BulkAction.SET_LIMIT else None)
            for res in done:
                self._access.log(who, f"bulk_{action.value}", res.charger_id, allowed=True,
                                 detail=f"{res.outcome}: {res.message}")
                results[res.charger_id] = res
        return [results[cid] for cid in ids]

    def _bulk_commands(self, who: Principal, refs: Sequence[ChargerRef], action: Action) -> list[BulkResult]:
        params = self._start_params(who) if action is Action.START else None
        try:
            replies = self._sender().send_many(action, [Target(r.charger_id) for r in refs], requested_by=who.user_id,
                                               params=params, timeout_s=self._timeout_s)
        except Exception as exc:  # the broker or client failed as a whole: every charger failed
            return [BulkResult(r.charger_id, False, "failed", f"not sent: {exc}") for r in refs]
        out = []
        for reply in replies:
            outcome = "done" if reply.ok else ("no_answer" if reply.state.value == "no_result_yet" else "failed")
            out.append(BulkResult(reply.charger_id, reply.ok, outcome, reply.message))
        return out

    def _bulk_modes(self, who: Principal, refs: Sequence[ChargerRef], mode: str, confirmed: bool) -> list[BulkResult]:
        now = self._access.now()
        out = []
        with self._access.connection() as conn:
            connectors = fleet_store.connectors_of(conn, [r.charger_id for r in refs])
            for ref in refs:
                messages, ok = [], True
                for connector_id in connectors[ref.charger_id]:
                    res = control_store.set_mode(conn, ref.charger_id, connector_id, mode, requested_by=who.user_id,
                                                 now=now, confirmed=confirmed)
                    ok = ok and res.accepted
                    messages.append(res.message)
                text = " ".join(dict.fromkeys(messages))
                out.append(BulkResult(ref.charger_id, ok, "done" if ok else "failed",
                                      text or f"{describe(ChargingMode(mode.lower())).title}."))
        return out

    def _bulk_limits(self, who: Principal, refs: Sequence[ChargerRef], limit_a: float | None) -> list[BulkResult]:
        now = self._access.now()
        out = []
        with self._access.connection() as conn:
            for ref in refs:
                if ref.site_id is None:
                    out.append(BulkResult(ref.charger_id, False, "failed",
                                          "not on a load-managed site: a charger limit needs a site"))
                    continue
                if limit_a is None:
                    ended = control_store.end_operator_limit(conn, limit_id_for(ref.charger_id), now=now)
                    out.append(BulkResult(ref.charger_id, True, "done",
                                          "limit cleared" if ended else "no dashboard limit was set"))
                    continue
                try:
                    control_store.set_operator_limit(conn, limit_id_for(ref.charger_id), site_id=ref.site_id,
                                                     charger_id=ref.charger_id, limit_a=limit_a, starts_at=now,
                                                     source="dashboard", reason="bulk action",
                                                     created_by=who.user_id)
                except ControlConfigError as exc:
                    out.append(BulkResult(ref.charger_id, False, "failed", str(exc)))
                    continue
                out.append(BulkResult(ref.charger_id, True, "done", f"limited to {limit_a:g} A until cleared"))
        return out

    # helpers -------------------------------------------------------------------------------------

    def _decide(self, who: Principal, permission: Permission, charger_id: str) -> tuple[str | None, ChargerRef | None]:
        """(refusal reason, None) or (None, the charger)."""
        try:
            ref = self._access.require(who, permission, charger_id)
        except AccessDenied as exc:
            return str(exc), None
        return None, ref

    def _require_ref(self, who: Principal, permission: Permission, charger_id: str) -> ChargerRef:
        ref = self._access.require(who, permission, charger_id)
        return ref if ref is not None else ChargerRef(charger_id)  # never None: a charger id was given

    def _start_params(self, who: Principal) -> dict[str, JsonScalar]:
        with self._access.connection() as conn:
            tag = fleet_store.id_tag_of(conn, who.user_id)
        return {"id_tag": tag} if tag else {}


def may(who: Principal, permission: Permission, row: FleetRow) -> bool:
    """May ``who`` do this on a charger already loaded (no query: for enabling buttons on many cards).

    Only a courtesy for drawing; the action itself is checked again by the service.
    """
    return decide(who.grants, permission, ChargerRef(row.charger_id, row.site_id, row.org_id)).allowed
