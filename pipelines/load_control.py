"""Load management in the stream: per-site state, ``decide`` on every relevant event, setpoints
out as commands, compliance checked afterwards, every change audited.

Plain functions over plain state (no Bytewax here; ``pipelines.flow`` wires them):

* :func:`route` (keyed by charger) forwards a charger's events to its site, as placed by the
  site configurations (:class:`Placement`); what arrives before the placement is known is kept
  (the newest status and transaction event per connector) and forwarded when it is.
* :func:`control_step` (keyed by site) keeps a :class:`SiteControl`: the configuration, each
  connector's observed state, the building-load readings, what was last sent and the compliance
  checks in progress. A configuration change, a building-load reading, a status, transaction or
  connection event re-runs :func:`control.allocation.decide` at once (stateless per cycle: the
  whole snapshot every time); meter samples only update measurements and compliance; a timer
  (:func:`next_wakeup`) re-decides every few seconds for clocks that move by themselves (rules'
  time windows, operator limits ending, a building meter going stale, hysteresis).
* External limits the chargers report (``ChargingLimit``: a grid operator's or an EMS's cap, see
  :mod:`control.external_limits`) are kept per site until cleared or until their schedule ends
  (the timer wakes at each period's start and at the end), capped in every decision, and audited:
  each connector they concern gets an audit line when one arrives, is cleared or ends, even if
  its limit does not change (then without a command). A grid-critical one raises an alert,
  resolved when it goes.

For every connector whose limit changed the step emits a ``Setpoint`` (history), a ``Command``
(``set_limit``: the bridge sends SetChargingProfile), a ``ControlDecision`` (the audit log: old
-> new limit, the reason, the binding constraint, every input with its age, the command id) and
opens a compliance check, closed by the charger's measured current (``ComplianceCheck``:
compliant, late, violated) or by the command's result (rejected). A violation, a rejection and
the site falling back to its safe cap (stale building meter) raise alerts.

Ids are derived, not random: the same decision replayed produces the same command id, which the
bridge's command queue stores once.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from control import contract as c
from control import external_limits as ext
from control.alerts import AlertKind
from control.allocation import (
    Allocation,
    AllocationParams,
    ConnectorAllocation,
    ConnectorDemand,
    PauseCause,
    Reservation,
    SiteControlState,
    Snapshot,
    decide,
)
from control.planning import PlanAdvice, departure_advice, max_power_w, plan_charging
from control.presence import (
    DEFAULT_HEARTBEAT,
    OFFLINE_FACTOR,
    is_offline,
    offline_reason,
    offline_timeout,
    reserved_current_a,
)
from control.records import ComplianceCheck, ComplianceVerdict, ControlDecision
from control.rules import RuleContext, evaluate
from control.schedules import zone_of
from control.site import BuildingLoadReading, Charger, reading_from_event
from control.site_config import DeparturePlanning, SiteControlConfig
from control.tariffs import PriceInterval, Tariff, price_intervals

ConnectorKey = tuple[str, int]

# Connector states in which an EV is plugged in.
_CONNECTED = frozenset({c.ConnectorState.PREPARING, c.ConnectorState.CHARGING, c.ConnectorState.SUSPENDED_EV,
                        c.ConnectorState.SUSPENDED_EVSE, c.ConnectorState.OCCUPIED, c.ConnectorState.FINISHING})
# ... and in which it may want energy (Finishing: the session is over, the cable still in).
_WANTS = _CONNECTED - {c.ConnectorState.FINISHING}


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Tunables of the control step (the allocation's own are in ``AllocationParams``)."""

    params: AllocationParams = field(default_factory=AllocationParams)
    redecide_every: timedelta = timedelta(seconds=5)
    compliance_tolerance_a: float = 1.0  # measured may exceed the limit by max(this, 5 %)
    compliance_late_after: timedelta = timedelta(seconds=15)  # later than this: "late"
    compliance_give_up_after: timedelta = timedelta(seconds=60)  # never under: "violated"
    command_expiry: timedelta = timedelta(seconds=60)  # a setpoint older than this is obsolete
    confirm_wait: timedelta = timedelta(seconds=1.5)  # raises wait at most this long for the decreases' results
    default_heartbeat: timedelta = DEFAULT_HEARTBEAT  # a charger's heartbeat interval when its boot did not say
    offline_factor: float = OFFLINE_FACTOR  # silent for this many heartbeat intervals: offline


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Placement:
    """Charger ``charger_id`` belongs to ``site_id`` (None: to no site any more)."""

    charger_id: str
    site_id: str | None


@dataclass(frozen=True, slots=True)
class SiteConfigUpdate:
    """A site's configuration, new or changed; None: the site is gone or disabled."""

    site_id: str
    config: SiteControlConfig | None


RoutedEvent = (c.MeterSample | c.StatusChanged | c.TransactionEvent | c.ConnectionEvent | c.CommandResult
               | c.ChargingLimit)
ROUTED_EVENTS = (c.MeterSample, c.StatusChanged, c.TransactionEvent, c.ConnectionEvent, c.CommandResult,
                 c.ChargingLimit)


@dataclass(frozen=True, slots=True)
class Routed:
    """A charger's event on its way to its site's control step."""

    site_id: str
    event: RoutedEvent


@dataclass
class RouteState:
    site_id: str | None = None
    held: dict[tuple[int | str, ...], RoutedEvent] = field(default_factory=dict)  # while unplaced


def route(state: RouteState | None, item: Placement | RoutedEvent) -> tuple[RouteState, list[Routed]]:
    """(new state, events to forward to the charger's site)."""
    st = state or RouteState()
    if isinstance(item, Placement):
        st.site_id = item.site_id
        if st.site_id is None:
            return st, []
        out = [Routed(st.site_id, event) for _, event in sorted(st.held.items(), key=lambda kv: kv[1].ts)]
        st.held.clear()
        return st, out
    if st.site_id is not None:
        return st, [Routed(st.site_id, item)]
    if isinstance(item, c.StatusChanged | c.TransactionEvent):  # kept: they say who is plugged in
        kind = 0 if isinstance(item, c.StatusChanged) else 1
        st.held[(kind, item.connector_id)] = item
    elif isinstance(item, c.ConnectionEvent):
        st.held[(2, 0)] = item
    elif isinstance(item, c.ChargingLimit):  # kept: a grid operator's cap must not get lost
        st.held[(3, item.connector_id, item.source.value)] = item
    return st, []


# --------------------------------------------------------------------------- per-site state


@dataclass
class ConnState:
    status: c.ConnectorState | None = None
    transaction_id: str | None = None
    arrived_at: datetime | None = None
    measured_current_a: float | None = None
    phases_in_use: int | None = None
    id_tag: str | None = None
    soc_pct: float | None = None
    first_register_wh: float | None = None  # the energy register since this EV arrived
    last_register_wh: float | None = None

    def arrive(self, at: datetime) -> None:
        self.arrived_at, self.soc_pct, self.first_register_wh, self.last_register_wh = at, None, None, None

    @property
    def delivered_wh(self) -> float:
        if self.first_register_wh is None or self.last_register_wh is None:
            return 0.0
        return max(0.0, self.last_register_wh - self.first_register_wh)


@dataclass
class Sent:
    limit_a: float
    paused: bool
    pause_cause: PauseCause | None
    at: datetime  # when this limit took effect (the decision that changed it)
    decision_id: str
    command_id: str


@dataclass
class Check:
    decision_id: str
    command_id: str
    limit_a: float
    sent_at: datetime
    last_measured_a: float | None = None


@dataclass
class SiteControl:
    site_id: str
    config: SiteControlConfig | None = None
    connectors: dict[ConnectorKey, ConnState] = field(default_factory=dict)
    online: dict[str, bool] = field(default_factory=dict)
    loads: dict[str, BuildingLoadReading] = field(default_factory=dict)  # by circuit id ("" = main)
    sent: dict[ConnectorKey, Sent] = field(default_factory=dict)
    checks: dict[ConnectorKey, Check] = field(default_factory=dict)
    fallback_episode: int = 0
    in_fallback: bool = False
    seq: int = 0
    last_decided_at: datetime | None = None
    unconfirmed: dict[str, datetime] = field(default_factory=dict)  # lowering commands without a result: sent at
    heard: dict[str, datetime] = field(default_factory=dict)  # by charger: when it last said anything
    heartbeat_s: dict[str, int] = field(default_factory=dict)  # by charger: the interval it booted with
    offline: dict[ConnectorKey, float] = field(default_factory=dict)  # offline connectors: the current reserved
    clock_edge: datetime | None = None  # the next instant a decision changes by the clock (offline, plan slot)
    external: dict[ext.LimitKey, ext.ExternalLimit] = field(default_factory=dict)  # external limits in force
    external_changes: list[ext.LimitChange] = field(default_factory=list)  # not yet audited
    external_pending: dict[ConnectorKey, list[str]] = field(default_factory=dict)  # audited with their next line
    external_alerts: dict[ext.LimitKey, str] = field(default_factory=dict)  # grid-critical limits: the open alert

    def __setstate__(self, state: dict[str, object]) -> None:
        # A recovery snapshot taken before a field existed resumes with that field's default.
        defaults = SiteControl(str(state.get("site_id", ""))).__dict__
        self.__dict__.update({**defaults, **state})

    def snapshot(self) -> SiteControl:
        """An independent copy for Bytewax's recovery snapshot, taken every epoch: the containers
        and the small mutable records are copied, the configuration (immutable, and the largest
        part) is shared. Measured: ``copy.deepcopy`` of this state was the largest Python cost of
        an idle pipeline."""
        return replace(self, connectors={k: copy.copy(v) for k, v in self.connectors.items()},
                       online=dict(self.online), loads=dict(self.loads),
                       sent={k: copy.copy(v) for k, v in self.sent.items()},
                       checks={k: copy.copy(v) for k, v in self.checks.items()},
                       unconfirmed=dict(self.unconfirmed), heard=dict(self.heard),
                       heartbeat_s=dict(self.heartbeat_s), offline=dict(self.offline),
                       external=dict(self.external), external_changes=list(self.external_changes),
                       external_pending={k: list(v) for k, v in self.external_pending.items()},
                       external_alerts=dict(self.external_alerts))


Output = c.Setpoint | c.Command | c.Alert | ControlDecision | ComplianceCheck


ControlInput = SiteConfigUpdate | c.BuildingLoad | Routed


def control_step(state: SiteControl | None, item: ControlInput, now: datetime,
                 cfg: ControlConfig) -> tuple[SiteControl, list[Output]]:
    """One input of a site (every input names its site) -> (state, outputs)."""
    st = state or SiteControl(item.site_id)
    out: list[Output] = []
    redecide = False
    if isinstance(item, Routed):
        redecide = _on_charger_event(st, item.event, now, cfg, out)
    elif isinstance(item, SiteConfigUpdate):
        st.config = item.config
        if item.config is not None:
            known = {(ch.charger_id, cn.connector_id) for ch in item.config.site.chargers for cn in ch.connectors}
            for key in [k for k in st.connectors if k not in known]:
                del st.connectors[key]
                st.sent.pop(key, None)
                st.checks.pop(key, None)
        redecide = True
    elif isinstance(item, c.BuildingLoad):
        voltage = st.config.site.voltage_v if st.config else 230.0
        st.loads[item.circuit_id or ""] = reading_from_event(item, voltage_v=voltage)
        redecide = True
    if redecide:
        _decide(st, now, cfg, out)
    return st, out


def _on_charger_event(st: SiteControl, item: RoutedEvent, now: datetime, cfg: ControlConfig,
                      out: list[Output]) -> bool:
    """Apply one charger event; True when it calls for a new decision."""
    redecide = _heard(st, item, now)
    if isinstance(item, c.MeterSample):
        _on_sample(st, item, now, cfg, out)
    elif isinstance(item, c.StatusChanged):
        conn = st.connectors.setdefault((item.charger_id, item.connector_id), ConnState())
        if conn.status not in _CONNECTED and item.status in _CONNECTED:
            conn.arrive(item.ts)
        conn.status = item.status
        if item.status not in _CONNECTED:
            conn.arrived_at = None
        redecide = True
    elif isinstance(item, c.TransactionEvent):
        conn = st.connectors.setdefault((item.charger_id, item.connector_id), ConnState())
        if item.kind is c.TransactionKind.ENDED:
            conn.transaction_id = None
        else:
            if conn.transaction_id != item.transaction_id and conn.arrived_at is None:
                conn.arrive(item.ts)
            conn.transaction_id = item.transaction_id
            conn.id_tag = item.id_tag or conn.id_tag
        redecide = True
    elif isinstance(item, c.ConnectionEvent):
        if item.kind in (c.ConnectionKind.CONNECTED, c.ConnectionKind.DISCONNECTED, c.ConnectionKind.BOOTED):
            st.online[item.charger_id] = item.kind is not c.ConnectionKind.DISCONNECTED
            if item.kind is c.ConnectionKind.BOOTED and item.heartbeat_interval_s:
                st.heartbeat_s[item.charger_id] = item.heartbeat_interval_s
            if item.kind is c.ConnectionKind.BOOTED:
                # A rebooted charger may have lost our profiles: send its limits again.
                for key in [k for k in st.sent if k[0] == item.charger_id]:
                    del st.sent[key]
            redecide = True
    elif isinstance(item, c.ChargingLimit):
        st.external, changes = ext.apply_event(st.external, item)
        st.external_changes.extend(changes)
        _external_alerts(st, changes, now, out)
        redecide = True
    elif isinstance(item, c.CommandResult):
        _on_command_result(st, item, now, out)
        if item.command_id in st.unconfirmed:
            del st.unconfirmed[item.command_id]
            # The held-back raises can go now. After a failure the timer decides again instead,
            # so a charger that refuses is not asked again at the speed of its answers.
            redecide = not st.unconfirmed and item.outcome is c.CommandOutcome.ACCEPTED
    return redecide


def _heard(st: SiteControl, item: RoutedEvent, now: datetime) -> bool:
    """Note that the charger spoke; True when it was offline (it is re-allocated at once)."""
    if isinstance(item, c.ConnectionEvent) and item.kind is c.ConnectionKind.DISCONNECTED:
        return False  # the bridge speaking, not the charger
    if isinstance(item, c.CommandResult) and item.outcome not in (c.CommandOutcome.ACCEPTED,
                                                                   c.CommandOutcome.REJECTED):
        return False  # a timeout or a bridge-side failure is no sign of life
    if isinstance(item, c.ConnectionEvent | c.CommandResult | c.ChargingLimit):
        seen = item.ts  # the bridge's clock
    else:
        seen = item.received_at or now  # the bridge's clock when it has one, never the charger's
    seen = min(seen, now)
    previous = st.heard.get(item.charger_id)
    if previous is None or seen > previous:
        st.heard[item.charger_id] = seen
    return any(key[0] == item.charger_id for key in st.offline)


def on_timer(state: SiteControl, now: datetime, cfg: ControlConfig) -> tuple[SiteControl, list[Output]]:
    out: list[Output] = []
    _expire_checks(state, now, cfg, out)
    _decide(state, now, cfg, out)
    return state, out


def next_wakeup(state: SiteControl, cfg: ControlConfig) -> datetime | None:
    if state.config is None or state.last_decided_at is None:
        return None
    wakeup = state.last_decided_at + cfg.redecide_every
    if state.clock_edge is not None:  # a charger going silent, a planned slot starting or ending
        wakeup = min(wakeup, max(state.clock_edge, state.last_decided_at))
    if state.unconfirmed:  # raises held back: decide again when the wait for confirmations ends
        wakeup = min(wakeup, min(state.unconfirmed.values()) + cfg.confirm_wait)
    return wakeup


# --------------------------------------------------------------------------- deciding


def snapshot_of(st: SiteControl, now: datetime, cfg: ControlConfig) -> Snapshot | None:
    """The allocation's input for this instant. Side effects on ``st`` (for the caller): which
    connectors are offline with their reservation (:attr:`SiteControl.offline` is *not* updated
    here, see :func:`_decide`), and :attr:`SiteControl.clock_edge`."""
    assessed = _assess(st, now, cfg)
    return None if assessed is None else assessed[0]


def _assess(st: SiteControl, now: datetime,
            cfg: ControlConfig) -> tuple[Snapshot, dict[ConnectorKey, Reservation]] | None:
    """(the snapshot, the offline connectors' reservations); sets ``st.clock_edge``."""
    config = st.config
    if config is None:
        return None
    demands = []
    reserved: dict[ConnectorKey, Reservation] = {}
    edges: list[datetime] = []
    settings = config.settings
    for charger in config.site.chargers:
        timeout = offline_timeout(settings.offline_timeout_s, st.heartbeat_s.get(charger.charger_id),
                                  cfg.default_heartbeat, cfg.offline_factor)
        heard = st.heard.get(charger.charger_id)
        offline = is_offline(heard, timeout, now)
        for connector in charger.connectors:
            key = (charger.charger_id, connector.connector_id)
            conn = st.connectors.get(key)
            if conn is None or not _plugged_in(conn):
                continue
            sent = st.sent.get(key)
            if offline:
                amps = reserved_current_a(sent.limit_a if sent else None, charger.max_current_a,
                                          settings.offline_fallback_a)
                reserved[key] = Reservation(key[0], key[1], amps, conn.phases_in_use,
                                            f"{key[0]} offline, silent for more than {timeout.total_seconds():g} s")
                continue
            if heard is not None:
                edges.append(heard + timeout)
            mode = config.mode_of(*key)
            outcome = evaluate(config.rules, RuleContext(
                site_id=config.site_id, charger_id=key[0], connector_id=key[1], mode=mode,
                phases=conn.phases_in_use or len(charger.phases), voltage_v=config.site.voltage_v,
                id_tag=conn.id_tag), now)
            mode = outcome.mode_override or mode
            rule_cap = outcome.cap_a
            rule_reason = outcome.reason if outcome.cap_a is not None else None
            pause_reason = outcome.reason if outcome.pause else None
            advice = _plan_advice(config, key, conn, charger, mode, now, cfg)
            if advice is None:
                at_risk = _deadline_at_risk(config, key, conn, sent, charger, now)
            else:
                at_risk = advice.at_risk
                if advice.next_change is not None:
                    edges.append(advice.next_change)
                if not at_risk and pause_reason is None:
                    if not advice.charge_now:
                        pause_reason = advice.reason  # hold until the next planned slot
                    elif advice.cap_a is not None and (rule_cap is None or advice.cap_a < rule_cap):
                        rule_cap, rule_reason = advice.cap_a, advice.reason
            demands.append(ConnectorDemand(
                charger_id=key[0], connector_id=key[1], arrived_at=conn.arrived_at or now, mode=mode,
                ev_connected=True, wants_energy=conn.status in _WANTS or conn.transaction_id is not None,
                phases_in_use=conn.phases_in_use, measured_current_a=conn.measured_current_a,
                last_limit_a=sent.limit_a if sent else None, last_limit_at=sent.at if sent else None,
                last_pause_cause=sent.pause_cause if sent else None,
                rule_cap_a=rule_cap, rule_reason=rule_reason, rule_pause_reason=pause_reason,
                deadline_at_risk=at_risk))
    external_edge = ext.next_change(st.external, now)
    if external_edge is not None:
        edges.append(external_edge)
    st.clock_edge = min((e for e in edges if e > now), default=None)
    phases = {key: conn.phases_in_use for key, conn in st.connectors.items() if conn.phases_in_use}
    snapshot = Snapshot(site=config.site, demands=tuple(demands), building_loads=tuple(st.loads.values()),
                        params=cfg.params, reservations=tuple(reserved.values()),
                        external_caps=ext.caps(st.external, now, config.site, phases))
    return snapshot, reserved


def _plan_advice(config: SiteControlConfig, key: ConnectorKey, conn: ConnState, charger: Charger,
                 mode: c.ChargingMode, now: datetime, cfg: ControlConfig) -> PlanAdvice | None:
    """The departure's cheapest-window plan, for a connector whose departure, mode and tariff call
    for one (``[control] departure_planning``: Eco only by default; never in Boost)."""
    planning = config.settings.departure_planning
    if planning is DeparturePlanning.OFF or mode is c.ChargingMode.BOOST:
        return None
    if planning is DeparturePlanning.ECO and mode is not c.ChargingMode.ECO:
        return None
    departure = config.departures.get(key) or config.departures.get((key[0], 0))
    tariff = config.tariffs.get(key[0])
    if departure is None or tariff is None or departure.departure_at <= now:
        return None
    needed = departure.needed_wh(conn.soc_pct, conn.delivered_wh)
    if not needed:
        return None
    params = cfg.params
    connector = charger.connector(key[1])
    hardware = min(charger.max_current_a, connector.cable_max_a if connector and connector.cable_max_a else
                   charger.max_current_a)
    cap = params.mode_policy.mode_cap_a(mode, hardware, params.min_current_a) or hardware
    return departure_advice(
        now, departure.departure_at, needed, max_current_a=min(cap, hardware), min_current_a=params.min_current_a,
        phases=conn.phases_in_use or len(charger.phases), voltage_v=config.site.voltage_v,
        prices=_prices(tariff, now, departure.departure_at), zone=zone_of(config.timezone))


@lru_cache(maxsize=256)
def _prices_from(tariff: Tariff, hour: datetime, until: datetime) -> tuple[PriceInterval, ...]:
    return price_intervals(tariff, hour, until)


def _prices(tariff: Tariff, now: datetime, until: datetime) -> tuple[PriceInterval, ...]:
    """The tariff's prices up to the departure, computed once an hour per tariff and departure (a
    building-load reading decides again; its latency must not pay for the tariff's calendar)."""
    return _prices_from(tariff, now.replace(minute=0, second=0, microsecond=0), until)


def _deadline_at_risk(config: SiteControlConfig, key: ConnectorKey, conn: ConnState, sent: Sent | None,
                      charger: Charger, now: datetime) -> bool:
    """A departure is at risk when the connector's current limit (its hardware maximum before it
    has one; nothing while it is paused) would not deliver the energy still needed before the
    vehicle leaves. Then the allocation puts it in the "deadline" priority class, above Standard."""
    departure = config.departures.get(key) or config.departures.get((key[0], 0))
    if departure is None or departure.departure_at <= now:
        return False
    needed = departure.needed_wh(conn.soc_pct, conn.delivered_wh)
    if not needed:
        return False
    amps = charger.max_current_a if sent is None else sent.limit_a  # paused: 0 A, so at risk
    power = max_power_w(amps, conn.phases_in_use or len(charger.phases), config.site.voltage_v)
    if power <= 0:
        return True
    return plan_charging(now, departure.departure_at, needed, power).deadline_at_risk


def _plugged_in(conn: ConnState) -> bool:
    return conn.status in _CONNECTED or (conn.status is None and conn.transaction_id is not None)


def _decide(st: SiteControl, now: datetime, cfg: ControlConfig, out: list[Output]) -> Allocation | None:
    st.external, ended = ext.expire(st.external, now)
    if ended:
        st.external_changes.extend(ended)
        _external_alerts(st, ended, now, out)
    assessed = _assess(st, now, cfg)
    if assessed is None:
        return None
    snapshot, offline = assessed
    allocation = decide(snapshot, now)
    st.last_decided_at = now
    _fallback_alerts(st, allocation, now, out)
    _offline_audit(st, offline, allocation, now, out)
    # Connectors no longer in the snapshot (unplugged) forget their limit: the next EV starts afresh.
    # An offline one keeps it: the charger still has it, and it is what it comes back with.
    present = {(d.charger_id, d.connector_id) for d in snapshot.demands} | offline.keys()
    for key in [k for k in st.sent if k not in present]:
        st.unconfirmed.pop(st.sent.pop(key).command_id, None)
        st.checks.pop(key, None)
    changes = allocation.changes
    # Decreases before increases: while a lowered limit is not yet confirmed by its charger, the
    # raises of the same decision wait (for the command results, or the next timer at the latest),
    # so the limits installed in chargers sum to at most the new allocation at every moment, in
    # whatever order the chargers answer.
    lowering = tuple(ch for ch in changes if _lowers(st, ch))
    for command_id, sent_at in list(st.unconfirmed.items()):
        if now - sent_at >= cfg.confirm_wait:  # no answer in time: the raises do not wait any longer
            del st.unconfirmed[command_id]
    if lowering or any(sent.command_id in st.unconfirmed for sent in st.sent.values()):
        changes = lowering
    events = _external_events(st, allocation, now)
    _external_audit(st, allocation, events, {(ch.charger_id, ch.connector_id) for ch in changes}, now, out)
    if not changes:
        return allocation
    st.seq += 1
    decision_id = _decision_id(st.site_id, now, st.seq)
    inputs = _audit_inputs(allocation)
    for change in changes:
        key = (change.charger_id, change.connector_id)
        command_id = _derived_id("sp", decision_id, *map(str, key))
        previous = st.sent.get(key)
        out.append(change.to_setpoint(site_id=st.site_id, decision_id=decision_id, ts=now))
        out.append(c.Command(
            command_id=command_id, charger_id=change.charger_id, kind=c.CommandKind.SET_LIMIT, issued_at=now,
            expires_at=now + cfg.command_expiry, connector_id=change.connector_id,
            params={"limit": change.limit_a, "unit": c.RateUnit.AMPS.value}, requested_by=f"control:{st.site_id}"))
        out.append(ControlDecision(
            ts=now, decision_id=decision_id, site_id=st.site_id, charger_id=change.charger_id,
            connector_id=change.connector_id, new_limit_a=change.limit_a, reason=change.reason,
            site_state=allocation.state.value, old_limit_a=previous.limit_a if previous else None,
            paused=change.paused, binding=_binding(change), command_id=command_id,
            inputs={**inputs, **_event_input(key, events[key])} if key in events else inputs))
        st.sent[key] = Sent(change.limit_a, change.paused, change.pause_cause, now, decision_id, command_id)
        st.checks[key] = Check(decision_id, command_id, change.limit_a, now)
        if changes is lowering:
            st.unconfirmed[command_id] = now
    return allocation


def _audit_inputs(allocation: Allocation) -> dict[str, dict[str, c.JsonScalar]]:
    """The allocation's inputs as an audit line lists them: what, its value, its age in s."""
    return {f"{i.kind}:{i.subject}"[:120]: {"value": i.detail, "age_s": None if i.age_s is None
                                            else round(i.age_s, 3)} for i in allocation.inputs}


def _offline_audit(st: SiteControl, offline: dict[ConnectorKey, Reservation], allocation: Allocation,
                   now: datetime, out: list[Output]) -> None:
    """One audit line per connector going offline (its share released to the others; nothing is
    sent to it). Coming back needs no line of its own: the first message re-allocates it, and a
    change of its limit is audited like any other (a lower one is sent first, as usual)."""
    gone = {key: r for key, r in offline.items() if key not in st.offline}
    st.offline = {key: r.current_a for key, r in offline.items()}
    if not gone:
        return
    st.seq += 1
    decision_id = _decision_id(st.site_id, now, st.seq)
    inputs = _audit_inputs(allocation)
    for key, reservation in sorted(gone.items()):
        heard = st.heard.get(key[0])
        inputs_here = {**inputs, f"last_heard:{key[0]}": {
            "value": heard.isoformat() if heard else None,
            "age_s": None if heard is None else round((now - heard).total_seconds(), 3)}}
        previous = st.sent.get(key)
        st.checks.pop(key, None)  # a silent charger cannot be judged
        out.append(ControlDecision(
            ts=now, decision_id=decision_id, site_id=st.site_id, charger_id=key[0], connector_id=key[1],
            new_limit_a=reservation.current_a, reason=offline_reason(reservation.current_a),
            site_state=allocation.state.value, old_limit_a=previous.limit_a if previous else None,
            paused=False, binding="offline", inputs=inputs_here, command_id=None))


def _external_events(st: SiteControl, allocation: Allocation, now: datetime) -> dict[ConnectorKey, list[str]]:
    """What external limits did that is not audited yet, per connector of the allocation concerned
    ("set SO: 8 A, grid critical"). Takes the pending changes (unplugged connectors drop theirs)."""
    changes, st.external_changes = st.external_changes, []
    pending, st.external_pending = st.external_pending, {}
    present = {(ca.charger_id, ca.connector_id) for ca in allocation.connectors}
    happened = {key: what for key, what in pending.items() if key in present}
    for change in changes:
        what = f"{change.kind.value} {change.limit.describe(now)}"
        for key in sorted(present):
            if key[0] == change.limit.charger_id and change.limit.connector_id in (0, key[1]):
                happened.setdefault(key, []).append(what)
    return happened


def _event_input(key: ConnectorKey, what: list[str]) -> dict[str, dict[str, c.JsonScalar]]:
    return {f"external_limit_event:{key[0]}/{key[1]}": {"value": "; ".join(what)[:2000], "age_s": 0.0}}


def _external_audit(st: SiteControl, allocation: Allocation, events: dict[ConnectorKey, list[str]],
                    sending: set[ConnectorKey], now: datetime, out: list[Output]) -> None:
    """An audit line for each connector an external limit's arrival, withdrawal or end concerns
    whose limit stays as it is (no command goes out): the limit, the allocation's reason, and what
    happened among the inputs. Connectors whose new limit is sent now have it on their ordinary
    line; one whose raise waits for the lowered chargers, on the line of that raise."""
    keys = []
    for key in sorted(events):
        if key in sending:
            continue
        if allocation.connector(*key).changed or key not in st.sent:
            st.external_pending[key] = events[key]
        else:
            keys.append(key)
    if not keys:
        return
    st.seq += 1
    decision_id = _decision_id(st.site_id, now, st.seq)
    inputs = _audit_inputs(allocation)
    for key in keys:
        sent, result = st.sent[key], allocation.connector(*key)
        out.append(ControlDecision(
            ts=now, decision_id=decision_id, site_id=st.site_id, charger_id=key[0], connector_id=key[1],
            new_limit_a=sent.limit_a, reason=result.reason, site_state=allocation.state.value,
            old_limit_a=sent.limit_a, paused=sent.paused, binding=_binding(result),
            inputs={**inputs, **_event_input(key, events[key])}, command_id=None))


def _external_alerts(st: SiteControl, changes: list[ext.LimitChange], now: datetime, out: list[Output]) -> None:
    """A grid-critical limit opens an alert (one per limit, kept open while it is replaced by
    another grid-critical one); it is resolved when the limit is cleared, ends or is replaced by
    one that is not grid critical."""
    for change in changes:
        limit, key = change.limit, change.limit.key
        name = ext.SOURCE_NAMES[limit.source]
        open_id = st.external_alerts.get(key)
        if change.kind is ext.ChangeKind.SET and limit.grid_critical:
            if open_id is None:
                alert_id = _derived_id("gridlimit", *map(str, key), limit.received_at.isoformat())
                st.external_alerts[key] = alert_id
                out.append(c.Alert(
                    alert_id=alert_id, kind=AlertKind.GRID_CRITICAL_LIMIT, severity=c.Severity.WARNING, ts=now,
                    message=f"{limit.where}: grid-critical limit from the {name} ({limit.describe(now)})",
                    charger_id=limit.charger_id, site_id=st.site_id))
        elif open_id is not None:
            del st.external_alerts[key]
            why = {ext.ChangeKind.SET: "is no longer grid critical", ext.ChangeKind.CLEARED: "was cleared",
                   ext.ChangeKind.ENDED: "ended"}[change.kind]
            out.append(c.Alert(
                alert_id=open_id, kind=AlertKind.GRID_CRITICAL_LIMIT, severity=c.Severity.WARNING, ts=now,
                message=f"{limit.where}: the {name}'s grid-critical limit {why}", state=c.AlertState.RESOLVED,
                charger_id=limit.charger_id, site_id=st.site_id))


def _lowers(st: SiteControl, change: ConnectorAllocation) -> bool:
    """A change that reduces what the charger may draw (a first limit counts: it may be running at
    its hardware maximum)."""
    sent = st.sent.get((change.charger_id, change.connector_id))
    return sent is None or change.limit_a < sent.limit_a


def _binding(change: ConnectorAllocation) -> str:
    kind = change.binding_constraint.value
    return f"{kind}:{change.binding_id}" if change.binding_id else kind


def _fallback_alerts(st: SiteControl, allocation: Allocation, now: datetime, out: list[Output]) -> None:
    falling_back = allocation.state is SiteControlState.SAFE_FALLBACK
    if falling_back and not st.in_fallback:
        st.fallback_episode += 1
    if falling_back != st.in_fallback:
        st.in_fallback = falling_back
        out.append(c.Alert(
            alert_id=_derived_id("stale", st.site_id, str(st.fallback_episode)), kind="stale_building_load",
            severity=c.Severity.WARNING, ts=now,
            message=(allocation.banner or "Building meter stale: site at its safe cap") if falling_back
            else "Building meter readings are current again; normal load management resumed",
            state=c.AlertState.OPEN if falling_back else c.AlertState.RESOLVED, site_id=st.site_id))


# --------------------------------------------------------------------------- measurements and compliance


def _measured_current_a(sample: c.MeterSample) -> tuple[float | None, int | None]:
    """(the highest phase current, the phases drawing) of a sample; (total, None) without phases."""
    phases = [v for v in (sample.current_l1_a, sample.current_l2_a, sample.current_l3_a) if v is not None]
    if phases:
        drawing = sum(1 for v in phases if v > 1.0)
        return max(phases), drawing or None
    return sample.current_a, None


def _on_sample(st: SiteControl, sample: c.MeterSample, now: datetime, cfg: ControlConfig, out: list[Output]) -> None:
    key = (sample.charger_id, sample.connector_id)
    measured, phases = _measured_current_a(sample)
    conn = st.connectors.setdefault(key, ConnState())
    if sample.soc_pct is not None:
        conn.soc_pct = sample.soc_pct
    if sample.energy_wh is not None and conn.arrived_at is not None:
        if conn.first_register_wh is None or sample.energy_wh < conn.first_register_wh:
            conn.first_register_wh = sample.energy_wh  # (a register reset starts the count again)
        conn.last_register_wh = sample.energy_wh
    if measured is None:
        return
    conn.measured_current_a = measured
    if phases is not None and conn.phases_in_use != phases and measured > 1.0:
        conn.phases_in_use = phases
    check = st.checks.get(key)
    if check is None:
        return
    seen_at = sample.received_at or sample.ts
    if seen_at < check.sent_at:
        return  # a reading from before the setpoint says nothing about it
    check.last_measured_a = measured
    tolerance = max(cfg.compliance_tolerance_a, check.limit_a * 0.05)
    if measured <= check.limit_a + tolerance:
        reaction = seen_at - check.sent_at
        verdict = ComplianceVerdict.COMPLIANT if reaction <= cfg.compliance_late_after else ComplianceVerdict.LATE
        out.append(_verdict(st, key, check, verdict, now, measured, reaction.total_seconds()))
        del st.checks[key]
    elif seen_at - check.sent_at > cfg.compliance_give_up_after:
        _violated(st, key, check, now, out)


def _expire_checks(st: SiteControl, now: datetime, cfg: ControlConfig, out: list[Output]) -> None:
    for key, check in list(st.checks.items()):
        if now - check.sent_at > cfg.compliance_give_up_after:
            if check.last_measured_a is None:
                del st.checks[key]  # no reading came at all (EV not drawing, charger silent): nothing to judge
            else:
                _violated(st, key, check, now, out)


def _violated(st: SiteControl, key: ConnectorKey, check: Check, now: datetime, out: list[Output]) -> None:
    out.append(_verdict(st, key, check, ComplianceVerdict.VIOLATED, now, check.last_measured_a, None))
    out.append(c.Alert(
        alert_id=_derived_id("violated", check.decision_id, *map(str, key)), kind="setpoint_violated",
        severity=c.Severity.ERROR, ts=now, charger_id=key[0], site_id=st.site_id,
        message=f"{key[0]}/{key[1]} still draws {check.last_measured_a:.1f} A, over its {check.limit_a:.1f} A "
                f"limit, {(now - check.sent_at).total_seconds():.0f} s after it was sent"))
    del st.checks[key]


def _on_command_result(st: SiteControl, result: c.CommandResult, now: datetime, out: list[Output]) -> None:
    for key, check in list(st.checks.items()):
        if check.command_id != result.command_id:
            continue
        if result.outcome in (c.CommandOutcome.REJECTED, c.CommandOutcome.FAILED):
            out.append(_verdict(st, key, check, ComplianceVerdict.REJECTED, now, check.last_measured_a, None))
            out.append(c.Alert(
                alert_id=_derived_id("rejected", check.decision_id, *map(str, key)), kind="setpoint_rejected",
                severity=c.Severity.ERROR, ts=now, charger_id=key[0], site_id=st.site_id,
                message=f"{key[0]}/{key[1]} refused a {check.limit_a:.1f} A limit "
                        f"({result.status or result.outcome.value}{': ' + result.detail if result.detail else ''})"))
        if result.outcome is not c.CommandOutcome.ACCEPTED:
            # Not installed: forget it, so the next decision sends the limit again.
            del st.checks[key]
            sent = st.sent.get(key)
            if sent is not None and sent.command_id == result.command_id:
                del st.sent[key]


def _verdict(st: SiteControl, key: ConnectorKey, check: Check, verdict: ComplianceVerdict, now: datetime,
             measured: float | None, reaction_s: float | None) -> ComplianceCheck:
    return ComplianceCheck(ts=now, decision_id=check.decision_id, site_id=st.site_id, charger_id=key[0],
                           connector_id=key[1], limit_a=check.limit_a, verdict=verdict, measured_a=measured,
                           reaction_s=reaction_s, command_id=check.command_id)


# --------------------------------------------------------------------------- ids


def _decision_id(site_id: str, now: datetime, seq: int) -> str:
    return f"{_derived_id('d', site_id)[:10]}-{now:%Y%m%dT%H%M%S%f}-{seq}"


def _derived_id(prefix: str, *parts: str) -> str:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"

