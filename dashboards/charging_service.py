"""The charging pages' service: live connectors, commands, modes (owner pages of issue 7).

Every public function takes the :class:`~dashboards.access.Principal` first and the
:class:`~dashboards.access.Access` second, and checks before it reads or acts; a refusal raises
:class:`~dashboards.access.AccessDenied` (logged). Actions are logged with their outcome. No
Streamlit here: tests call these functions directly. The pure helpers (ETA per mode, constraint
banners) take everything they need as arguments.

The schedules/rules, load and device parts live beside it: :mod:`dashboards.charging_rules_service`,
:mod:`dashboards.charging_load_service` and :mod:`dashboards.charging_device_service`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from control.access import ChargerRef, Permission, decide
from control.contract import ChargingMode, JsonScalar
from control.modes import EtaEstimate, ModeChangeResult, ModePolicy, estimate_eta
from control.records import LiveStatus
from dashboards.access import Access, Principal
from warehouse import charging_store, control_store
from warehouse.charging_store import ConnectorRow, LimitInForce
from warehouse.command_api import DEFAULT_TIMEOUT_S, Action, CommandReply, Target

MIN_CURRENT_A: Final = 6.0
DEFAULT_POLICY: Final = ModePolicy()
DEFAULT_TARGET_SOC_PCT: Final = 100.0
OFFLINE_BANNER: Final = "Charger offline: no contact since {ago}. Commands wait until it reconnects."
SAFE_FALLBACK_BANNER: Final = "External controller offline: safe local fallback"

# Which permission an action needs.
ACTION_PERMISSION: Final[Mapping[Action, Permission]] = {
    Action.START: Permission.START_STOP,
    Action.STOP: Permission.START_STOP,
    Action.PAUSE: Permission.PAUSE_RESUME,
    Action.RESUME: Permission.PAUSE_RESUME,
    Action.LOCK: Permission.LOCK,
    Action.UNLOCK: Permission.LOCK,
    Action.RELEASE_CABLE: Permission.LOCK,
}
_HARDWARE_BINDINGS: Final = ("hardware", "cable")
_SITE_BINDINGS: Final = ("operator_site", "main_breaker", "circuit", "operator", "charger_supply", "safe_fallback")


class CommandSender(Protocol):
    """What :class:`warehouse.command_api.CommandService` offers (a fake in tests)."""

    def send(self, action: Action, target: Target, *, requested_by: str | None,
             params: Mapping[str, JsonScalar] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandReply: ...


@dataclass(frozen=True, slots=True)
class Allowed:
    """What the user may do on this charger (to enable or disable buttons; the action re-checks)."""

    start_stop: bool
    pause_resume: bool
    lock: bool
    set_mode: bool
    boost: bool


@dataclass(frozen=True, slots=True)
class ConnectorCard:
    row: ConnectorRow
    status: LiveStatus             # Offline when the charger is not online, whatever the last status said
    allowed: Allowed
    banners: tuple[str, ...]       # constraint banners: "Hardware cap is 16 A", "Limited by site", ...
    limits: tuple[LimitInForce, ...]

    @property
    def key(self) -> str:
        return f"{self.row.charger_id}-{self.row.connector_id}"

    @property
    def offline(self) -> bool:
        return self.status is LiveStatus.OFFLINE

    @property
    def in_session(self) -> bool:
        return self.row.live.session_id is not None

    def supports(self, action: Action) -> bool:
        """Whether the action makes sense in the connector's state (the page greys out the rest)."""
        status = self.status
        if action is Action.START:
            return not self.in_session and status in (LiveStatus.WAITING_FOR_VEHICLE, LiveStatus.IDLE)
        if action is Action.STOP:
            return self.in_session and status is not LiveStatus.OFFLINE
        if action is Action.PAUSE:
            return status is LiveStatus.CHARGING
        if action is Action.RESUME:
            return status is LiveStatus.PAUSED
        return status is not LiveStatus.OFFLINE


# --------------------------------------------------------------------------- pure helpers


def effective_status(row: ConnectorRow) -> LiveStatus:
    return row.live.status if row.live.online else LiveStatus.OFFLINE


def constraint_banners(row: ConnectorRow, limits: Sequence[LimitInForce]) -> tuple[str, ...]:
    """Why the connector gets less than its mode asks, from the last decision and the limits in force."""
    out: list[str] = []
    decision = row.decision
    binding = (decision.binding or "").split(":", 1)[0] if decision else ""
    if decision is not None and decision.site_state == "safe_fallback":
        out.append(SAFE_FALLBACK_BANNER)
    if binding in _HARDWARE_BINDINGS:
        cap = row.hardware_max_a if row.hardware_max_a is not None else decision.new_limit_a if decision else None
        out.append(f"Hardware cap is {cap:g} A" if cap is not None else decision.reason if decision else "")
    mine = [lim for lim in limits if lim.site_id == row.site_id and lim.charger_id in (None, row.charger_id)]
    if binding in _SITE_BINDINGS or mine:
        detail = [decision.reason] if decision is not None and binding in _SITE_BINDINGS else []
        detail = [d for d in detail if d and d.lower() != "limited by site"]
        detail += [f"{'site' if lim.charger_id is None else 'charger'} limit {lim.limit_a:g} A"
                   f"{f' ({lim.reason})' if lim.reason else ''}" for lim in mine]
        out.append("Limited by site" + (f": {'; '.join(dict.fromkeys(detail))}" if detail else ""))
    return tuple(b for b in out if b)


def mode_current_a(row: ConnectorRow, mode: ChargingMode, policy: ModePolicy = DEFAULT_POLICY) -> float:
    """The current a mode would likely get now: Boost the hardware maximum, Standard the current
    limit (or what it draws), Eco that capped at Eco's share of the hardware. An estimate."""
    hardware = row.hardware_max_a
    limit = row.decision.new_limit_a if row.decision is not None and not row.decision.paused else None
    drawn = row.live.current_a or 0.0
    standard = max(limit if limit is not None else (hardware or 0.0), drawn)
    if hardware is not None:
        standard = min(standard, hardware)
    if mode is ChargingMode.BOOST:
        return hardware if hardware is not None else standard
    if mode is ChargingMode.ECO:
        cap = policy.mode_cap_a(ChargingMode.ECO, hardware or standard, MIN_CURRENT_A)
        return min(standard, cap) if cap is not None else standard
    return standard


def mode_etas(row: ConnectorRow, *, now: datetime, battery_wh: float | None = None,
              target_soc_pct: float | None = None) -> dict[ChargingMode, EtaEstimate]:
    """The ETA each mode would give (battery from the departure, else the one passed in)."""
    battery = row.battery_wh or battery_wh
    target = row.target_soc_pct or target_soc_pct or DEFAULT_TARGET_SOC_PCT
    phases = min(max(row.phases, 1), 3)
    return {mode: estimate_eta(row.live.soc_pct, target, battery, mode_current_a(row, mode), phases, now=now)
            for mode in ChargingMode}


# --------------------------------------------------------------------------- reads


def _allowed(who: Principal, ref: ChargerRef) -> Allowed:
    def may(p: Permission) -> bool:
        return decide(who.grants, p, ref).allowed

    return Allowed(may(Permission.START_STOP), may(Permission.PAUSE_RESUME), may(Permission.LOCK),
                   may(Permission.SET_MODE), may(Permission.BOOST))


def live_cards(who: Principal, access: Access, charger_ids: Sequence[str], *, now: datetime) -> list[ConnectorCard]:
    """A card per connector of the requested chargers the user may see (others are left out)."""
    refs = {ref.charger_id: ref for ref in access.visible(who, charger_ids=list(charger_ids))}
    wanted = [cid for cid in charger_ids if cid in refs]
    with access.connection() as conn:
        rows = charging_store.connector_rows(conn, wanted)
        sites = sorted({r.site_id for r in rows if r.site_id})
        limits = charging_store.operator_limits_in_force(conn, sites, now)
    allowed = {cid: _allowed(who, refs[cid]) for cid in {r.charger_id for r in rows}}
    return [ConnectorCard(row, effective_status(row), allowed[row.charger_id], constraint_banners(row, limits),
                          tuple(lim for lim in limits if lim.site_id == row.site_id
                                and lim.charger_id in (None, row.charger_id)))
            for row in rows]


# --------------------------------------------------------------------------- actions


def send_action(who: Principal, access: Access, commands: CommandSender, charger_id: str, connector_id: int,
                action: Action, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandReply:
    """Check the permission, send the command, log the outcome; the reply says what happened."""
    permission = ACTION_PERMISSION.get(action)
    if permission is None:
        raise ValueError(f"{action.value} is not an action of the charging pages")
    access.require(who, permission, charger_id)
    params: dict[str, JsonScalar] = {}
    if action is Action.START:
        with access.connection() as conn:
            id_tag = charging_store.id_tag_of(conn, who.user_id)
        if id_tag is not None:
            params["id_tag"] = id_tag
    reply = commands.send(action, Target(charger_id, connector_id), requested_by=who.user_id, params=params or None,
                          timeout_s=timeout_s)
    access.log(who, action.value, charger_id, allowed=True, detail=f"connector {connector_id}: {reply.message}")
    return reply


def change_mode(who: Principal, access: Access, charger_id: str, connector_id: int, mode: str, *,
                confirmed: bool, now: datetime, session_id: str | None = None) -> ModeChangeResult:
    """Switch a connector's mode (Boost needs the BOOST permission and ``confirmed``); the
    dataflow applies an accepted mode at its next poll. Refused requests are stored too."""
    access.require(who, Permission.SET_MODE, charger_id)
    if str(mode).strip().lower() == ChargingMode.BOOST.value:
        access.require(who, Permission.BOOST, charger_id)
    with access.connection() as conn:
        result = control_store.set_mode(conn, charger_id, connector_id, mode, requested_by=who.user_id, now=now,
                                        confirmed=confirmed, session_id=session_id)
    access.log(who, "set_mode", charger_id, allowed=result.accepted, detail=f"connector {connector_id}: "
               f"{result.message[:200]}")
    return result
