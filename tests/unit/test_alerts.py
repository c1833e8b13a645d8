"""Alert rules and lifecycle (control.alert_rules, control.alerts): pure, time injected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from control import contract as c
from control.alert_rules import (
    ChargerWatch,
    DepartureUpdate,
    SiteAssignment,
    alert_deadline,
    alert_step,
    alert_timer,
    resumed,
)
from control.alerts import (
    AlertBook,
    AlertChange,
    AlertConfig,
    AlertKind,
    FaultSeen,
    SpikeState,
    external_change,
    spike_deadline,
    spike_step,
    spike_timer,
)
from control.records import QualityFlag, SessionRecord, SessionState
from control.site_config import Departure

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
CP = "CP-7"
CFG = AlertConfig(default_heartbeat_interval=timedelta(hours=1), offline_factor=2.0,
                  disconnect_grace=timedelta(seconds=30), waiting_after=timedelta(minutes=10),
                  hold_down=timedelta(minutes=5), spike_faults=3, spike_window=timedelta(minutes=10))
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def status(offset: timedelta, state: c.ConnectorState, code: str | None = None, connector: int = 1) -> c.StatusChanged:
    return c.StatusChanged(CP, connector, T0 + offset, state, error_code=code)


def sample(offset: timedelta, power_w: float, soc: float | None = None, energy_wh: float | None = None,
           tx: str | None = None) -> c.MeterSample:
    return c.MeterSample(CP, 1, T0 + offset, power_w=power_w, soc_pct=soc, energy_wh=energy_wh, transaction_id=tx)


def tx(offset: timedelta, kind: c.TransactionKind, tx_id: str = "T1", reason: str | None = None,
       meter_wh: float | None = None) -> c.TransactionEvent:
    return c.TransactionEvent(CP, 1, T0 + offset, kind, tx_id, stop_reason=reason, meter_wh=meter_wh)


def heartbeat(offset: timedelta) -> c.ConnectionEvent:
    return c.ConnectionEvent(CP, T0 + offset, c.ConnectionKind.HEARTBEAT)


def session(state: SessionState, flags: tuple[QualityFlag, ...], revision: int = 1) -> SessionRecord:
    return SessionRecord(session_id=f"{CP}:1:T9", charger_id=CP, connector_id=1, transaction_id="T9",
                         started_at=T0, state=state, revision=revision, energy_wh=1000.0,
                         ended_at=T0 + 30 * M if state is not SessionState.OPEN else None, flags=flags)


@dataclass
class Run:
    """Feeds items (each processed at ``now`` = T0 + offset) and timer ticks; collects alert changes."""

    state: ChargerWatch | None = None
    changes: list[AlertChange] | None = None
    faults: list[FaultSeen] | None = None

    def feed(self, now_offset: timedelta, *items: object) -> list[AlertChange]:
        got: list[AlertChange] = []
        for item in items:
            self.state, out = alert_step(self.state, item, T0 + now_offset, CFG)
            got += self._keep(out)
        return got

    def tick(self, now_offset: timedelta) -> list[AlertChange]:
        assert self.state is not None
        self.state, out = alert_timer(self.state, T0 + now_offset, CFG)
        return self._keep(out)

    def _keep(self, out: Sequence[object]) -> list[AlertChange]:
        self.changes = (self.changes or []) + [o for o in out if isinstance(o, AlertChange)]
        self.faults = (self.faults or []) + [o for o in out if isinstance(o, FaultSeen)]
        return [o for o in out if isinstance(o, AlertChange)]


def kinds(changes: list[AlertChange]) -> list[tuple[str, c.AlertState]]:
    return [(ch.alert.kind, ch.alert.state) for ch in changes]


OPEN, RESOLVED = c.AlertState.OPEN, c.AlertState.RESOLVED


# --------------------------------------------------------------------------- one case per alert type


@pytest.mark.parametrize(("reason", "drawing_at_end", "expected_kind", "severity", "phrase"), [
    ("Local", False, AlertKind.SESSION_COMPLETED, c.Severity.INFO, "completed at 2026-05-04 09:00:00 UTC"),
    ("SOCLimitReached", True, AlertKind.SESSION_COMPLETED, c.Severity.INFO, "completed"),
    ("EVDisconnected", False, AlertKind.SESSION_COMPLETED, c.Severity.INFO, "completed"),
    ("EVDisconnected", True, AlertKind.SESSION_INTERRUPTED, c.Severity.WARNING, "unplugged while charging"),
    ("GroundFault", True, AlertKind.SESSION_INTERRUPTED, c.Severity.ERROR, "by a charger error"),
    ("PowerLoss", False, AlertKind.SESSION_INTERRUPTED, c.Severity.ERROR, "by a charger error"),
    ("StoppedByEV", True, AlertKind.SESSION_INTERRUPTED, c.Severity.WARNING, "by the vehicle"),
    ("DeAuthorized", True, AlertKind.SESSION_INTERRUPTED, c.Severity.WARNING, "before completion"),
    ("Other", True, AlertKind.SESSION_INTERRUPTED, c.Severity.WARNING, "before completion"),
])
def test_a_session_end_is_classified_by_its_stop_reason(reason: str, drawing_at_end: bool, expected_kind: str,
                                                        severity: c.Severity, phrase: str) -> None:
    run = Run()
    run.feed(0 * S, status(0 * S, c.ConnectorState.PREPARING), tx(S, c.TransactionKind.STARTED, meter_wh=1000.0),
             sample(2 * S, 7000.0, energy_wh=1000.0, tx="T1"))
    run.feed(59 * M, sample(59 * M, 7000.0 if drawing_at_end else 0.0, energy_wh=8000.0, tx="T1"))
    got = run.feed(60 * M, tx(60 * M, c.TransactionKind.ENDED, reason=reason, meter_wh=8000.0))
    assert len(got) == 1
    alert = got[0].alert
    assert (alert.kind, alert.severity, alert.charger_id, alert.ts) == (expected_kind, severity, CP, T0 + 60 * M)
    assert phrase in alert.message and "charger CP-7 connector 1" in alert.message and "7.00 kWh" in alert.message
    # A completion is a notice (born resolved); an interruption is open until a completed session.
    assert alert.state is (RESOLVED if expected_kind == AlertKind.SESSION_COMPLETED else OPEN)
    assert got[0].transition is not None and got[0].transition.from_state is None
    # The same Stop replayed announces nothing.
    assert run.feed(61 * M, tx(60 * M, c.TransactionKind.ENDED, reason=reason, meter_wh=8000.0)) == []


def test_an_unplug_while_drawing_reported_by_status_first_is_an_interruption() -> None:
    run = Run()
    run.feed(0 * S, status(0 * S, c.ConnectorState.PREPARING), tx(S, c.TransactionKind.STARTED),
             status(2 * S, c.ConnectorState.CHARGING), sample(3 * S, 7000.0))
    run.feed(10 * M, status(10 * M, c.ConnectorState.AVAILABLE))
    got = run.feed(10 * M, tx(10 * M, c.TransactionKind.ENDED, reason="EVDisconnected"))
    assert kinds(got) == [(AlertKind.SESSION_INTERRUPTED, OPEN)]


def test_a_session_ending_while_its_connector_is_faulted_was_cut_short_by_the_charger() -> None:
    run = Run()
    run.feed(0 * S, tx(0 * S, c.TransactionKind.STARTED), status(S, c.ConnectorState.CHARGING))
    run.feed(M, status(M, c.ConnectorState.FAULTED, "OverCurrentFailure"))
    got = run.feed(M, tx(M, c.TransactionKind.ENDED, reason="Local"))
    assert kinds(got) == [(AlertKind.SESSION_INTERRUPTED, OPEN)]
    assert got[0].alert.severity is c.Severity.ERROR and "stop reason Local" in got[0].alert.message


def test_an_interruption_resolves_when_a_later_session_on_the_connector_completes() -> None:
    run = Run()
    run.feed(0 * S, tx(0 * S, c.TransactionKind.STARTED, "T1"))
    first = run.feed(M, tx(M, c.TransactionKind.ENDED, "T1", reason="EmergencyStop"))
    run.feed(2 * M, tx(2 * M, c.TransactionKind.STARTED, "T2"))
    got = run.feed(3 * M, tx(3 * M, c.TransactionKind.ENDED, "T2", reason="Local"))
    assert kinds(got) == [(AlertKind.SESSION_COMPLETED, RESOLVED), (AlertKind.SESSION_INTERRUPTED, RESOLVED)]
    assert got[1].alert.alert_id == first[0].alert.alert_id


@pytest.mark.parametrize(("item", "clear", "phrase", "severity"), [
    (status(S, c.ConnectorState.FAULTED, "GroundFailure"), status(9 * S, c.ConnectorState.AVAILABLE, "NoError"),
     "fault GroundFailure", c.Severity.ERROR),
    (status(S, c.ConnectorState.FAULTED), status(9 * S, c.ConnectorState.AVAILABLE), "fault Faulted",
     c.Severity.ERROR),
    (c.ChargerNotice(CP, T0 + S, c.NoticeKind.NOTIFY_EVENT, "ConnectorPlugRetentionLock.Problem",
                     severity=c.Severity.ERROR, connector_id=1),
     c.ChargerNotice(CP, T0 + 9 * S, c.NoticeKind.NOTIFY_EVENT, "ConnectorPlugRetentionLock.Problem",
                     severity=c.Severity.INFO, detail="cleared=True", connector_id=1),
     "a problem: ConnectorPlugRetentionLock.Problem", c.Severity.ERROR),
    (c.ChargerNotice(CP, T0 + S, c.NoticeKind.SECURITY_EVENT, "TamperDetectionActivated",
                     severity=c.Severity.CRITICAL), None, "security event TamperDetectionActivated",
     c.Severity.CRITICAL),
])
def test_faults_open_and_clear(item: c.Event, clear: c.Event | None, phrase: str, severity: c.Severity) -> None:
    run = Run()
    run.feed(0 * S, SiteAssignment(CP, "depot"), c.ChargerInfo(CP, T0, "Acme", "X1"))
    got = run.feed(S, item)
    assert kinds(got) == [(AlertKind.FAULT, OPEN)]
    alert = got[0].alert
    assert phrase in alert.message and alert.severity is severity
    assert (alert.charger_id, alert.site_id, alert.ts) == (CP, "depot", T0 + S)
    assert "2026-05-04 08:00:01 UTC" in alert.message
    assert run.faults == [FaultSeen(CP, T0 + S, "depot", "Acme X1")]
    if clear is None:  # a security event waits for a user
        assert run.feed(10 * S, status(10 * S, c.ConnectorState.AVAILABLE)) == []
        return
    cleared = run.feed(10 * S, clear)
    assert kinds(cleared) == [(AlertKind.FAULT, RESOLVED)]
    assert cleared[0].alert.alert_id == alert.alert_id and cleared[0].alert.ts == T0 + 9 * S


def test_a_2_0_1_problem_and_its_faulted_status_are_one_alert_counted_once_for_spikes() -> None:
    run = Run()
    problem = c.ChargerNotice(CP, T0, c.NoticeKind.NOTIFY_EVENT, "EVSE.Problem", severity=c.Severity.ERROR,
                              connector_id=1)
    got = run.feed(0 * S, problem, status(0 * S, c.ConnectorState.FAULTED))
    assert [g.alert.alert_id for g in got] == [got[0].alert.alert_id] * 2 and got[1].alert.count == 2
    assert run.faults is not None and len(run.faults) == 1
    # A cleared report of another component does not clear it; the connector's healthy status does.
    other = c.ChargerNotice(CP, T0 + S, c.NoticeKind.NOTIFY_EVENT, "Fan.Problem", severity=c.Severity.INFO,
                            connector_id=1)
    assert run.feed(S, other) == []
    assert kinds(run.feed(2 * S, status(2 * S, c.ConnectorState.AVAILABLE))) == [(AlertKind.FAULT, RESOLVED)]


def test_offline_by_silence_then_back_online() -> None:
    run = Run()
    run.feed(0 * S, c.ConnectionEvent(CP, T0, c.ConnectionKind.BOOTED, heartbeat_interval_s=30))
    assert run.state is not None and alert_deadline(run.state, CFG) == T0 + 60 * S  # 30 s x 2
    assert run.tick(59 * S) == []
    got = run.tick(61 * S)
    assert kinds(got) == [(AlertKind.CHARGER_OFFLINE, OPEN)]
    assert got[0].alert.ts == T0 + 60 * S and got[0].alert.severity is c.Severity.ERROR
    assert "nothing heard since 2026-05-04 08:00:00 UTC" in got[0].alert.message
    assert alert_deadline(run.state, CFG) is None  # one alert, no repeats while silent
    back = run.feed(5 * M, heartbeat(5 * M))
    assert kinds(back) == [(AlertKind.CHARGER_OFFLINE, RESOLVED), (AlertKind.CHARGER_BACK_ONLINE, RESOLVED)]
    assert back[0].alert.alert_id == got[0].alert.alert_id
    assert back[1].alert.ts == T0 + 5 * M and "back online" in back[1].alert.message


def test_offline_after_a_closed_connection_uses_the_grace() -> None:
    run = Run()
    run.feed(0 * S, heartbeat(0 * S))
    run.feed(10 * S, c.ConnectionEvent(CP, T0 + 10 * S, c.ConnectionKind.DISCONNECTED))
    assert run.state is not None and alert_deadline(run.state, CFG) == T0 + 40 * S  # 30 s grace, before 2 h
    got = run.tick(40 * S)
    assert kinds(got) == [(AlertKind.CHARGER_OFFLINE, OPEN)] and "connection closed" in got[0].alert.message


def test_after_a_restart_the_silence_is_counted_from_the_restart() -> None:
    run = Run()
    run.feed(0 * S, heartbeat(0 * S))
    assert run.state is not None
    state = resumed(run.state, T0 + 3 * 60 * M)  # the dataflow was down for 3 hours
    assert alert_deadline(state, CFG) == T0 + 3 * 60 * M + 2 * 60 * M
    assert alert_timer(state, T0 + 3 * 60 * M + S, CFG)[1] == []


def test_the_registry_interval_applies_when_the_boot_gave_none() -> None:
    cfg = AlertConfig(heartbeat_intervals_s={CP: 10}, offline_factor=3.0)
    state, _ = alert_step(None, heartbeat(0 * S), T0, cfg)
    assert alert_deadline(state, cfg) == T0 + 30 * S


def test_waiting_for_vehicle_opens_after_the_wait_and_resolves_when_it_draws() -> None:
    run = Run()
    run.feed(0 * S, status(0 * S, c.ConnectorState.PREPARING))
    run.feed(M, sample(M, 0.0))
    assert run.tick(9 * M) == []
    got = run.tick(10 * M)
    assert kinds(got) == [(AlertKind.WAITING_FOR_VEHICLE, OPEN)]
    assert got[0].alert.ts == T0 + 10 * M and got[0].connector_id == 1
    assert "plugged in at 2026-05-04 08:00:00 UTC" in got[0].alert.message
    drawing = run.feed(12 * M, sample(12 * M, 3000.0))
    assert kinds(drawing) == [(AlertKind.WAITING_FOR_VEHICLE, RESOLVED)] and drawing[0].alert.ts == T0 + 12 * M


def test_waiting_for_vehicle_resolves_on_unplug_and_not_after_energy_was_drawn() -> None:
    run = Run()
    run.feed(0 * S, status(0 * S, c.ConnectorState.PREPARING))
    run.tick(10 * M)
    unplugged = run.feed(11 * M, status(11 * M, c.ConnectorState.AVAILABLE))
    assert kinds(unplugged) == [(AlertKind.WAITING_FOR_VEHICLE, RESOLVED)]
    # A car that charged and is full (SuspendedEV, 0 W) is not waiting.
    run.feed(20 * M, status(20 * M, c.ConnectorState.PREPARING), status(20 * M + S, c.ConnectorState.CHARGING))
    run.feed(40 * M, status(40 * M, c.ConnectorState.SUSPENDED_EV), sample(40 * M, 0.0))
    assert run.tick(90 * M) == []


@pytest.mark.parametrize(("departure", "soc", "energy_wh", "missed"), [
    (Departure(T0 + 60 * M, target_soc_pct=80.0, battery_wh=60_000.0), 65.0, None, "at 65 % state of charge"),
    (Departure(T0 + 60 * M, target_soc_pct=80.0, battery_wh=60_000.0), 79.5, None, None),
    (Departure(T0 + 60 * M, energy_wh=20_000.0), None, 5_000.0, "5.0 kWh delivered of the 20.0 kWh"),
    (Departure(T0 + 60 * M, energy_wh=20_000.0), None, 20_000.0, None),
])
def test_missed_charge_at_departure(departure: Departure, soc: float | None, energy_wh: float | None,
                                    missed: str | None) -> None:
    run = Run()
    run.feed(0 * S, DepartureUpdate(CP, ((1, departure),)), status(0 * S, c.ConnectorState.PREPARING),
             sample(S, 7000.0, soc=50.0 if soc is not None else None, energy_wh=10_000.0))
    run.feed(50 * M, sample(50 * M, 7000.0, soc=soc, energy_wh=10_000.0 + (energy_wh or 0.0)))
    assert run.state is not None and alert_deadline(run.state, CFG) == T0 + 60 * M
    got = run.tick(60 * M)
    if missed is None:
        assert got == []
        return
    assert kinds(got) == [(AlertKind.MISSED_CHARGE, OPEN)]
    assert got[0].alert.ts == T0 + 60 * M and missed in got[0].alert.message
    assert run.tick(61 * M) == []  # judged once
    if soc is not None:
        reached = run.feed(70 * M, sample(70 * M, 7000.0, soc=80.0))
        assert kinds(reached) == [(AlertKind.MISSED_CHARGE, RESOLVED)]


def test_no_missed_charge_for_a_vehicle_that_arrived_after_the_departure_time() -> None:
    run = Run()
    departure = Departure(T0 + 10 * M, target_soc_pct=80.0, battery_wh=60_000.0)
    run.feed(0 * S, DepartureUpdate(CP, ((0, departure),)))
    assert run.feed(20 * M, status(20 * M, c.ConnectorState.PREPARING), sample(20 * M, 0.0, soc=10.0)) == []


def test_data_quality_alert_for_a_closed_excluded_session_and_its_repair() -> None:
    run = Run()
    assert run.feed(0 * S, session(SessionState.OPEN, (QualityFlag.NO_ENERGY_DATA,))) == []  # judged at the end
    got = run.feed(M, session(SessionState.CLOSED, (QualityFlag.IMPLAUSIBLE_POWER,), revision=2))
    assert kinds(got) == [(AlertKind.DATA_QUALITY, OPEN)] and "implausible_power" in got[0].alert.message
    assert got[0].alert.ts == T0 + 30 * M
    assert run.feed(2 * M, session(SessionState.CLOSED, (QualityFlag.IMPLAUSIBLE_POWER,), revision=3)) == []
    repaired = run.feed(3 * M, session(SessionState.CLOSED, (QualityFlag.GAP,), revision=4))
    assert kinds(repaired) == [(AlertKind.DATA_QUALITY, RESOLVED)]


def test_error_spike_per_group_opens_at_the_threshold_and_ends_with_the_window() -> None:
    state: SpikeState | None = None
    opened: list[AlertChange] = []
    for i, charger in enumerate(["A", "B", "C"]):
        state, out = spike_step(state, "site:depot", FaultSeen(charger, T0 + i * M, "depot"), T0 + i * M, CFG)
        opened += out
    assert kinds(opened) == [(AlertKind.ERROR_SPIKE, OPEN)]
    alert = opened[0].alert
    assert (alert.site_id, alert.charger_id, alert.ts) == ("depot", None, T0 + 2 * M)
    assert "3 faults within 10 minutes on 3 charger(s) (A, B, C)" in alert.message
    assert state is not None and spike_deadline(state, CFG) == T0 + 10 * M
    state, ended = spike_timer(state, T0 + 10 * M, CFG)
    assert kinds(ended) == [(AlertKind.ERROR_SPIKE, RESOLVED)]
    _, model = spike_step(None, "model:Acme X1", FaultSeen("A", T0, model="Acme X1"), T0, CFG)
    assert model == []


# --------------------------------------------------------------------------- lifecycle


def _raise(book: AlertBook, now: datetime, ts: datetime | None = None) -> AlertChange:
    return book.raise_("fault|CP|1|x", kind="fault", severity=c.Severity.ERROR, ts=ts or now, now=now,
                       message="m", charger_id="CP", site_id=None, connector_id=1, hold_down=CFG.hold_down)


def test_one_open_alert_per_condition_repeats_count() -> None:
    book = AlertBook()
    first = _raise(book, T0)
    second = _raise(book, T0 + M)
    assert second.alert.alert_id == first.alert.alert_id
    assert (second.alert.count, second.alert.ts, second.transition) == (2, T0 + M, None)
    # An older event repeating the condition does not move the alert's time back.
    assert _raise(book, T0 + 2 * M, ts=T0).alert.ts == T0 + M


def test_flapping_within_the_hold_down_reopens_the_same_alert() -> None:
    book = AlertBook()
    first = _raise(book, T0)
    cleared = book.clear("fault|CP|1|x", ts=T0 + M, now=T0 + M)
    assert cleared is not None and cleared.transition is not None
    assert (cleared.transition.from_state, cleared.transition.to_state) == (OPEN, RESOLVED)
    again = _raise(book, T0 + 3 * M)
    assert again.alert.alert_id == first.alert.alert_id and again.alert.count == 2
    assert again.transition is not None and (again.transition.from_state, again.transition.to_state) == \
        (RESOLVED, OPEN)


def test_after_the_hold_down_a_new_alert_is_raised() -> None:
    book = AlertBook()
    first = _raise(book, T0)
    book.clear("fault|CP|1|x", ts=T0 + M, now=T0 + M)
    book.prune(T0 + 7 * M, CFG)
    later = _raise(book, T0 + 7 * M)
    assert later.alert.alert_id != first.alert.alert_id and later.alert.count == 1
    assert later.transition is not None and later.transition.from_state is None


def test_clearing_what_is_not_open_does_nothing_and_ids_are_derived() -> None:
    book = AlertBook()
    assert book.clear("nothing", ts=T0, now=T0) is None
    assert _raise(AlertBook(), T0).alert.alert_id == _raise(AlertBook(), T0).alert.alert_id  # replay: same id
    assert _raise(AlertBook(), T0).alert.alert_id != _raise(AlertBook(), T0 + S).alert.alert_id


def test_open_alerts_nothing_clears_leave_the_state_after_forget_after() -> None:
    book = AlertBook()
    _raise(book, T0)
    book.prune(T0 + CFG.forget_after, CFG)
    assert book.is_open("fault|CP|1|x")
    book.prune(T0 + CFG.forget_after + S, CFG)
    assert not book.alerts


def test_load_management_alerts_become_changes_with_a_transition() -> None:
    opened = external_change(c.Alert("stale-1", "stale_building_load", c.Severity.WARNING, T0, "m", site_id="s"))
    resolved = external_change(c.Alert("stale-1", "stale_building_load", c.Severity.WARNING, T0 + M, "m",
                                       state=RESOLVED, site_id="s"))
    assert opened.transition is not None and opened.transition.from_state is None
    assert resolved.transition is not None and (resolved.transition.from_state, resolved.transition.to_state) == \
        (OPEN, RESOLVED)


def test_a_silence_seen_only_in_a_backlog_still_counts() -> None:
    """The dataflow was behind: two heartbeats 5 minutes apart (bridge clock) are processed one
    second apart, so the timer never fired; the gap still opens and resolves an offline alert."""
    run = Run()
    run.feed(0 * S, c.ConnectionEvent(CP, T0, c.ConnectionKind.BOOTED, heartbeat_interval_s=30))
    got = run.feed(1 * S, heartbeat(5 * M))
    assert kinds(got) == [(AlertKind.CHARGER_OFFLINE, OPEN), (AlertKind.CHARGER_OFFLINE, RESOLVED),
                          (AlertKind.CHARGER_BACK_ONLINE, RESOLVED)]
    assert got[0].alert.ts == T0 + 60 * S  # the deadline in the charger's terms: last heard + 2 x 30 s
    assert "nothing heard from 2026-05-04 08:00:00 UTC until 2026-05-04 08:05:00 UTC" in got[0].alert.message
    assert run.feed(2 * S, heartbeat(5 * M + 20 * S)) == []  # a normal gap afterwards: nothing
