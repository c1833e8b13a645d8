"""Alert rules of ONE charger: what raises and what clears each alert. Pure; time is injected.

The dataflow keys the charger's events by charger id and calls, per key::

    state, out = alert_step(state, item, now, cfg)      # a contract event, a SessionRecord,
                                                        # a SiteAssignment or a DepartureUpdate
    state, out = alert_timer(state, now, cfg)           # when alert_deadline(state, cfg) is due

``out`` holds :class:`~control.alerts.AlertChange` records (the alert and its transition) and a
:class:`~control.alerts.FaultSeen` per fault, which feeds the error-spike watch of the charger's
site and model. ``now`` is processing time: the timers (offline, waiting for vehicle, departure)
run on it, so they fire while the charger says nothing. An alert's ``ts`` is the time of the
event behind it, or the deadline for a timer (the charger's last sign of life plus the allowed
silence; the moment waiting started plus the allowed wait; the departure time).

The rules, in the order they are checked:

* session completed / interrupted: a transaction ended. Interrupted when the stop reason says
  the charger failed (emergency stop, ground fault, overcurrent, power loss, resets), the EV
  stopped it, the driver was de-authorised, or the EV was unplugged while it was still drawing;
  otherwise completed (a notice, born resolved). An interruption alert per connector resolves
  when a later session on that connector completes;
* fault: a StatusNotification error code other than NoError (or status Faulted), a 2.0.1
  NotifyEvent problem (severity warning or above): one alert per connector (0: the charger),
  resolved by a status without error on it or by the same problem reported cleared; a security
  event of severity warning or above (one per event type; nothing resolves it but a user);
* charger offline: nothing from the charger for heartbeat interval x factor (the interval from
  its boot, else the registry, else a default), or a closed connection not reopened within the
  grace; any message resolves it and emits a "back online" notice;
* waiting for vehicle: plugged in and not drawing (never drew since plugged in) for
  ``waiting_after``; resolves when it draws or is unplugged;
* missed charge: at the departure time the connector is still plugged in and the SoC (or the
  energy) is under the target; resolves if the target is reached afterwards;
* data quality: a closed session the quality gate excludes; resolves if a later revision of the
  session is no longer excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from control import contract as c
from control.alerts import AlertBook, AlertChange, AlertConfig, AlertKind, FaultSeen, at, notice
from control.records import FLAG_DESCRIPTIONS, SessionRecord, SessionState
from control.site_config import Departure

Output = AlertChange | FaultSeen

# Stop reasons (1.6 Reason and 2.0.1 ReasonEnumType) that mean the charging was cut short.
CHARGER_ERROR_REASONS: Final = frozenset({
    "EmergencyStop", "GroundFault", "OvercurrentFault", "PowerLoss", "PowerQuality", "HardReset", "SoftReset",
    "Reboot", "ImmediateReset", "OtherFault"})
EV_STOPPED_REASONS: Final = frozenset({"StoppedByEV"})
# "Other": 1.6 chargers give it when a fault stops the charging (no finer 1.6 reason exists).
OTHER_INTERRUPTION_REASONS: Final = frozenset({"DeAuthorized", "LocalOutOfCredit", "Timeout", "MasterPass", "Other"})
_PLUGGED: Final = frozenset({c.ConnectorState.PREPARING, c.ConnectorState.CHARGING, c.ConnectorState.SUSPENDED_EV,
                             c.ConnectorState.SUSPENDED_EVSE, c.ConnectorState.OCCUPIED})
_NO_ERROR: Final = (None, "", "NoError")


@dataclass(frozen=True, slots=True)
class SiteAssignment:
    """Charger ``charger_id`` belongs to ``site_id`` (None: to no site)."""

    charger_id: str
    site_id: str | None


@dataclass(frozen=True, slots=True)
class DepartureUpdate:
    """The charger's departures by connector (0: any connector), replacing the ones known before."""

    charger_id: str
    departures: tuple[tuple[int, Departure], ...] = ()


@dataclass(slots=True)
class ConnWatch:
    status: c.ConnectorState | None = None
    status_ts: datetime | None = None
    drawing: bool = False
    drew: bool = False  # drew power since plugged in
    drawing_when_unplugged: bool = False
    plugged_since: datetime | None = None  # event time it was plugged in
    waiting_since_now: datetime | None = None
    waiting_since_ts: datetime | None = None
    soc_pct: float | None = None
    transaction_id: str | None = None
    start_wh: float | None = None
    last_wh: float | None = None
    departure_done: datetime | None = None  # the departure already judged

    @property
    def plugged(self) -> bool:
        return self.status in _PLUGGED

    @property
    def delivered_wh(self) -> float:
        return max(0.0, self.last_wh - self.start_wh) if self.last_wh is not None and self.start_wh is not None \
            else 0.0


@dataclass(slots=True)
class ChargerWatch:
    charger_id: str
    site_id: str | None = None
    model: str | None = None
    heartbeat_s: int | None = None  # from its boot
    last_seen_now: datetime | None = None
    last_seen_ts: datetime | None = None
    closed_now: datetime | None = None  # its connection closed (and was not reopened) at
    connectors: dict[int, ConnWatch] = field(default_factory=dict)
    departures: dict[int, Departure] = field(default_factory=dict)
    book: AlertBook = field(default_factory=AlertBook)
    announced: list[str] = field(default_factory=list)  # transactions whose end was announced
    fault_codes: dict[str, str] = field(default_factory=dict)  # the code that last raised each fault alert

    def conn(self, connector_id: int) -> ConnWatch:
        return self.connectors.setdefault(connector_id, ConnWatch())


# --------------------------------------------------------------------------- entry points


def alert_step(state: ChargerWatch | None, item: object, now: datetime,
               cfg: AlertConfig) -> tuple[ChargerWatch, list[Output]]:
    charger_id = str(getattr(item, "charger_id"))  # noqa: B009 - every input names its charger
    st = state or ChargerWatch(charger_id)
    out: list[Output] = []
    if isinstance(item, SiteAssignment):
        st.site_id = item.site_id
    elif isinstance(item, DepartureUpdate):
        st.departures = dict(item.departures)
    elif isinstance(item, SessionRecord):
        _on_session(st, item, now, cfg, out)
    elif isinstance(item, c.ConnectionEvent) and item.kind is c.ConnectionKind.DISCONNECTED:
        st.closed_now = now
    elif isinstance(item, c.MeterSample | c.StatusChanged | c.TransactionEvent | c.ConnectionEvent | c.ChargerInfo
                    | c.ChargerNotice):
        _alive(st, item, now, cfg, out)
        if isinstance(item, c.StatusChanged):
            _on_status(st, item, now, cfg, out)
        elif isinstance(item, c.MeterSample):
            _on_sample(st, item, now, cfg, out)
        elif isinstance(item, c.TransactionEvent):
            _on_transaction(st, item, now, cfg, out)
        elif isinstance(item, c.ChargerNotice):
            _on_notice(st, item, now, cfg, out)
        elif isinstance(item, c.ChargerInfo):
            st.model = f"{item.vendor} {item.model}"
        elif item.kind is c.ConnectionKind.BOOTED and item.heartbeat_interval_s:
            st.heartbeat_s = item.heartbeat_interval_s
    out.extend(_timers(st, now, cfg))
    return st, out


def resumed(state: ChargerWatch, now: datetime) -> ChargerWatch:
    """The state restored after a restart: the silence timers start again at ``now``. While the
    dataflow was down nothing was heard from anyone, and the broker's backlog has not been read
    yet; counting that gap would call every charger offline at once."""
    if state.last_seen_now is not None:
        state.last_seen_now = max(state.last_seen_now, now)
    if state.closed_now is not None:
        state.closed_now = max(state.closed_now, now)
    return state


def alert_timer(state: ChargerWatch, now: datetime, cfg: AlertConfig) -> tuple[ChargerWatch, list[Output]]:
    return state, list(_timers(state, now, cfg))


def alert_deadline(state: ChargerWatch, cfg: AlertConfig) -> datetime | None:
    """The earliest processing time at which :func:`alert_timer` has work."""
    deadlines = []
    offline = _offline_deadline(state, cfg)
    if offline is not None and not state.book.is_open(_key(AlertKind.CHARGER_OFFLINE, state.charger_id)):
        deadlines.append(offline)
    for connector_id, conn in state.connectors.items():
        if conn.waiting_since_now is not None \
                and not state.book.is_open(_key(AlertKind.WAITING_FOR_VEHICLE, state.charger_id, connector_id)):
            deadlines.append(conn.waiting_since_now + cfg.waiting_after)
        departure = _departure_of(state, connector_id)
        if departure is not None and conn.plugged and conn.departure_done != departure.departure_at:
            deadlines.append(departure.departure_at)
    return min(deadlines, default=None)


# --------------------------------------------------------------------------- timers


def _offline_deadline(st: ChargerWatch, cfg: AlertConfig) -> datetime | None:
    if st.last_seen_now is None:
        return None
    silence = cfg.heartbeat_interval(st.charger_id, st.heartbeat_s) * cfg.offline_factor
    deadline = st.last_seen_now + silence
    if st.closed_now is not None:
        deadline = min(deadline, st.closed_now + cfg.disconnect_grace)
    return deadline


def _timers(st: ChargerWatch, now: datetime, cfg: AlertConfig) -> list[Output]:
    out: list[Output] = []
    st.book.prune(now, cfg)
    offline_key = _key(AlertKind.CHARGER_OFFLINE, st.charger_id)
    deadline = _offline_deadline(st, cfg)
    if deadline is not None and now >= deadline and not st.book.is_open(offline_key):
        assert st.last_seen_now is not None  # noqa: S101 - a deadline needs it
        # In the charger's terms: its last sign of life (bridge clock) plus the silence allowed.
        ts = (st.last_seen_ts or st.last_seen_now) + (deadline - st.last_seen_now)
        interval = cfg.heartbeat_interval(st.charger_id, st.heartbeat_s).total_seconds()
        why = "its connection closed" if st.closed_now is not None and deadline < st.last_seen_now + timedelta(
            seconds=interval * cfg.offline_factor) else f"expected a heartbeat every {interval:g} s"
        out.append(st.book.raise_(
            offline_key, kind=AlertKind.CHARGER_OFFLINE, severity=c.Severity.ERROR, ts=ts, now=now,
            message=f"Charger {st.charger_id} is offline: nothing heard since {at(st.last_seen_ts or ts)} ({why})",
            charger_id=st.charger_id, site_id=st.site_id, connector_id=None, hold_down=cfg.hold_down))
    for connector_id in sorted(st.connectors):
        conn = st.connectors[connector_id]
        waiting_key = _key(AlertKind.WAITING_FOR_VEHICLE, st.charger_id, connector_id)
        if conn.waiting_since_now is not None and conn.waiting_since_ts is not None \
                and now >= conn.waiting_since_now + cfg.waiting_after and not st.book.is_open(waiting_key):
            minutes = cfg.waiting_after.total_seconds() / 60
            out.append(st.book.raise_(
                waiting_key, kind=AlertKind.WAITING_FOR_VEHICLE, severity=c.Severity.INFO,
                ts=conn.waiting_since_ts + cfg.waiting_after, now=now,
                message=f"{_where(st, connector_id)}: a vehicle is plugged in but has not drawn power for "
                        f"{minutes:g} minutes (plugged in at {at(conn.waiting_since_ts)})",
                charger_id=st.charger_id, site_id=st.site_id, connector_id=connector_id, hold_down=cfg.hold_down))
        _check_departure(st, connector_id, conn, now, cfg, out)
    return out


def _check_departure(st: ChargerWatch, connector_id: int, conn: ConnWatch, now: datetime, cfg: AlertConfig,
                     out: list[Output]) -> None:
    departure = _departure_of(st, connector_id)
    if departure is None or not conn.plugged or now < departure.departure_at \
            or conn.departure_done == departure.departure_at:
        return
    conn.departure_done = departure.departure_at
    if conn.plugged_since is not None and conn.plugged_since > departure.departure_at:
        return  # plugged in after its departure time: a new visit
    shortfall = _shortfall(departure, conn, cfg)
    if shortfall is None:
        return
    out.append(st.book.raise_(
        _key(AlertKind.MISSED_CHARGE, st.charger_id, connector_id), kind=AlertKind.MISSED_CHARGE,
        severity=c.Severity.WARNING, ts=departure.departure_at, now=now,
        message=f"{_where(st, connector_id)}: departure time {at(departure.departure_at)} reached {shortfall}",
        charger_id=st.charger_id, site_id=st.site_id, connector_id=connector_id, hold_down=cfg.hold_down))


def _shortfall(departure: Departure, conn: ConnWatch, cfg: AlertConfig) -> str | None:
    """Why the target is not met (None: it is, or it cannot be told)."""
    if departure.target_soc_pct is not None and conn.soc_pct is not None:
        if conn.soc_pct + cfg.missed_charge_margin_pct < departure.target_soc_pct:
            return f"at {conn.soc_pct:.0f} % state of charge, under the {departure.target_soc_pct:.0f} % target"
        return None
    if departure.energy_wh is not None:
        missing = departure.energy_wh - conn.delivered_wh
        if missing > cfg.missed_charge_margin_wh:
            return (f"with {conn.delivered_wh / 1000:.1f} kWh delivered of the {departure.energy_wh / 1000:.1f} kWh "
                    f"requested")
    return None


def _departure_of(st: ChargerWatch, connector_id: int) -> Departure | None:
    return st.departures.get(connector_id) or st.departures.get(0)


# --------------------------------------------------------------------------- events


def _alive(st: ChargerWatch, item: c.Event, now: datetime, cfg: AlertConfig, out: list[Output]) -> None:
    seen = getattr(item, "received_at", None) or item.ts  # type: ignore[union-attr]
    previous = st.last_seen_ts
    key = _key(AlertKind.CHARGER_OFFLINE, st.charger_id)
    if previous is not None and seen > previous and not st.book.is_open(key):
        # Silent longer than allowed by the bridge's clock, though not by this step's: the dataflow
        # was catching up a backlog when the timer would have fired. The outage still counts.
        interval = cfg.heartbeat_interval(st.charger_id, st.heartbeat_s)
        if seen - previous > interval * cfg.offline_factor:
            out.append(st.book.raise_(
                key, kind=AlertKind.CHARGER_OFFLINE, severity=c.Severity.ERROR,
                ts=previous + interval * cfg.offline_factor, now=now,
                message=f"Charger {st.charger_id} was offline: nothing heard from {at(previous)} until {at(seen)} "
                        f"(expected a heartbeat every {interval.total_seconds():g} s)",
                charger_id=st.charger_id, site_id=st.site_id, connector_id=None, hold_down=cfg.hold_down))
    st.last_seen_now, st.closed_now = now, None
    st.last_seen_ts = seen if previous is None else max(previous, seen)
    tracked = st.book.get(key)
    if tracked is None or not st.book.is_open(key):
        return
    since = tracked.ts
    change = st.book.clear(key, ts=max(seen, since), now=now, note="a message arrived",
                           message=f"Charger {st.charger_id} was offline from {at(since)} until {at(max(seen, since))}")
    if change is not None:
        out.append(change)
        out.append(notice(
            _key(AlertKind.CHARGER_BACK_ONLINE, st.charger_id, change.alert.alert_id),
            kind=AlertKind.CHARGER_BACK_ONLINE, severity=c.Severity.INFO, ts=change.alert.ts,
            message=f"Charger {st.charger_id} is back online at {at(change.alert.ts)} (offline since {at(since)})",
            charger_id=st.charger_id, site_id=st.site_id, connector_id=None))


def _on_status(st: ChargerWatch, ev: c.StatusChanged, now: datetime, cfg: AlertConfig, out: list[Output]) -> None:
    conn = st.conn(ev.connector_id)
    if conn.status_ts is not None and ev.ts < conn.status_ts:
        return  # an old status says nothing about now
    was_plugged = conn.plugged
    conn.status, conn.status_ts = ev.status, ev.ts
    code = ev.error_code if ev.error_code not in _NO_ERROR else "Faulted" if ev.status is c.ConnectorState.FAULTED \
        else None
    key = _key(AlertKind.FAULT, st.charger_id, ev.connector_id)
    if code is not None:
        detail = "; ".join(x for x in (ev.vendor_error_code, ev.info) if x)
        _fault(st, key, ev.connector_id, code, c.Severity.ERROR, ev.ts, now, cfg, out,
               f"{_where(st, ev.connector_id)} reported fault {code}{f' ({detail})' if detail else ''} "
               f"at {at(ev.ts)}, status {ev.status.value}")
    else:
        change = st.book.clear(key, ts=ev.ts, now=now, note=f"status {ev.status.value} without error",
                               message=f"{_where(st, ev.connector_id)}: fault {st.fault_codes.get(key, '')} cleared "
                                       f"at {at(ev.ts)} (status {ev.status.value})")
        if change is not None:
            out.append(change)
    if conn.plugged and not was_plugged and conn.plugged_since is None:
        conn.plugged_since = ev.ts
    if ev.status is c.ConnectorState.CHARGING:
        _drawing(st, ev.connector_id, conn, True, ev.ts, now, out)
    elif ev.status in (c.ConnectorState.PREPARING, c.ConnectorState.SUSPENDED_EV, c.ConnectorState.OCCUPIED):
        if not was_plugged:
            conn.drew, conn.drawing, conn.drawing_when_unplugged, conn.plugged_since = False, False, False, ev.ts
        _drawing(st, ev.connector_id, conn, conn.drawing, ev.ts, now, out)
    elif not conn.plugged:
        if was_plugged:
            conn.drawing_when_unplugged = conn.drawing
        _unplugged(st, ev.connector_id, conn, ev.ts, now, out)
    else:  # SuspendedEVSE: the charger holds it back, not the vehicle
        conn.waiting_since_now = conn.waiting_since_ts = None


def _on_sample(st: ChargerWatch, ev: c.MeterSample, now: datetime, cfg: AlertConfig, out: list[Output]) -> None:
    conn = st.conn(ev.connector_id)
    if ev.soc_pct is not None:
        conn.soc_pct = ev.soc_pct
    if ev.energy_wh is not None and (conn.transaction_id is None or ev.transaction_id in (None, conn.transaction_id)):
        if conn.start_wh is None or ev.energy_wh < conn.start_wh:
            conn.start_wh = ev.energy_wh
        conn.last_wh = ev.energy_wh
    key = _key(AlertKind.MISSED_CHARGE, st.charger_id, ev.connector_id)
    departure = _departure_of(st, ev.connector_id)
    if st.book.is_open(key) and departure is not None and _shortfall(departure, conn, cfg) is None:
        change = st.book.clear(key, ts=ev.ts, now=now, note="target reached",
                               message=f"{_where(st, ev.connector_id)} reached its target at {at(ev.ts)}, after the "
                                       f"departure time {at(departure.departure_at)}")
        if change is not None:
            out.append(change)
    power = ev.power_w if ev.power_w is not None else (
        ev.current_a * (ev.voltage_v or 230.0) if ev.current_a is not None else None)
    if power is not None and conn.plugged:
        _drawing(st, ev.connector_id, conn, power > cfg.drawing_threshold_w, ev.ts, now, out)


def _drawing(st: ChargerWatch, connector_id: int, conn: ConnWatch, drawing: bool, ts: datetime, now: datetime,
             out: list[Output]) -> None:
    conn.drawing = drawing
    if drawing:
        conn.drew = True
        conn.waiting_since_now = conn.waiting_since_ts = None
        change = st.book.clear(_key(AlertKind.WAITING_FOR_VEHICLE, st.charger_id, connector_id), ts=ts, now=now,
                               note="the vehicle draws power",
                               message=f"{_where(st, connector_id)}: the vehicle started drawing power at {at(ts)}")
        if change is not None:
            out.append(change)
    elif not conn.drew and conn.waiting_since_now is None:
        conn.waiting_since_now, conn.waiting_since_ts = now, ts


def _unplugged(st: ChargerWatch, connector_id: int, conn: ConnWatch, ts: datetime, now: datetime,
               out: list[Output]) -> None:
    conn.drew = conn.drawing = False
    conn.waiting_since_now = conn.waiting_since_ts = conn.plugged_since = None
    conn.soc_pct = conn.start_wh = conn.last_wh = None
    change = st.book.clear(_key(AlertKind.WAITING_FOR_VEHICLE, st.charger_id, connector_id), ts=ts, now=now,
                           note="unplugged",
                           message=f"{_where(st, connector_id)}: the vehicle was unplugged at {at(ts)} "
                                   f"without drawing power")
    if change is not None:
        out.append(change)


def _on_transaction(st: ChargerWatch, ev: c.TransactionEvent, now: datetime, cfg: AlertConfig,
                    out: list[Output]) -> None:
    connector_id = ev.connector_id
    if connector_id == 0:  # a 1.6 Stop names no connector: find it by its transaction
        connector_id = next((k for k, v in st.connectors.items() if v.transaction_id == ev.transaction_id), 0)
    conn = st.conn(connector_id)
    if ev.kind is not c.TransactionKind.ENDED:
        if conn.transaction_id != ev.transaction_id:
            conn.transaction_id, conn.start_wh, conn.last_wh = ev.transaction_id, ev.meter_wh or None, None
        return
    if ev.meter_wh:
        conn.last_wh = ev.meter_wh
    if ev.transaction_id in st.announced:
        return  # a replay: announced already
    st.announced = [*st.announced, ev.transaction_id][-cfg.remember_sessions:]
    reason = ev.stop_reason or ""
    energy = f", {conn.delivered_wh / 1000:.2f} kWh delivered" if conn.transaction_id == ev.transaction_id \
        and conn.last_wh is not None else ""
    unplugged_early = reason == "EVDisconnected" and (conn.drawing or conn.drawing_when_unplugged)
    if st.book.is_open(_key(AlertKind.FAULT, st.charger_id, connector_id)):
        reason = reason if reason in CHARGER_ERROR_REASONS else "OtherFault"  # ended while the connector is faulted
    interrupted_key = _key(AlertKind.SESSION_INTERRUPTED, st.charger_id, connector_id)
    if reason in CHARGER_ERROR_REASONS or reason in EV_STOPPED_REASONS or reason in OTHER_INTERRUPTION_REASONS \
            or unplugged_early:
        what, severity = (("by a charger error", c.Severity.ERROR) if reason in CHARGER_ERROR_REASONS
                          else ("by the vehicle", c.Severity.WARNING) if reason in EV_STOPPED_REASONS
                          else ("because the vehicle was unplugged while charging", c.Severity.WARNING)
                          if unplugged_early else ("before completion", c.Severity.WARNING))
        out.append(st.book.raise_(
            interrupted_key, kind=AlertKind.SESSION_INTERRUPTED, severity=severity, ts=ev.ts, now=now,
            message=f"Charging session {ev.transaction_id} on {_where(st, connector_id, lead=False)} was interrupted "
                    f"{what} at {at(ev.ts)} (stop reason {ev.stop_reason or 'unknown'}{energy})",
            charger_id=st.charger_id, site_id=st.site_id, connector_id=connector_id, hold_down=cfg.hold_down,
            note=f"transaction {ev.transaction_id}"))
    else:
        out.append(notice(
            _key(AlertKind.SESSION_COMPLETED, st.charger_id, connector_id, ev.transaction_id),
            kind=AlertKind.SESSION_COMPLETED, severity=c.Severity.INFO, ts=ev.ts,
            message=f"Charging session {ev.transaction_id} on {_where(st, connector_id, lead=False)} completed at "
                    f"{at(ev.ts)} (stop reason {reason or 'not given'}{energy})",
            charger_id=st.charger_id, site_id=st.site_id, connector_id=connector_id))
        change = st.book.clear(interrupted_key, ts=ev.ts, now=now, note=f"session {ev.transaction_id} completed",
                               message=f"{_where(st, connector_id)} completed session {ev.transaction_id} at "
                                       f"{at(ev.ts)} after an interruption")
        if change is not None:
            out.append(change)
    conn.transaction_id = None


def _on_notice(st: ChargerWatch, ev: c.ChargerNotice, now: datetime, cfg: AlertConfig, out: list[Output]) -> None:
    if ev.kind not in (c.NoticeKind.SECURITY_EVENT, c.NoticeKind.NOTIFY_EVENT):
        return
    where = _where(st, ev.connector_id or 0)
    if ev.kind is c.NoticeKind.SECURITY_EVENT:
        if ev.severity is not c.Severity.INFO:
            _fault(st, f"{_key(AlertKind.FAULT, st.charger_id, 'security')}|{ev.code}", ev.connector_id, ev.code,
                   ev.severity, ev.ts, now, cfg, out,
                   f"{where}: security event {ev.code}{f' ({ev.detail})' if ev.detail else ''} at {at(ev.ts)}")
        return
    key = _key(AlertKind.FAULT, st.charger_id, ev.connector_id or 0)
    if ev.severity is not c.Severity.INFO:
        _fault(st, key, ev.connector_id or 0, ev.code, ev.severity, ev.ts, now, cfg, out,
               f"{where} reported a problem: {ev.code}{f' ({ev.detail})' if ev.detail else ''} at {at(ev.ts)}")
    elif st.fault_codes.get(key) == ev.code:  # the problem that raised the alert, reported cleared
        change = st.book.clear(key, ts=ev.ts, now=now, note="reported cleared",
                               message=f"{where}: {ev.code} reported cleared at {at(ev.ts)}")
        if change is not None:
            out.append(change)


def _fault(st: ChargerWatch, key: str, connector_id: int | None, code: str, severity: c.Severity, ts: datetime,
           now: datetime, cfg: AlertConfig, out: list[Output], message: str) -> None:
    """One open fault alert per connector (a 2.0.1 problem comes as a NotifyEvent and a Faulted
    status: one alert, count 2); a new or reopened one counts towards the error spike."""
    change = st.book.raise_(key, kind=AlertKind.FAULT, severity=severity, ts=ts, now=now, message=message,
                            charger_id=st.charger_id, site_id=st.site_id, connector_id=connector_id,
                            hold_down=cfg.hold_down, note=code)
    st.fault_codes[key] = code
    out.append(change)
    if change.transition is not None:
        out.append(FaultSeen(st.charger_id, ts, st.site_id, st.model))


def _on_session(st: ChargerWatch, record: SessionRecord, now: datetime, cfg: AlertConfig, out: list[Output]) -> None:
    key = _key(AlertKind.DATA_QUALITY, record.session_id)
    if record.state is SessionState.OPEN:
        return  # judged when it ends: an open session's flags come and go
    ts = record.ended_at or record.started_at
    if record.excluded:
        if not st.book.is_open(key):
            reasons = " ".join(FLAG_DESCRIPTIONS[f] for f in record.flags if f in FLAG_DESCRIPTIONS)
            out.append(st.book.raise_(
                key, kind=AlertKind.DATA_QUALITY, severity=c.Severity.WARNING, ts=ts, now=now,
                message=f"Session {record.session_id} (ended {at(ts)}) is excluded from totals by the data-quality "
                        f"gate: {', '.join(f.value for f in record.flags)}. {reasons}".strip(),
                charger_id=st.charger_id, site_id=st.site_id, connector_id=record.connector_id,
                hold_down=cfg.hold_down))
    else:
        change = st.book.clear(key, ts=ts, now=now, note=f"revision {record.revision} passes the gate",
                               message=f"Session {record.session_id} passes the data-quality gate again "
                                       f"(revision {record.revision})")
        if change is not None:
            out.append(change)


# --------------------------------------------------------------------------- small helpers


def _key(kind: str, *parts: object) -> str:
    return "|".join((kind, *map(str, parts)))


def _where(st: ChargerWatch, connector_id: int, *, lead: bool = True) -> str:
    charger = f"{'C' if lead else 'c'}harger {st.charger_id}"
    return f"{charger} connector {connector_id}" if connector_id else charger
