"""pipelines.load_control: the control step as plain functions (no Bytewax, no services)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from control import contract as c
from control.records import ComplianceCheck, ComplianceVerdict, ControlDecision
from control.site_config import Departure, SiteControlConfig, build_config
from control.topics import topic_for
from pipelines.control_source import diff_configs
from pipelines.flow import FlowParts, build_dataflow
from pipelines.load_control import (
    ControlConfig,
    ControlInput,
    Output,
    Placement,
    Routed,
    SiteConfigUpdate,
    SiteControl,
    control_step,
    next_wakeup,
    on_timer,
    route,
)
from pipelines.mqtt_source import MqttMessage

T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
SITE = "home-1"
CFG = ControlConfig()


def site_mapping(main_a: float = 25, *, meter: bool = False, fallback_a: float = 6) -> dict[str, Any]:
    return {
        "site_id": SITE, "name": "Home", "meter_timeout_s": 30, "safe_fallback_a": fallback_a,
        "circuits": [{"id": "main", "limit_a": main_a, "has_meter": meter}],
        "chargers": [{"id": "CP-A", "circuit": "main", "max_current_a": 32},
                     {"id": "CP-B", "circuit": "main", "max_current_a": 16}],
    }


def config(main_a: float = 25, *, meter: bool = False, modes: dict[tuple[str, int], str] | None = None,
           rules: list[dict[str, Any]] | None = None, version: str = "v1") -> SiteControlConfig:
    return build_config(site=site_mapping(main_a, meter=meter), modes=modes, rules=rules or [], version=version)


class Harness:
    """Feeds one site's control step and keeps its outputs. Like a bridge whose chargers accept
    every profile at once, it answers each command with an accepted result (``auto_accept``)."""

    def __init__(self, *, auto_accept: bool = True) -> None:
        self.state: SiteControl | None = None
        self.out: list[Output] = []
        self.auto_accept = auto_accept

    def feed(self, item: ControlInput | c.Event, at: datetime) -> list[Output]:
        if not isinstance(item, SiteConfigUpdate | c.BuildingLoad | Routed):
            assert isinstance(item, c.MeterSample | c.StatusChanged | c.TransactionEvent | c.ConnectionEvent
                              | c.CommandResult)
            item = Routed(SITE, item)
        self.state, out = control_step(self.state, item, at, CFG)
        self.out.extend(out)
        return out + self._accept(out, at)

    def tick(self, at: datetime) -> list[Output]:
        assert self.state is not None
        self.state, out = on_timer(self.state, at, CFG)
        self.out.extend(out)
        return out + self._accept(out, at)

    def _accept(self, out: list[Output], at: datetime) -> list[Output]:
        more: list[Output] = []
        if self.auto_accept:
            for command in of(c.Command, out):
                more += self.feed(c.CommandResult(command.command_id, command.charger_id, at,
                                                  c.CommandOutcome.ACCEPTED, "Accepted"), at)
        return more

    def plug_in(self, charger: str, at: datetime, tx: str = "1") -> list[Output]:
        out = self.feed(c.StatusChanged(charger, 1, at, c.ConnectorState.PREPARING), at)
        out += self.feed(c.TransactionEvent(charger, 1, at, c.TransactionKind.STARTED, tx, id_tag="TAG"), at)
        return out


def of(kind: type[Any], items: list[Output]) -> list[Any]:
    return [x for x in items if isinstance(x, kind)]


def limits(items: list[Output]) -> dict[str, float]:
    return {s.charger_id: s.limit for s in of(c.Setpoint, items)}


def test_arrivals_share_the_site_fairly_and_every_change_is_sent_and_audited() -> None:
    h = Harness()
    assert h.feed(SiteConfigUpdate(SITE, config()), T0) == []  # nobody plugged in: nothing to decide
    out = h.plug_in("CP-A", T0 + timedelta(seconds=1))
    assert limits(out) == {"CP-A": 24.0}  # 25 A main breaker minus the 1 A safety margin
    (command,) = of(c.Command, out)
    assert (command.kind, command.params, command.connector_id) == (c.CommandKind.SET_LIMIT, {"limit": 24.0,
                                                                                             "unit": "A"}, 1)
    (audit,) = of(ControlDecision, out)
    assert (audit.old_limit_a, audit.new_limit_a, audit.reason, audit.command_id) == (
        None, 24.0, "Limited by site", command.command_id)
    out = h.plug_in("CP-B", T0 + timedelta(seconds=2), tx="2")
    assert limits(out) == {"CP-A": 12.0, "CP-B": 12.0}  # fair share, not first come first served
    assert {(d.charger_id, d.old_limit_a) for d in of(ControlDecision, out)} == {("CP-A", 24.0), ("CP-B", None)}


def test_a_building_load_step_lowers_the_limits_at_once_and_the_audit_says_what_was_seen() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(40, meter=True)), T0)
    h.feed(c.BuildingLoad(SITE, T0, 0.0, current_l1_a=2, current_l2_a=2, current_l3_a=2, source="hems"), T0)
    assert limits(h.plug_in("CP-A", T0)) == {"CP-A": 32.0}  # hardware max
    at = T0 + timedelta(seconds=3)
    out = h.feed(c.BuildingLoad(SITE, at, 0.0, current_l1_a=20, current_l2_a=9, current_l3_a=9), at)
    assert limits(out) == {"CP-A": 19.0}  # 40 - 1 margin - 20 on L1
    (audit,) = of(ControlDecision, out)
    assert any(k.startswith("building_load") and v["age_s"] == 0.0 for k, v in audit.inputs.items()), audit.inputs


def test_mode_switch_in_the_configuration_changes_the_split() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(30)), T0)
    h.plug_in("CP-A", T0)
    assert limits(h.plug_in("CP-B", T0, tx="2")) == {"CP-A": 14.5, "CP-B": 14.5}
    boost = config(30, modes={("CP-B", 1): "boost", ("CP-A", 1): "eco"}, version="v2")
    out = h.feed(SiteConfigUpdate(SITE, boost), T0 + timedelta(seconds=1))
    assert limits(out) == {"CP-A": 13.0, "CP-B": 16.0}  # Boost at its hardware cap, Eco gets the rest
    assert {d.reason for d in of(ControlDecision, out)} >= {"Boost"}


def test_compliance_compliant_late_and_violated() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(25)), T0)
    h.plug_in("CP-A", T0)

    def sample(at: datetime, amps: float) -> c.MeterSample:
        return c.MeterSample("CP-A", 1, at, current_l1_a=amps, current_l2_a=amps, current_l3_a=amps, received_at=at)

    out = h.feed(sample(T0 + timedelta(seconds=4), 23.5), T0 + timedelta(seconds=4))
    (check,) = of(ComplianceCheck, out)
    assert (check.verdict, check.reaction_s, check.measured_a) == (ComplianceVerdict.COMPLIANT, 4.0, 23.5)

    t1 = T0 + timedelta(seconds=10)
    assert limits(h.plug_in("CP-B", t1, tx="2")) == {"CP-A": 12.0, "CP-B": 12.0}
    h.feed(sample(t1 + timedelta(seconds=5), 23.8), t1 + timedelta(seconds=5))  # still drawing the old 24 A
    out = h.feed(sample(t1 + timedelta(seconds=20), 12.4), t1 + timedelta(seconds=20))
    assert [(x.verdict, x.reaction_s) for x in of(ComplianceCheck, out)] == [(ComplianceVerdict.LATE, 20.0)]

    t2 = t1 + timedelta(seconds=30)
    h.feed(c.StatusChanged("CP-B", 1, t2, c.ConnectorState.AVAILABLE), t2)  # B leaves: A back to 24 A ...
    h.feed(c.BuildingLoad(SITE, t2, 0.0, current_l1_a=10, current_l2_a=10, current_l3_a=10), t2)  # ... then 14 A
    h.feed(sample(t2 + timedelta(seconds=5), 20.0), t2 + timedelta(seconds=5))
    assert of(ComplianceCheck, h.tick(t2 + timedelta(seconds=30))) == []
    out = h.tick(t2 + timedelta(seconds=61))
    assert [x.verdict for x in of(ComplianceCheck, out)] == [ComplianceVerdict.VIOLATED]
    (alert,) = [a for a in of(c.Alert, out) if a.kind == "setpoint_violated"]
    assert "still draws 20.0 A, over its 14.0 A limit" in alert.message


def test_a_rejected_profile_is_recorded_alerted_and_sent_again_at_the_next_decision() -> None:
    h = Harness(auto_accept=False)
    h.feed(SiteConfigUpdate(SITE, config(25)), T0)
    (command,) = of(c.Command, h.plug_in("CP-A", T0))
    out = h.feed(c.CommandResult(command.command_id, "CP-A", T0, c.CommandOutcome.REJECTED, "Rejected"), T0)
    assert [x.verdict for x in of(ComplianceCheck, out)] == [ComplianceVerdict.REJECTED]
    assert [a.kind for a in of(c.Alert, out)] == ["setpoint_rejected"]
    assert limits(out) == {}, "not asked again at once"
    out = h.tick(T0 + timedelta(seconds=5))
    assert limits(out) == {"CP-A": 24.0}, "not installed: sent again"


def test_decreases_go_first_and_increases_wait_for_their_confirmation() -> None:
    h = Harness(auto_accept=False)
    h.feed(SiteConfigUpdate(SITE, config(30)), T0)
    (first,) = of(c.Command, h.plug_in("CP-A", T0))
    h.feed(c.CommandResult(first.command_id, "CP-A", T0, c.CommandOutcome.ACCEPTED, "Accepted"), T0)
    out = h.plug_in("CP-B", T0 + timedelta(seconds=1), tx="2")  # A 29 -> 14.5 and B new at 14.5: both lower
    assert limits(out) == {"CP-A": 14.5, "CP-B": 14.5}
    by_charger = {cmd.charger_id: cmd for cmd in of(c.Command, out)}
    at = T0 + timedelta(seconds=2)
    # B switches to Boost: A goes down to 13, B up to 16. Only A's decrease goes out ...
    boost = config(30, modes={("CP-B", 1): "boost"}, version="v2")
    for cmd in by_charger.values():
        h.feed(c.CommandResult(cmd.command_id, cmd.charger_id, at, c.CommandOutcome.ACCEPTED, "Accepted"), at)
    out = h.feed(SiteConfigUpdate(SITE, boost), at)
    assert limits(out) == {"CP-A": 13.0}
    (lower,) = of(c.Command, out)
    # ... B's increase follows once A has confirmed.
    out = h.feed(c.CommandResult(lower.command_id, "CP-A", at, c.CommandOutcome.ACCEPTED, "Accepted"), at)
    assert limits(out) == {"CP-B": 16.0}


def test_a_stale_building_meter_falls_back_to_the_safe_cap_with_an_alert_and_recovers() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(40, meter=True)), T0)
    h.feed(c.BuildingLoad(SITE, T0, 0.0, current_l1_a=1, current_l2_a=1, current_l3_a=1), T0)
    assert limits(h.plug_in("CP-A", T0)) == {"CP-A": 32.0}
    assert next_wakeup(h.state, CFG) == T0 + CFG.redecide_every  # type: ignore[arg-type]
    out = h.tick(T0 + timedelta(seconds=31))  # the meter's 30 s timeout has passed
    assert limits(out) == {"CP-A": 6.0}
    (alert,) = of(c.Alert, out)
    assert (alert.kind, alert.state, alert.severity) == ("stale_building_load", c.AlertState.OPEN, c.Severity.WARNING)
    at = T0 + timedelta(seconds=40)
    out = h.feed(c.BuildingLoad(SITE, at, 0.0, current_l1_a=1, current_l2_a=1, current_l3_a=1), at)
    assert limits(out) == {"CP-A": 32.0}
    (resolved,) = of(c.Alert, out)
    assert (resolved.alert_id, resolved.state) == (alert.alert_id, c.AlertState.RESOLVED)


def test_unplugging_forgets_the_limit_and_a_reboot_resends_it() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(25)), T0)
    h.plug_in("CP-A", T0)
    assert limits(h.feed(c.ConnectionEvent("CP-A", T0, c.ConnectionKind.BOOTED), T0)) == {"CP-A": 24.0}
    h.feed(c.TransactionEvent("CP-A", 1, T0, c.TransactionKind.ENDED, "1"), T0)
    h.feed(c.StatusChanged("CP-A", 1, T0, c.ConnectorState.AVAILABLE), T0)
    assert h.state is not None and h.state.sent == {}
    assert limits(h.plug_in("CP-A", T0 + timedelta(minutes=1), tx="3")) == {"CP-A": 24.0}


def test_rules_cap_by_name() -> None:
    rule = {"id": "evening", "name": "Limit to 10 A after 18:00", "action": {"kind": "cap_current", "current_a": 10},
            "condition": {"schedule": {"zone": "UTC", "start": "18:00", "end": "00:00"}}}
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(40, rules=[rule])), T0)
    assert limits(h.plug_in("CP-A", T0)) == {"CP-A": 32.0}
    at = T0 + timedelta(hours=1)
    h.feed(c.ConnectionEvent("CP-A", at, c.ConnectionKind.HEARTBEAT), at)  # still talking (else: offline)
    out = h.tick(at)  # 18:00 UTC: the rule's window opens
    assert limits(out) == {"CP-A": 10.0}
    assert [d.reason for d in of(ControlDecision, out)] == ["Limit to 10 A after 18:00"]


def test_events_before_the_placement_are_held_and_forwarded() -> None:
    status = c.StatusChanged("CP-A", 1, T0, c.ConnectorState.PREPARING)
    sample = c.MeterSample("CP-A", 1, T0, current_a=3.0)
    state, out = route(None, status)
    state, out2 = route(state, sample)
    assert out == out2 == []
    state, out = route(state, Placement("CP-A", SITE))
    assert out == [Routed(SITE, status)]  # the newest status per connector; old samples are not replayed
    assert route(state, sample)[1] == [Routed(SITE, sample)]
    assert route(state, Placement("CP-A", None))[1] == []


def test_config_diff_emits_placements_and_sites() -> None:
    one, two = config(version="v1"), config(version="v2")
    assert diff_configs({}, {SITE: one}) == [Placement("CP-A", SITE), Placement("CP-B", SITE),
                                             SiteConfigUpdate(SITE, one)]
    assert diff_configs({SITE: one}, {SITE: one}) == []
    assert diff_configs({SITE: one}, {SITE: two}) == [SiteConfigUpdate(SITE, two)]
    assert diff_configs({SITE: one}, {}) == [Placement("CP-A", None), Placement("CP-B", None),
                                             SiteConfigUpdate(SITE, None)]


def _recorded_day() -> list[tuple[datetime, ControlInput | c.Event]]:
    """A day at a site: arrivals, modes, a rule window, building-load swings, departures."""
    day: list[tuple[datetime, ControlInput | c.Event]] = [(T0 - timedelta(hours=17), SiteConfigUpdate(
        SITE, config(40, meter=True, modes={("CP-B", 1): "eco"})))]
    t = T0 - timedelta(hours=17)
    for minute in range(0, 24 * 60, 7):
        at = t + timedelta(minutes=minute)
        amps = 5 + (minute * 37 % 23)
        day.append((at, c.BuildingLoad(SITE, at, 0.0, current_l1_a=amps, current_l2_a=amps / 2, current_l3_a=3)))
    for charger, start, hours, tx in (("CP-A", 2, 5, "1"), ("CP-B", 3, 8, "2"), ("CP-A", 14, 3, "3")):
        at = t + timedelta(hours=start)
        day.append((at, c.StatusChanged(charger, 1, at, c.ConnectorState.PREPARING)))
        day.append((at, c.TransactionEvent(charger, 1, at, c.TransactionKind.STARTED, tx)))
        end = at + timedelta(hours=hours)
        for minute in range(2, hours * 60, 2):  # the charger's meter values: it is alive, not offline
            seen = at + timedelta(minutes=minute)
            day.append((seen, c.MeterSample(charger, 1, seen, energy_wh=minute * 100.0, received_at=seen)))
        day.append((end, c.TransactionEvent(charger, 1, end, c.TransactionKind.ENDED, tx)))
        day.append((end, c.StatusChanged(charger, 1, end, c.ConnectorState.AVAILABLE)))
    return sorted(day, key=lambda pair: pair[0])


def _replay(day: list[tuple[datetime, ControlInput | c.Event]]) -> list[Output]:
    h = Harness()
    for at, item in day:
        h.feed(item, at)
    return h.out


def test_replaying_a_recorded_day_reproduces_the_same_decisions_and_never_exceeds_the_breaker() -> None:
    day = _recorded_day()
    first, second = _replay(day), _replay(day)
    assert first == second
    decisions = of(ControlDecision, first)
    assert len(decisions) > 20
    # Rebuild the site's load over the day: building load + the limits of the cars plugged in at
    # every decision stay under 40 - 1 A on L1 (the allocation's own property tests cover the rest).
    limit_now: dict[str, float] = {}
    for decision in decisions:
        limit_now[decision.charger_id] = decision.new_limit_a
        seen = [(at, x) for at, x in day if at <= decision.ts]
        plugged = {x.charger_id for _, x in seen if isinstance(x, c.StatusChanged)
                   and x.status is c.ConnectorState.PREPARING} - {
            x.charger_id for _, x in seen if isinstance(x, c.StatusChanged) and x.status is c.ConnectorState.AVAILABLE
            and x.ts > max(y.ts for _, y in seen if isinstance(y, c.StatusChanged) and y.charger_id == x.charger_id
                           and y.status is c.ConnectorState.PREPARING)}
        loads = [x for _, x in seen if isinstance(x, c.BuildingLoad)]
        building = loads[-1].current_l1_a or 0.0
        in_use = sum(limit for charger, limit in limit_now.items() if charger in plugged)
        assert building + in_use <= 39.0 + 1e-6, (decision, limit_now, plugged, building)


@pytest.mark.parametrize("batch", [1, 7])
def test_the_flow_routes_events_to_the_control_step_and_commands_to_the_sink(batch: int) -> None:
    events: list[c.Event] = [
        c.StatusChanged("CP-A", 1, T0, c.ConnectorState.PREPARING, received_at=T0),
        c.TransactionEvent("CP-A", 1, T0, c.TransactionKind.STARTED, "7", received_at=T0),
        c.BuildingLoad(SITE, T0, 0.0, current_l1_a=10, current_l2_a=10, current_l3_a=10),
    ]
    messages = [MqttMessage(topic_for(e), c.encode(e), T0) for e in events]
    stored: list[Any] = []
    commands: list[c.Command] = []
    parts = FlowParts(source=TestingSource(messages, batch_size=batch), timescale=TestingSink(stored), lake=None,
                      live=None, control_config=TestingSource(diff_configs({}, {SITE: config(30)})),
                      commands=TestingSink(commands), clock=lambda: T0)
    run_main(build_dataflow(parts))
    assert commands and commands[-1].params["limit"] == 19.0  # 30 - 1 margin - 10 building load
    assert of(ControlDecision, stored) and of(c.Setpoint, stored)
    assert of(c.BuildingLoad, stored), "building loads are stored as raw history"


def test_increases_stop_waiting_for_a_confirmation_that_does_not_come() -> None:
    h = Harness(auto_accept=False)
    h.feed(SiteConfigUpdate(SITE, config(30)), T0)
    for charger, tx in (("CP-A", "1"), ("CP-B", "2")):
        for cmd in of(c.Command, h.plug_in(charger, T0, tx=tx)):
            h.feed(c.CommandResult(cmd.command_id, cmd.charger_id, T0, c.CommandOutcome.ACCEPTED, "Accepted"), T0)
    at = T0 + timedelta(seconds=2)
    out = h.feed(SiteConfigUpdate(SITE, config(30, modes={("CP-B", 1): "boost"}, version="v2")), at)
    assert limits(out) == {"CP-A": 13.0}  # its result never comes
    assert h.state is not None and next_wakeup(h.state, CFG) == at + CFG.confirm_wait
    assert limits(h.tick(at + CFG.confirm_wait)) == {"CP-B": 16.0}


def test_the_recovery_snapshot_is_equal_independent_and_shares_the_configuration() -> None:
    h = Harness(auto_accept=False)
    h.feed(SiteConfigUpdate(SITE, config(30, meter=True)), T0)
    h.feed(c.BuildingLoad(SITE, T0, 0.0, current_l1_a=3, current_l2_a=3, current_l3_a=3), T0)
    h.plug_in("CP-A", T0)
    h.feed(c.MeterSample("CP-A", 1, T0, current_l1_a=9.0, received_at=T0), T0)
    assert h.state is not None
    snap = h.state.snapshot()
    assert snap == h.state and snap.config is h.state.config
    assert pickle.loads(pickle.dumps(snap)) == snap  # noqa: S301 - our own bytes, as Bytewax recovery does
    h.feed(c.MeterSample("CP-A", 1, T0, current_l1_a=20.0, received_at=T0), T0)
    h.plug_in("CP-B", T0, tx="2")
    assert snap.connectors[("CP-A", 1)].measured_current_a == 9.0 and ("CP-B", 1) not in snap.connectors
    assert snap.sent.keys() == {("CP-A", 1)} and snap != h.state


def test_a_departure_at_risk_gets_priority_until_it_is_safe() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, config(30)), T0)
    h.plug_in("CP-A", T0)
    assert limits(h.plug_in("CP-B", T0, tx="2")) == {"CP-A": 14.5, "CP-B": 14.5}
    # B must leave in 1 h with 12 kWh more: 14.5 A x 3 x 230 V = 10 kWh/h is not enough.
    leaving = Departure(T0 + timedelta(hours=1), energy_wh=12_000)
    at = T0 + timedelta(seconds=1)
    risky = build_config(site=site_mapping(30), version="v2", departures={("CP-B", 1): leaving})
    out = h.feed(SiteConfigUpdate(SITE, risky), at)
    assert limits(out) == {"CP-A": 13.0, "CP-B": 16.0}  # B first, at its hardware cap
    # Once B has what it needs, the deadline is no longer at risk: back to fair share.
    h.feed(c.MeterSample("CP-B", 1, at, energy_wh=1_000.0, received_at=at), at)
    later = at + timedelta(minutes=10)
    h.feed(c.MeterSample("CP-B", 1, later, energy_wh=13_500.0, received_at=later), later)
    h.feed(c.MeterSample("CP-A", 1, later, energy_wh=500.0, received_at=later), later)  # A is alive too
    assert limits(h.tick(later + timedelta(seconds=5))) == {"CP-A": 14.5, "CP-B": 14.5}
