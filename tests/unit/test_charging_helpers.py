"""Pure helpers of the charging services: banners, per-mode current and ETA, timelines, load series."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from control.contract import ChargingMode
from control.modes import EtaStatus
from control.records import LiveState, LiveStatus
from control.rules import Action, Condition, Rule, Scope
from control.schedules import Schedule, WeeklyWindow
from dashboards.charging_load_service import ev_limit_series, stale_reason
from dashboards.charging_rules_service import affected_chargers, preset_mapping, week_timeline
from dashboards.charging_service import constraint_banners, effective_status, mode_current_a, mode_etas
from warehouse.charging_store import AuditRow, BuildingLoadPoint, ConnectorRow, LatestDecision, LimitInForce

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday


def _row(**kw: object) -> ConnectorRow:
    live = LiveState("C1", 1, LiveStatus.CHARGING, NOW, current_a=16.0, soc_pct=50.0)
    base = ConnectorRow("C1", 1, "Bay", "s1", live, ChargingMode.STANDARD, 16.0, 1, None, None, None)
    return replace(base, **kw)  # type: ignore[arg-type]


def _decision(binding: str, limit_a: float = 16.0, state: str = "normal", reason: str = "r") -> LatestDecision:
    return LatestDecision(NOW, limit_a, False, reason, binding, state)


def test_banners_name_the_hardware_cap_the_site_and_the_fallback() -> None:
    assert constraint_banners(_row(), []) == ()
    assert constraint_banners(_row(decision=_decision("hardware")), []) == ("Hardware cap is 16 A",)
    assert constraint_banners(_row(decision=_decision("cable", 13)), [])[0] == "Hardware cap is 16 A"
    site = constraint_banners(_row(decision=_decision("main_breaker", reason="Limited by site")), [])
    assert site == ("Limited by site",)
    limit = LimitInForce("l1", "s1", None, 20.0, None, "dashboard", "peak shaving")
    assert constraint_banners(_row(), [limit]) == ("Limited by site: site limit 20 A (peak shaving)",)
    other_site = replace(limit, site_id="s2")
    assert constraint_banners(_row(), [other_site]) == ()
    other_charger = replace(limit, charger_id="C9")
    assert constraint_banners(_row(), [other_charger]) == ()
    fallback = constraint_banners(_row(decision=_decision("safe_fallback", state="safe_fallback")), [])
    assert fallback[0] == "External controller offline: safe local fallback"


def test_offline_wins_over_the_last_status() -> None:
    row = _row()
    assert effective_status(row) is LiveStatus.CHARGING
    assert effective_status(replace(row, live=replace(row.live, online=False))) is LiveStatus.OFFLINE


def test_mode_currents_and_etas() -> None:
    row = _row(hardware_max_a=32.0, decision=_decision("circuit", 20.0))
    assert mode_current_a(row, ChargingMode.BOOST) == 32.0
    assert mode_current_a(row, ChargingMode.STANDARD) == 20.0
    assert mode_current_a(row, ChargingMode.ECO) == 16.0  # half the hardware maximum
    etas = mode_etas(row, now=NOW)
    assert all(e.status is EtaStatus.UNKNOWN_BATTERY for e in etas.values())
    etas = mode_etas(row, now=NOW, battery_wh=60_000.0)
    assert etas[ChargingMode.BOOST].duration_s is not None and etas[ChargingMode.ECO].duration_s is not None
    assert etas[ChargingMode.BOOST].duration_s < etas[ChargingMode.STANDARD].duration_s  # type: ignore[operator]
    assert etas[ChargingMode.STANDARD].duration_s < etas[ChargingMode.ECO].duration_s  # type: ignore[operator]


def _rule(rule_id: str, start: int, end: int, *, skipped: bool = False, enabled: bool = True,
          chargers: frozenset[str] = frozenset()) -> Rule:
    from datetime import date, time

    schedule = Schedule(f"s-{rule_id}", "UTC", WeeklyWindow(time(start), time(end)),
                        skipped_dates=frozenset({date(2026, 11, 26)}) if skipped else frozenset())
    return Rule(rule_id, f"Rule {rule_id}", Action.cap_current(10), Scope(charger_ids=chargers),
                Condition(schedule=schedule), enabled=enabled)


def test_week_timeline_shows_each_occurrence_and_flags_skipped_ones() -> None:
    bars = week_timeline([_rule("a", 18, 20), _rule("b", 13, 14, skipped=True), _rule("c", 1, 2, enabled=False)],
                         NOW, NOW + timedelta(days=7))
    a = [b for b in bars if b.rule_id == "a"]
    assert len(a) == 7 and a[0].start == NOW.replace(hour=18) and not a[0].skipped
    b = [x for x in bars if x.rule_id == "b"]
    assert [x.skipped for x in b if x.start.date() == NOW.date()] == [True]
    assert len([x for x in b if not x.skipped]) == 6
    assert not [x for x in bars if x.rule_id == "c"]


def test_affected_chargers_and_presets() -> None:
    site = ["C1", "C2", "C3"]
    assert affected_chargers(_rule("a", 1, 2), "s1", site) == site
    assert affected_chargers(_rule("a", 1, 2, chargers=frozenset({"C2", "X"})), "s1", site) == ["C2"]
    mapping = preset_mapping("Charge only off-peak (23:00-06:00)", rule_id="r1", zone="Europe/Berlin",
                             chargers=["C1"])
    assert mapping["condition"]["outside"] is True
    assert mapping["condition"]["schedule"]["zone"] == "Europe/Berlin"
    assert mapping["scope"] == {"chargers": ["C1"]}


def test_ev_limit_series_sums_the_latest_limit_of_each_connector() -> None:
    def audit(minutes: int, charger: str, limit: float, paused: bool = False) -> AuditRow:
        return AuditRow(NOW + timedelta(minutes=minutes), charger, 1, None, limit, paused, "r", None, "normal", None)

    rows = [audit(3, "C1", 10, paused=True), audit(2, "C2", 16), audit(1, "C1", 16), audit(-30, "C3", 6)]
    assert ev_limit_series(rows, NOW) == [(NOW + timedelta(minutes=1), 22.0), (NOW + timedelta(minutes=2), 38.0),
                                          (NOW + timedelta(minutes=3), 22.0)]


def test_stale_reason() -> None:
    fresh = BuildingLoadPoint(NOW - timedelta(seconds=10), None, 1000.0, 5.0, "meter")
    old = replace(fresh, ts=NOW - timedelta(seconds=300))
    assert stale_reason(fresh, "normal", now=NOW, meter_timeout_s=60) is None
    assert stale_reason(old, "normal", now=NOW, meter_timeout_s=60) == "the last building meter reading is 300 s old"
    assert stale_reason(fresh, "safe_fallback", now=NOW, meter_timeout_s=60) is not None
    assert stale_reason(None, None, now=NOW, meter_timeout_s=60) is None
