"""pipelines.load_control with external limits (ChargingLimit from the chargers): capped at once,
the freed capacity shared, audited, alerted when grid critical, gone when cleared or ended, and
the same outputs on a replay. No Bytewax, no services."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import EVENT_STRATEGIES

from control import contract as c
from control.records import ControlDecision
from control.site_config import build_config
from pipelines.load_control import (
    ControlConfig,
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

T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
SITE = "home-1"
CFG = ControlConfig()
SO = c.ChargingLimitSource.SO


def config() -> Any:
    return build_config(site={
        "site_id": SITE, "circuits": [{"id": "main", "limit_a": 33}],
        "chargers": [{"id": "CP-A", "circuit": "main", "max_current_a": 32},
                     {"id": "CP-B", "circuit": "main", "max_current_a": 32}],
    }, modes=None, rules=[], version="v1")


class Site:
    """One site's control step; every command is answered "accepted" at once."""

    def __init__(self) -> None:
        self.state: SiteControl | None = None
        self.out: list[Output] = []

    def feed(self, item: Any, at: datetime) -> list[Output]:
        if isinstance(item, c.Event) and not isinstance(item, c.BuildingLoad):
            item = Routed(SITE, item)
        self.state, out = control_step(self.state, item, at, CFG)
        return self._done(out, at)

    def tick(self, at: datetime) -> list[Output]:
        assert self.state is not None
        self.state, out = on_timer(self.state, at, CFG)
        return self._done(out, at)

    def _done(self, out: list[Output], at: datetime) -> list[Output]:
        self.out.extend(out)
        more: list[Output] = []
        for command in [o for o in out if isinstance(o, c.Command)]:
            more += self.feed(c.CommandResult(command.command_id, command.charger_id, at, c.CommandOutcome.ACCEPTED,
                                              "Accepted"), at)
        return out + more

    def start(self) -> None:
        self.feed(SiteConfigUpdate(SITE, config()), T0)
        for n, charger in enumerate(("CP-A", "CP-B")):
            self.feed(c.StatusChanged(charger, 1, T0, c.ConnectorState.PREPARING), T0)
            self.feed(c.TransactionEvent(charger, 1, T0, c.TransactionKind.STARTED, f"tx{n}"), T0)


def of(kind: type[Any], items: list[Output]) -> list[Any]:
    return [x for x in items if isinstance(x, kind)]


def limits(items: list[Output]) -> dict[str, float]:
    return {s.charger_id: s.limit for s in of(c.Setpoint, items)}


def so_limit(amps: float = 8.0, *, at: datetime = T0, evse: int = 1, duration_s: int | None = None,
             critical: bool = True, charger: str = "CP-A") -> c.ChargingLimit:
    return c.ChargingLimit(charger, at, SO, connector_id=evse, grid_critical=critical, unit=c.RateUnit.WATTS,
                           duration_s=duration_s, period_starts_s=(0,), period_limits=(amps * 690,),
                           period_phases=(None,))


def test_a_grid_operator_limit_caps_the_charger_the_other_gets_the_rest_and_clearing_restores() -> None:
    site = Site()
    site.start()
    assert limits(site.out) == {"CP-A": 16.0, "CP-B": 16.0}
    at = T0 + timedelta(seconds=10)
    out = site.feed(so_limit(8.0, at=at), at)  # 5520 W on 3 x 230 V: 8 A per phase
    assert limits(out) == {"CP-A": 8.0, "CP-B": 24.0}
    decisions = {d.charger_id: d for d in of(ControlDecision, out)}
    assert decisions["CP-A"].reason == "Limited by grid operator (SO)"
    assert decisions["CP-A"].binding == "external"
    assert decisions["CP-A"].inputs["external_limit_event:CP-A/1"]["value"] == "set SO: 5520 W, grid critical"
    assert decisions["CP-A"].inputs["external_limit:CP-A/1"]["value"].startswith("8 A: Limited by grid operator")
    assert "external_limit:CP-A/1" in decisions["CP-B"].inputs  # the other's decision says why it got more
    (alert,) = of(c.Alert, out)
    assert (alert.kind, alert.state, alert.severity, alert.charger_id, alert.site_id) == (
        "grid_critical_limit", c.AlertState.OPEN, c.Severity.WARNING, "CP-A", SITE)
    assert "grid operator (SO)" in alert.message

    later = at + timedelta(seconds=20)
    out = site.feed(c.ChargingLimit("CP-A", later, SO, cleared=True, connector_id=1), later)
    assert limits(out) == {"CP-A": 16.0, "CP-B": 16.0}
    (resolved,) = of(c.Alert, out)
    assert (resolved.alert_id, resolved.state) == (alert.alert_id, c.AlertState.RESOLVED)
    line = next(d for d in of(ControlDecision, out) if d.charger_id == "CP-A")
    assert line.inputs["external_limit_event:CP-A/1"]["value"].startswith("cleared SO")
    assert not site.state.external  # type: ignore[union-attr]


def test_a_limit_that_does_not_bind_is_still_audited_without_a_command() -> None:
    site = Site()
    site.start()
    at = T0 + timedelta(seconds=10)
    out = site.feed(so_limit(20.0, at=at, critical=False), at)
    assert not of(c.Command, out) and not of(c.Alert, out)
    (line,) = of(ControlDecision, out)
    assert (line.charger_id, line.old_limit_a, line.new_limit_a, line.command_id) == ("CP-A", 16.0, 16.0, None)
    assert line.reason == "Limited by site"
    assert line.inputs["external_limit_event:CP-A/1"]["value"] == "set SO: 13800 W"


def test_the_schedule_end_wakes_the_timer_and_gives_the_capacity_back() -> None:
    site = Site()
    site.start()
    at = T0 + timedelta(seconds=10)
    site.feed(so_limit(8.0, at=at, duration_s=30), at)
    assert site.state is not None
    assert next_wakeup(site.state, CFG) == at + timedelta(seconds=5)  # the usual timer comes first ...
    site.tick(at + timedelta(seconds=25))
    assert next_wakeup(site.state, CFG) == at + timedelta(seconds=30)  # ... then exactly the end
    assert limits(site.tick(at + timedelta(seconds=29))) == {}
    out = site.tick(at + timedelta(seconds=30))
    assert limits(out) == {"CP-A": 16.0, "CP-B": 16.0}
    assert [a.state for a in of(c.Alert, out)] == [c.AlertState.RESOLVED]
    assert "ended" in of(c.Alert, out)[0].message


def test_a_whole_charger_limit_arriving_before_the_site_is_known_is_held_and_applied() -> None:
    state, out = route(None, so_limit(0.0, evse=0, critical=False))
    assert out == []
    state, out = route(state, Placement("CP-A", SITE))
    assert [type(r.event) for r in out] == [c.ChargingLimit]
    site = Site()
    site.feed(SiteConfigUpdate(SITE, config()), T0)
    site.feed(out[0], T0)
    at = T0 + timedelta(seconds=1)
    site.feed(c.StatusChanged("CP-A", 1, at, c.ConnectorState.PREPARING), at)
    decisions = of(ControlDecision, site.out)
    assert decisions[-1].paused and decisions[-1].reason == (
        "Paused: Limited by grid operator (SO) (below the 6 A minimum)")


def test_replaced_by_a_non_critical_limit_resolves_the_alert_and_a_replay_is_identical() -> None:
    def run() -> list[Output]:
        site = Site()
        site.start()
        at = T0 + timedelta(seconds=10)
        site.feed(so_limit(8.0, at=at), at)
        site.feed(so_limit(10.0, at=at + timedelta(seconds=1)), at + timedelta(seconds=1))  # still critical
        site.feed(so_limit(12.0, at=at + timedelta(seconds=2), critical=False), at + timedelta(seconds=2))
        site.tick(at + timedelta(seconds=7))
        assert site.state is not None
        restored = pickle.loads(pickle.dumps(site.state.snapshot()))  # noqa: S301 - our own bytes: recovery keeps the limits
        assert restored.external == site.state.external
        return site.out

    first = run()
    alerts = of(c.Alert, first)
    assert [a.state for a in alerts] == [c.AlertState.OPEN, c.AlertState.RESOLVED]
    assert alerts[0].alert_id == alerts[1].alert_id and "no longer grid critical" in alerts[1].message
    assert [s.limit for s in of(c.Setpoint, first) if s.charger_id == "CP-A"][-1] == 12.0
    assert run() == first  # deterministic: same inputs, same outputs (ids included)


def test_an_old_recovery_snapshot_resumes_without_external_limits() -> None:
    site = Site()
    site.start()
    assert site.state is not None
    state = site.state.__dict__.copy()
    for name in ("external", "external_changes", "external_pending", "external_alerts"):
        del state[name]
    resumed = SiteControl.__new__(SiteControl)
    resumed.__setstate__(state)
    assert resumed.external == {} and resumed.external_alerts == {}


@settings(max_examples=60, deadline=None)
@given(events=st.lists(EVENT_STRATEGIES["charging_limit"], min_size=1, max_size=5),
       chargers=st.lists(st.sampled_from(["CP-A", "CP-B", "CP-X"]), min_size=5, max_size=5))
def test_any_valid_charging_limit_is_taken_without_breaking_the_site(events: list[c.ChargingLimit],
                                                                     chargers: list[str]) -> None:
    site = Site()
    site.start()
    for i, (event, charger) in enumerate(zip(events, chargers, strict=False)):
        at = T0 + timedelta(seconds=10 + i)
        site.feed(dataclasses.replace(event, charger_id=charger), at)
    site.tick(T0 + timedelta(hours=1))
    assert site.state is not None
    latest: dict[str, float] = {}
    for setpoint in of(c.Setpoint, site.out):
        latest[setpoint.charger_id] = setpoint.limit
        assert sum(latest.values()) <= 32.0 + 1e-9  # the breaker holds whatever the chargers report
