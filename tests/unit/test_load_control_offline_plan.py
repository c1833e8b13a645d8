"""The control step with silent chargers and with departures planned on a time-of-use tariff."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_load_control import CFG, SITE, T0, Harness, limits, of, site_mapping

from control import contract as c
from control.allocation import ConnectorDemand, Reservation, Snapshot, decide
from control.planning import PlannedSlot, departure_advice, plan_reason
from control.presence import OFFLINE_REASON, is_offline, offline_timeout, reserved_current_a
from control.records import ControlDecision
from control.schedules import Weekday, WeeklyWindow, zone_of
from control.site import SiteModelError, site_from_mapping
from control.site_config import (
    ControlSettings,
    Departure,
    DeparturePlanning,
    build_config,
    settings_from_mapping,
    settings_to_mapping,
)
from control.tariffs import PriceWindow, Tariff, TariffVersion, price_intervals
from pipelines.load_control import SiteConfigUpdate, SiteControl, next_wakeup

EVERY_DAY = frozenset(Weekday)


def alive(h: Harness, charger: str, at: datetime) -> list[Any]:
    return h.feed(c.ConnectionEvent(charger, at, c.ConnectionKind.HEARTBEAT), at)


def offline_config(control: dict[str, Any] | None = None, version: str = "v1") -> Any:
    mapping = site_mapping(30)
    if control is not None:
        mapping["control"] = control
    return build_config(site=mapping, version=version)


# --------------------------------------------------------------------------- pure pieces


def test_offline_timeout_comes_from_the_site_else_the_heartbeat() -> None:
    assert offline_timeout(45, 300) == timedelta(seconds=45)
    assert offline_timeout(None, 30) == timedelta(seconds=90)
    assert offline_timeout(None, None) == timedelta(seconds=180)  # 3 x the 60 s default heartbeat
    assert not is_offline(None, timedelta(seconds=1), T0)  # never heard: nothing to time from
    assert not is_offline(T0, timedelta(seconds=180), T0 + timedelta(seconds=180))
    assert is_offline(T0, timedelta(seconds=180), T0 + timedelta(seconds=181))
    assert reserved_current_a(16, 32, None) == 16
    assert reserved_current_a(None, 32, None) == 32  # no limit ever sent: it may draw its maximum
    assert reserved_current_a(16, 32, 6) == 6
    assert reserved_current_a(16, 32, 0) == 0


def test_control_settings_parse_round_trip_and_refuse_typos() -> None:
    parsed = settings_from_mapping({"offline_timeout_s": 120, "offline_fallback_a": 0,
                                    "departure_planning": "standard_and_eco"})
    assert parsed == ControlSettings(120, 0, DeparturePlanning.STANDARD_AND_ECO)
    assert settings_from_mapping(settings_to_mapping(parsed)) == parsed
    assert settings_from_mapping(None) == ControlSettings()
    for bad in ({"offline_timout_s": 1}, {"offline_timeout_s": 0}, {"offline_fallback_a": -1},
                {"departure_planning": "cheap"}):
        with pytest.raises(SiteModelError):
            settings_from_mapping(bad)
    assert offline_config({"offline_timeout_s": 90}).settings.offline_timeout_s == 90


def test_a_reservation_is_taken_off_every_circuit_the_charger_draws_through() -> None:
    site = site_from_mapping(site_mapping(30))
    demand = ConnectorDemand("CP-A", 1, T0)
    alone = decide(Snapshot(site, (demand,)), T0)
    assert alone.connector("CP-A", 1).limit_a == 29.0
    held = decide(Snapshot(site, (demand,), reservations=(Reservation("CP-B", 1, 10.0),)), T0)
    assert held.connector("CP-A", 1).limit_a == 19.0
    assert any(i.kind == "reserved" and i.subject == "CP-B/1" for i in held.inputs)


# --------------------------------------------------------------------------- offline chargers in the step


def test_a_silent_charger_gives_its_share_to_the_others_by_the_timer_and_is_audited() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, offline_config({"offline_fallback_a": 0})), T0)
    h.plug_in("CP-A", T0)
    assert limits(h.plug_in("CP-B", T0, tx="2")) == {"CP-A": 14.5, "CP-B": 14.5}
    assert h.state is not None
    # The timer wakes when B's silence reaches the timeout (3 x 60 s), nothing else arriving.
    for second in range(60, 180, 60):
        alive(h, "CP-A", T0 + timedelta(seconds=second))
    wake = next_wakeup(h.state, CFG)
    assert wake is not None and wake <= T0 + timedelta(seconds=180)
    assert limits(h.tick(T0 + timedelta(seconds=180))) == {}  # not yet: silent for exactly the timeout
    alive(h, "CP-A", T0 + timedelta(seconds=181))
    out = h.tick(T0 + timedelta(seconds=181))
    assert limits(out) == {"CP-A": 29.0}  # B's share goes to A; nothing is sent to B
    assert not [cmd for cmd in of(c.Command, out) if cmd.charger_id == "CP-B"]
    (audit,) = [d for d in of(ControlDecision, out) if d.charger_id == "CP-B"]
    assert (audit.reason, audit.old_limit_a, audit.new_limit_a, audit.command_id) == (OFFLINE_REASON, 14.5, 0.0,
                                                                                      None)
    assert audit.inputs["last_heard:CP-B"]["age_s"] == 181.0
    assert [d for d in of(ControlDecision, h.tick(T0 + timedelta(seconds=186))) if d.charger_id == "CP-B"] == []
    # B speaks again: re-allocated at once, A's decrease goes first, B's raise after A accepted.
    back = T0 + timedelta(seconds=200)
    h.auto_accept = False
    out = h.feed(c.MeterSample("CP-B", 1, back, current_a=0.0, received_at=back), back)
    assert limits(out) == {"CP-A": 14.5}  # B's 14.5 A is unchanged: it still has it installed
    (cmd,) = of(c.Command, out)
    h.feed(c.CommandResult(cmd.command_id, "CP-A", back, c.CommandOutcome.ACCEPTED, "Accepted"), back)
    assert h.state.offline == {}


def test_by_default_an_offline_charger_keeps_the_limit_it_may_still_apply() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, offline_config({"offline_timeout_s": 30})), T0)
    h.plug_in("CP-A", T0)
    h.plug_in("CP-B", T0, tx="2")
    at = T0 + timedelta(seconds=31)
    alive(h, "CP-A", at)
    out = h.tick(at)
    (audit,) = of(ControlDecision, out)
    assert audit.charger_id == "CP-B" and audit.new_limit_a == 14.5 and audit.reason.startswith(OFFLINE_REASON)
    assert limits(out) == {}  # A may not grow into what B may still draw


def test_a_disconnect_alone_does_not_make_a_charger_offline() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, offline_config({"offline_fallback_a": 0})), T0)
    h.plug_in("CP-A", T0)
    h.plug_in("CP-B", T0, tx="2")
    at = T0 + timedelta(seconds=10)
    h.feed(c.ConnectionEvent("CP-B", at, c.ConnectionKind.DISCONNECTED), at)
    alive(h, "CP-A", at)
    assert of(ControlDecision, h.tick(at + timedelta(seconds=5))) == []


def test_the_boot_heartbeat_interval_sets_the_timeout_and_old_snapshots_resume() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, offline_config({"offline_fallback_a": 0})), T0)
    h.feed(c.ConnectionEvent("CP-B", T0, c.ConnectionKind.BOOTED, heartbeat_interval_s=10), T0)
    h.plug_in("CP-A", T0)
    h.plug_in("CP-B", T0, tx="2")
    at = T0 + timedelta(seconds=31)  # 3 x 10 s
    alive(h, "CP-A", at)
    assert limits(h.tick(at)) == {"CP-A": 29.0}
    assert h.state is not None
    old = h.state.snapshot().__dict__.copy()
    for name in ("heard", "heartbeat_s", "offline", "clock_edge"):
        del old[name]
    resumed = SiteControl.__new__(SiteControl)
    resumed.__setstate__(old)
    assert resumed.heard == {} and resumed.offline == {}
    assert pickle.loads(pickle.dumps(h.state.snapshot())) == h.state  # noqa: S301 - our own bytes


# --------------------------------------------------------------------------- the departure plan


def off_peak_tariff(zone: str = "UTC") -> Tariff:
    """0.40 EUR/kWh, 0.21 from 23:00 to 05:00."""
    window = PriceWindow(WeeklyWindow(time(23), time(5), EVERY_DAY), Decimal("0.21"), "off-peak")
    return Tariff("tou", "EUR", zone, (TariffVersion(datetime(2026, 1, 1, tzinfo=UTC), Decimal("0.40"),
                                                     Decimal("0.19"), (window,)),))


def test_the_plan_advice_holds_outside_the_cheap_window_and_charges_inside() -> None:
    tariff = off_peak_tariff()
    departure = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    prices = price_intervals(tariff, T0, departure)
    kwargs: dict[str, Any] = {"max_current_a": 16, "min_current_a": 6, "phases": 3, "prices": prices,
                              "zone": zone_of("UTC")}
    before = departure_advice(datetime(2026, 11, 26, 22, 59, tzinfo=UTC), departure, 20_000, **kwargs)
    assert before is not None and not before.charge_now and not before.at_risk
    assert before.reason == "Off-peak plan: charging 23:00–01:00 at 0.21 EUR/kWh"  # 1 h 49 min at 11 kW
    assert before.next_change == datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    inside = departure_advice(datetime(2026, 11, 26, 23, 0, tzinfo=UTC), departure, 20_000, **kwargs)
    assert inside is not None and inside.charge_now and inside.cap_a == 16
    # Not enough time left even at full power: no holding, the deadline takes over.
    risky = departure_advice(datetime(2026, 11, 27, 4, 0, tzinfo=UTC), departure, 40_000, **kwargs)
    assert risky is not None and risky.at_risk and risky.charge_now
    # One price for all the time left: waiting saves nothing, no plan (the step's own risk check applies).
    assert departure_advice(datetime(2026, 11, 27, 6, 0, tzinfo=UTC), departure, 20_000, **kwargs) is None
    assert departure_advice(T0, departure, 0, **kwargs) is None
    flat = price_intervals(Tariff("flat", "EUR", "UTC", (TariffVersion(datetime(2026, 1, 1, tzinfo=UTC),
                                                                       Decimal("0.30"), Decimal(0)),)), T0, departure)
    assert departure_advice(T0, departure, 20_000, **{**kwargs, "prices": flat}) is None  # nothing to save


def test_the_plan_reason_uses_local_time() -> None:
    slot = PlannedSlot(datetime(2026, 11, 26, 22, 0, tzinfo=UTC), datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
                       11_040.0, 1.0, Decimal("0.2134"))
    assert plan_reason(slot, zone_of("Europe/Berlin"), "EUR") == "Off-peak plan: charging 23:00–05:00 at 0.2134 EUR/kWh"


def plan_config(mode: str = "eco", planning: str | None = None, energy_wh: float = 20_000,
                version: str = "v1") -> Any:
    mapping = site_mapping(30)
    if planning is not None:
        mapping["control"] = {"departure_planning": planning}
    departure = Departure(datetime(2026, 11, 27, 7, 0, tzinfo=UTC), energy_wh=energy_wh)
    return build_config(site=mapping, modes={("CP-A", 1): mode}, version=version, departures={("CP-A", 1): departure},
                        tariffs={"CP-A": off_peak_tariff(), "CP-B": off_peak_tariff()})


def test_an_eco_departure_is_held_until_the_window_and_charges_across_its_edge() -> None:
    h = Harness()
    h.feed(SiteConfigUpdate(SITE, plan_config()), T0)
    out = h.plug_in("CP-A", T0)
    assert limits(out) == {"CP-A": 0.0}
    (audit,) = of(ControlDecision, out)
    assert audit.paused and audit.reason == "Off-peak plan: charging 23:00–01:00 at 0.21 EUR/kWh"
    # (Eco: 16 A x 3 x 230 V = 11 kWh/h, 20 kWh in 1 h 49 min, on the 15-minute grid.)
    edge = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert h.state is not None
    last = edge - timedelta(seconds=1)
    alive(h, "CP-A", last)
    assert limits(h.tick(last)) == {}
    alive(h, "CP-A", edge)
    assert next_wakeup(h.state, CFG) == edge
    out = h.tick(edge)
    assert limits(out) == {"CP-A": 16.0}
    assert [d.reason for d in of(ControlDecision, out)] == ["Off-peak plan: charging 23:00–01:00 at 0.21 EUR/kWh"]


def test_standard_mode_is_planned_only_when_the_site_says_so_and_boost_never() -> None:
    for mode, planning, expected in (("standard", None, 29.0), ("standard", "standard_and_eco", 0.0),
                                     ("boost", "standard_and_eco", 29.0), ("eco", "off", 16.0)):
        h = Harness()
        h.feed(SiteConfigUpdate(SITE, plan_config(mode, planning)), T0)
        assert limits(h.plug_in("CP-A", T0)) == {"CP-A": expected}, (mode, planning)


def test_a_plan_that_cannot_meet_the_deadline_charges_now_with_priority() -> None:
    h = Harness()
    # 200 kWh in 14 h at Eco's 11 kW is not possible even in every slot.
    h.feed(SiteConfigUpdate(SITE, plan_config(energy_wh=200_000)), T0)
    h.plug_in("CP-B", T0, tx="2")
    out = h.plug_in("CP-A", T0)
    assert limits(out) == {"CP-A": 23.0, "CP-B": 6.0}  # at risk: Eco's cap lifted, above Standard
