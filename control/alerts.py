"""Alert lifecycle: one open alert per condition, counts, hold-down, every transition a record. Pure.

An alert is raised for a *condition*, named by a dedupe key (``"fault|CP-1|1|status|GroundFailure"``).
The :class:`AlertBook` of a charger (or of a site / charger model, for error spikes) keeps the
alerts of its conditions and applies the lifecycle::

    (none) --raise--> open --clear--> resolved            (acknowledged: by a user, in the store)
                      open --raise--> open, count + 1     (a repeat: no new alert)
    resolved --raise within hold_down--> open, count + 1  (flapping: the same alert reopens)
    resolved --raise after hold_down--> a NEW alert       (a new id)

Each call returns an :class:`AlertChange`: the contract's :class:`~control.contract.Alert` as it
now stands, plus what the contract does not carry (dedupe key, connector) and the
:class:`AlertTransition` it made (None for a repeat). One-shot notices (a session completed, a
charger back online) are born resolved: there is nothing to act on, but they are stored and
published like the rest.

Ids are derived from the dedupe key and the time of the event that opened the alert, so the
same input replayed after a recovery produces the same ids and the store keeps one row.
The rules that decide *when* to raise or clear live in :mod:`control.alert_rules`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from control.contract import Alert, AlertState, Severity

PIPELINE_ACTOR: Final = "pipeline"


class AlertKind(StrEnum):
    SESSION_COMPLETED = "session_completed"
    SESSION_INTERRUPTED = "session_interrupted"
    FAULT = "fault"
    CHARGER_OFFLINE = "charger_offline"
    CHARGER_BACK_ONLINE = "charger_back_online"
    WAITING_FOR_VEHICLE = "waiting_for_vehicle"
    ERROR_SPIKE = "error_spike"
    MISSED_CHARGE = "missed_charge"
    DATA_QUALITY = "data_quality"
    # raised by pipelines.load_control (per site), stored and published through the same path
    SETPOINT_VIOLATED = "setpoint_violated"
    SETPOINT_REJECTED = "setpoint_rejected"
    STALE_BUILDING_LOAD = "stale_building_load"
    GRID_CRITICAL_LIMIT = "grid_critical_limit"  # a charger reported a grid-critical external limit


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One step of an alert's lifecycle. ``from_state`` None: the alert was created."""

    alert_id: str
    ts: datetime
    from_state: AlertState | None
    to_state: AlertState
    actor: str = PIPELINE_ACTOR
    note: str | None = None


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert as it now stands, with its transition (None: a repeat, only ``count`` grew)."""

    alert: Alert
    dedupe_key: str
    connector_id: int | None = None
    transition: AlertTransition | None = None


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Tunables of the alert rules (see :mod:`control.alert_rules`)."""

    default_heartbeat_interval: timedelta = timedelta(seconds=300)  # when neither boot nor registry says
    heartbeat_intervals_s: dict[str, int] = field(default_factory=dict)  # from the registry, per charger
    offline_factor: float = 2.5  # offline after this many heartbeat intervals of silence
    disconnect_grace: timedelta = timedelta(seconds=60)  # a closed socket not reopened within: offline
    waiting_after: timedelta = timedelta(minutes=15)  # connected, not drawing this long: waiting for vehicle
    drawing_threshold_w: float = 50.0  # above this a connector draws (as the live status chip)
    hold_down: timedelta = timedelta(minutes=10)  # a condition back within this reopens its alert
    spike_faults: int = 5  # error spike: this many faults ...
    spike_window: timedelta = timedelta(minutes=15)  # ... within this window, per site or charger model
    missed_charge_margin_pct: float = 1.0  # SoC this far under the target still counts as met
    missed_charge_margin_wh: float = 100.0  # energy this far short still counts as met
    forget_after: timedelta = timedelta(days=7)  # an open alert nothing clears leaves the state (the store keeps it)
    remember_sessions: int = 16  # transactions per charger already announced (replays announce nothing)

    def heartbeat_interval(self, charger_id: str, booted_s: int | None) -> timedelta:
        if booted_s:
            return timedelta(seconds=booted_s)
        registry = self.heartbeat_intervals_s.get(charger_id)
        return timedelta(seconds=registry) if registry else self.default_heartbeat_interval


@dataclass(slots=True)
class Tracked:
    """The book's copy of one alert (open, or resolved within its hold-down)."""

    alert_id: str
    kind: str
    severity: Severity
    state: AlertState
    count: int
    ts: datetime  # the latest event time it reflects
    message: str
    charger_id: str | None
    site_id: str | None
    connector_id: int | None
    last_now: datetime  # processing time of its latest change


@dataclass(slots=True)
class AlertBook:
    alerts: dict[str, Tracked] = field(default_factory=dict)  # by dedupe key

    def is_open(self, key: str) -> bool:
        tracked = self.alerts.get(key)
        return tracked is not None and tracked.state is AlertState.OPEN

    def get(self, key: str) -> Tracked | None:
        return self.alerts.get(key)

    def raise_(self, key: str, *, kind: str, severity: Severity, ts: datetime, now: datetime, message: str,
               charger_id: str | None, site_id: str | None, connector_id: int | None,
               hold_down: timedelta, note: str | None = None) -> AlertChange:
        """The condition ``key`` holds (again): open, repeat or reopen its alert."""
        tracked = self.alerts.get(key)
        if tracked is not None and tracked.state is AlertState.OPEN:
            tracked.count += 1
            tracked.ts, tracked.message, tracked.severity = max(tracked.ts, ts), message, severity
            tracked.last_now = now
            return _change(key, tracked, None)
        if tracked is not None and now - tracked.last_now <= hold_down:  # resolved, and back soon: flapping
            tracked.count += 1
            tracked.state, tracked.ts, tracked.message, tracked.severity = AlertState.OPEN, max(tracked.ts, ts), \
                message, severity
            tracked.last_now = now
            return _change(key, tracked, AlertTransition(
                tracked.alert_id, tracked.ts, AlertState.RESOLVED, AlertState.OPEN, note=note or "raised again"))
        tracked = Tracked(derived_id("al", key, ts.isoformat()), kind, severity, AlertState.OPEN, 1, ts, message,
                          charger_id, site_id, connector_id, now)
        self.alerts[key] = tracked
        return _change(key, tracked, AlertTransition(tracked.alert_id, ts, None, AlertState.OPEN, note=note))

    def clear(self, key: str, *, ts: datetime, now: datetime, message: str | None = None,
              note: str | None = None) -> AlertChange | None:
        """The condition ``key`` no longer holds: resolve its open alert (nothing if none is open)."""
        tracked = self.alerts.get(key)
        if tracked is None or tracked.state is not AlertState.OPEN:
            return None
        tracked.state, tracked.ts, tracked.last_now = AlertState.RESOLVED, max(tracked.ts, ts), now
        if message is not None:
            tracked.message = message
        return _change(key, tracked, AlertTransition(
            tracked.alert_id, tracked.ts, AlertState.OPEN, AlertState.RESOLVED, note=note))

    def prune(self, now: datetime, cfg: AlertConfig) -> None:
        """Forget resolved alerts past their hold-down, and open ones nothing touched for ``forget_after``."""
        for key in [k for k, t in self.alerts.items()
                    if now - t.last_now > (cfg.hold_down if t.state is AlertState.RESOLVED else cfg.forget_after)]:
            del self.alerts[key]


def notice(key: str, *, kind: str, severity: Severity, ts: datetime, message: str, charger_id: str | None,
           site_id: str | None, connector_id: int | None, note: str | None = None) -> AlertChange:
    """A one-shot alert, born resolved (a session completed, a charger back online)."""
    alert_id = derived_id("al", key, ts.isoformat())
    alert = Alert(alert_id=alert_id, kind=kind, severity=severity, ts=ts, message=message,
                  state=AlertState.RESOLVED, charger_id=charger_id, site_id=site_id)
    return AlertChange(alert, key, connector_id, AlertTransition(alert_id, ts, None, AlertState.RESOLVED, note=note))


def external_change(alert: Alert) -> AlertChange:
    """An alert raised elsewhere (load management): open ones are created, resolved ones were open."""
    opened = alert.state is AlertState.OPEN
    return AlertChange(alert, f"{alert.kind}|{alert.alert_id}", None, AlertTransition(
        alert.alert_id, alert.ts, None if opened else AlertState.OPEN, alert.state))


def _change(key: str, t: Tracked, transition: AlertTransition | None) -> AlertChange:
    alert = Alert(alert_id=t.alert_id, kind=t.kind, severity=t.severity, ts=t.ts, message=t.message, state=t.state,
                  charger_id=t.charger_id, site_id=t.site_id, count=t.count)
    return AlertChange(alert, key, t.connector_id, transition)


# --------------------------------------------------------------------------- error spikes


@dataclass(frozen=True, slots=True)
class FaultSeen:
    """A fault was raised (or repeated) on a charger: input of the error-spike watch."""

    charger_id: str
    ts: datetime
    site_id: str | None = None
    model: str | None = None

    def groups(self) -> list[str]:
        return [g for g in (f"site:{self.site_id}" if self.site_id else None,
                            f"model:{self.model}" if self.model else None) if g is not None]


@dataclass(slots=True)
class SpikeState:
    group: str  # "site:<site id>" or "model:<vendor model>"
    seen: list[tuple[datetime, datetime, str]] = field(default_factory=list)  # (now, event ts, charger) in window
    book: AlertBook = field(default_factory=AlertBook)


def spike_step(state: SpikeState | None, group: str, fault: FaultSeen, now: datetime,
               cfg: AlertConfig) -> tuple[SpikeState, list[AlertChange]]:
    st = state or SpikeState(group)
    st.seen.append((now, fault.ts, fault.charger_id))
    return st, _spike_check(st, now, cfg, fault.ts)


def spike_timer(state: SpikeState, now: datetime, cfg: AlertConfig) -> tuple[SpikeState, list[AlertChange]]:
    return state, _spike_check(state, now, cfg, None)


def spike_deadline(state: SpikeState, cfg: AlertConfig) -> datetime | None:
    """When the oldest fault leaves the window (the spike may end then)."""
    return state.seen[0][0] + cfg.spike_window if state.seen else None


def spike_idle(state: SpikeState) -> bool:
    return not state.seen and not state.book.alerts


def _spike_check(st: SpikeState, now: datetime, cfg: AlertConfig, trigger_ts: datetime | None) -> list[AlertChange]:
    st.seen = [s for s in st.seen if now - s[0] < cfg.spike_window]
    st.book.prune(now, cfg)
    key = f"{AlertKind.ERROR_SPIKE}|{st.group}"
    what, _, name = st.group.partition(":")
    where = f"site {name}" if what == "site" else f"charger model {name}"
    site_id = name if what == "site" else None
    count = len(st.seen)
    if count >= cfg.spike_faults and trigger_ts is not None and not st.book.is_open(key):
        chargers = sorted({s[2] for s in st.seen})
        minutes = cfg.spike_window.total_seconds() / 60
        message = (f"Error spike at {where}: {count} faults within {minutes:g} minutes on "
                   f"{len(chargers)} charger(s) ({', '.join(chargers[:5])}{', ...' if len(chargers) > 5 else ''}), "
                   f"the latest at {at(trigger_ts)}")
        return [st.book.raise_(key, kind=AlertKind.ERROR_SPIKE, severity=Severity.ERROR, ts=trigger_ts, now=now,
                               message=message, charger_id=None, site_id=site_id, connector_id=None,
                               hold_down=cfg.hold_down)]
    if count < cfg.spike_faults and st.book.is_open(key):
        change = st.book.clear(key, ts=now, now=now, message=f"Error spike at {where} is over: {count} fault(s) in "
                               f"the last {cfg.spike_window.total_seconds() / 60:g} minutes at {at(now)}",
                               note="fault rate back under the threshold")
        return [change] if change is not None else []
    return []


# --------------------------------------------------------------------------- small helpers


def at(ts: datetime) -> str:
    """A time as messages show it: ``2026-03-31 23:00:05 UTC``."""
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC"


def derived_id(prefix: str, *parts: str) -> str:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"
