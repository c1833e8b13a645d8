"""pipelines.sessions over time: zombies and timers, offline backlogs, the status fallback,
lost stops, connector-less stops, eviction, and the live state (builders from test_sessions)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from test_sessions import (
    CP,
    SID,
    F,
    Run,
    at,
    connection,
    ended,
    ramp,
    sample,
    started,
    status,
)

from control.contract import ConnectionKind, ConnectorState, Event
from control.records import LiveStatus, SessionState
from pipelines.sessions import SessionConfig, next_deadline

LATER = timedelta(hours=2)


def _backlog(events: list[Event], arrival_minute: float) -> list[Event]:
    return [dataclasses.replace(e, received_at=at(arrival_minute)) for e in events]


# --------------------------------------------------------------------------- zombies


def test_no_data_while_available_closes_the_session_as_abandoned() -> None:
    run = Run().feed([started(0, 10_000.0), *ramp(1, 20), status(21, ConnectorState.AVAILABLE),
                      *[connection(m, ConnectionKind.HEARTBEAT) for m in (30, 40, 50)]])
    assert run.state is not None
    assert next_deadline(run.state, run.config) == at(51)  # 30 min after the Available status arrived
    run.tick(at(50.9))
    assert run.final().state is SessionState.OPEN
    run.tick(at(51))
    record = run.final()
    assert (record.state, record.ended_at, record.energy_wh) == (SessionState.ABANDONED, at(21), 2_400.0)
    assert F.ABANDONED in record.flags and record.excluded


def test_a_charger_that_sends_nothing_at_all_abandons_its_session() -> None:
    run = Run().feed([started(0, 10_000.0), *ramp(1, 20)])
    assert run.state is not None
    assert next_deadline(run.state, run.config) == at(50)
    run.tick(at(50))
    assert (run.final().state, run.final().ended_at) == (SessionState.ABANDONED, at(20))


def test_an_abandoned_session_is_completed_by_its_replayed_backlog() -> None:
    run = Run().feed([started(0, 10_000.0), *ramp(1, 20), connection(21, ConnectionKind.DISCONNECTED)])
    run.tick(at(51))
    abandoned = run.final()
    assert abandoned.state is SessionState.ABANDONED
    run.feed([connection(170, ConnectionKind.CONNECTED),
              *_backlog([*ramp(21, 59), ended(60, 17_200.0, connector=1, offline=True)], 170)])
    record = run.final()
    assert (record.state, record.ended_at, record.energy_wh, record.stop_reason) == (
        SessionState.CLOSED, at(60), 7_200.0, "EVDisconnected")
    assert F.REPLAYED_OFFLINE in record.flags and not record.excluded
    assert record.revision > abandoned.revision
    assert sum(run.days(SID).values()) == 7_200.0


def test_a_closed_session_takes_late_samples_by_timestamp() -> None:
    """2.0.1 MeterValues carry no transaction id: a backlog lands in the session whose window
    holds it, even while a newer session is open on the connector."""
    first = [started(0, 10_000.0), *ramp(1, 10, tx=None), ended(60, 17_200.0, connector=1)]
    second = [started(100, 30_000.0, tx="43"), *ramp(101, 105, base=30_000.0, tx="43", origin=100)]
    run = Run().feed([*first, *second])
    before = run.final(SID)
    assert F.GAP in before.flags and before.sample_count == 10  # none in the last 50 minutes
    run.feed(_backlog(ramp(11, 59, tx=None), 106))
    after = run.final(SID)
    assert after.revision > before.revision and (after.energy_wh, after.sample_count) == (7_200.0, 59)
    assert F.GAP not in after.flags and F.REPLAYED_OFFLINE in after.flags
    assert {v.session_id for v in run.verdicts()[-49:]} == {SID}
    assert run.final(f"{CP}:1:43").state is SessionState.OPEN


# --------------------------------------------------------------------------- status fallback


def test_charging_without_a_transaction_opens_a_status_fallback_session() -> None:
    events = [status(0, ConnectorState.CHARGING), *ramp(1, 30, tx=None), status(31, ConnectorState.AVAILABLE)]
    run = Run().feed(events[:2])
    assert run.records() == []  # held back for the grace period: the real transaction may follow
    run.feed(events[2:])
    record = run.final()
    assert record.session_id == f"{CP}:1:status-20240131T220000Z"
    assert (record.state, record.started_at, record.ended_at, record.stop_reason) == (
        SessionState.CLOSED, at(0), at(31), "Available")
    assert record.energy_wh == 7_200.0 * 29 / 60  # from the first sample's register
    assert {F.STATUS_FALLBACK, F.MISSING_BEGIN_REGISTER} <= set(record.flags) and not record.excluded


def test_a_transaction_within_the_grace_takes_over_the_fallback_session() -> None:
    run = Run().feed([status(0, ConnectorState.CHARGING), sample(0.5, 10_060.0, tx=None), started(0.2, 10_000.0),
                      *ramp(1, 30), ended(31, 10_000.0 + 7_200.0 * 31 / 60)])
    record = run.final()
    assert record.session_id == SID and record.started_at == at(0.2)
    assert F.STATUS_FALLBACK not in record.flags
    assert record.sample_count == 31


def test_a_published_fallback_session_is_zeroed_when_its_transaction_turns_up() -> None:
    fallback_id = f"{CP}:1:status-20240131T220000Z"
    run = Run().feed([status(0, ConnectorState.CHARGING), *ramp(1, 30, tx=None), status(31, ConnectorState.AVAILABLE)])
    assert run.final(fallback_id).energy_wh > 0
    run.feed(_backlog([started(-0.5, 9_940.0, offline=True), ended(30.5, 10_000 + 7_200.0 * 30.5 / 60, offline=True)],
                      120))
    gone = run.final(fallback_id)
    assert (gone.energy_wh, gone.stop_reason) == (0.0, f"Superseded by {SID}")
    assert set(run.days(fallback_id).values()) == {0.0}
    record = run.final(SID)
    assert record.energy_wh == 7_200.0 * 31 / 60 and F.STATUS_FALLBACK not in record.flags
    assert F.REPLAYED_OFFLINE in record.flags


# --------------------------------------------------------------------------- lost and connector-less stops


def test_a_new_transaction_closes_one_whose_stop_was_lost_and_the_late_stop_completes_it() -> None:
    run = Run().feed([started(0, 10_000.0), *ramp(1, 20),
                      started(30, 20_000.0, tx="43"), sample(31, 20_100.0, tx="43")])
    lost = run.final(SID)
    assert (lost.state, lost.ended_at, lost.stop_reason) == (SessionState.CLOSED, at(20), None)
    assert run.final(f"{CP}:1:43").state is SessionState.OPEN
    run.feed([ended(25, 12_900.0, late=timedelta(minutes=10), reason="Local")])
    found = run.final(SID)
    assert (found.ended_at, found.stop_reason, found.energy_wh) == (at(25), "Local", 2_900.0)


def test_a_stop_naming_no_connector_waits_for_its_connector() -> None:
    """1.6 StopTransaction (connector 0) replayed before anything else of its transaction."""
    run = Run().feed([*_backlog([ended(60, 17_200.0), started(0, 10_000.0), *ramp(1, 59)], 100)])
    assert {r.session_id for r in run.records()} == {SID}
    assert run.final().energy_wh == 7_200.0


def test_a_connector_less_transaction_is_published_on_connector_0_after_the_grace() -> None:
    run = Run().feed([ended(60, 17_200.0, tx="99")])
    assert run.records() == []
    run.tick(at(62))
    assert run.final().session_id == f"{CP}:0:99"


# --------------------------------------------------------------------------- eviction


def test_only_a_few_closed_sessions_are_kept_and_late_data_of_an_evicted_one_changes_nothing() -> None:
    events: list[Event] = []
    for k in range(5):
        tx, t = str(100 + k), 60 * k
        events += [started(t, 1_000.0 * k + 10_000, tx=tx), sample(t + 10, 1_000.0 * k + 10_500, tx=tx),
                   ended(t + 20, 1_000.0 * k + 11_000, tx=tx, connector=1)]
    run = Run().feed(events)
    assert run.state is not None
    assert [s.transaction_id for s in run.state.connectors[1].sessions] == ["102", "103", "104"]
    emitted = len(run.records())
    run.feed([sample(15, 10_700.0, tx="100", late=LATER), sample(75, 11_700.0, tx=None, late=LATER)])
    assert len(run.records()) == emitted
    assert [v.session_id for v in run.verdicts()[-2:]] == [f"{CP}:1:100", f"{CP}:1:101"]
    assert next_deadline(run.state, run.config) == at(140) + run.config.keep_closed_for  # the oldest kept one
    run.tick(at(260) + run.config.keep_closed_for)
    assert run.state.connectors[1].sessions == []


# --------------------------------------------------------------------------- live state


def _chips(run: Run) -> list[LiveStatus]:
    chips: list[LiveStatus] = []
    for live in run.lives():
        if not chips or chips[-1] is not live.status:
            chips.append(live.status)
    return chips


def test_the_live_chip_follows_the_connector() -> None:
    run = Run().feed([
        status(0, ConnectorState.AVAILABLE), status(1, ConnectorState.PREPARING),
        started(2, 10_000.0), status(2.1, ConnectorState.SUSPENDED_EV),  # connected, never drawn yet
        sample(3, 10_000.0, power=7_000.0), sample(4, 10_117.0, power=7_000.0),
        status(5, ConnectorState.SUSPENDED_EV),  # after drawing energy: paused
        status(6, ConnectorState.SUSPENDED_EVSE), status(7, ConnectorState.CHARGING),
        status(8, ConnectorState.CHARGING, error="OverCurrentFailure"),
        connection(9, ConnectionKind.DISCONNECTED), connection(10, ConnectionKind.CONNECTED),
        status(11, ConnectorState.FAULTED), status(12, ConnectorState.AVAILABLE),
    ])
    assert _chips(run) == [LiveStatus.IDLE, LiveStatus.WAITING_FOR_VEHICLE, LiveStatus.CHARGING, LiveStatus.PAUSED,
                           LiveStatus.CHARGING, LiveStatus.ERROR, LiveStatus.OFFLINE, LiveStatus.ERROR,
                           LiveStatus.IDLE]


def test_live_figures_and_when_a_live_state_is_sent() -> None:
    run = Run().feed([started(0, 10_000.0), status(0.1, ConnectorState.CHARGING),
                      dataclasses.replace(sample(1, 10_120.0, power=7_200.0), current_a=31.3, soc_pct=40.0)])
    live = run.lives()[-1]
    assert (live.status, live.power_w, live.current_a, live.soc_pct, live.session_id, live.session_started_at,
            live.session_energy_wh, live.online, live.last_seen_at) == (
        LiveStatus.CHARGING, 7_200.0, 31.3, 40.0, SID, at(0), 120.0, True, at(1))
    sent = len(run.lives())
    run.feed([connection(1.5, ConnectionKind.HEARTBEAT)])  # nothing changed, last seen is recent
    assert len(run.lives()) == sent
    run.feed([connection(2.5, ConnectionKind.HEARTBEAT)])  # a minute and more: refreshed
    assert len(run.lives()) == sent + 1 and run.lives()[-1].last_seen_at == at(2.5)
    run.feed([sample(0.5, 10_060.0, power=1.0, late=LATER)])  # an old sample does not move the live figures
    assert run.lives()[-1].power_w == 7_200.0


def test_a_charger_level_fault_shows_on_every_connector() -> None:
    run = Run().feed([status(0, ConnectorState.AVAILABLE, connector=1),
                      status(0, ConnectorState.AVAILABLE, connector=2), status(1, ConnectorState.FAULTED, connector=0)])
    assert run.lives(1)[-1].status is LiveStatus.ERROR and run.lives(2)[-1].status is LiveStatus.ERROR


def test_config_rating_default() -> None:
    config = SessionConfig()
    assert config.rules("unknown").curve.max_power_w == 350_000.0
    assert SessionConfig(max_power_w={"x": 11_000.0}).rules("x").curve.max_power_w == 11_000.0
