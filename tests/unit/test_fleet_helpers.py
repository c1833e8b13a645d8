"""Pure helpers of the fleet, locations, bulk, schedule and installer pages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from control.installer import (
    ALPHABET,
    SESSION_LENGTH,
    InstallerCodeError,
    InstallerSession,
    check_format,
    code_hash,
    new_code,
    remaining_text,
    validity,
)
from control.naming import check_name, suggest
from dashboards.fleet_service import BulkResult, check_location, failed_ids
from dashboards.fleet_views import GridFilter, build_schedule, filter_rows, pin_of, site_pins, totals_of
from warehouse.fleet_store import DepartureRow, FleetRow, LatestDecision, SessionSpan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _row(cid: str, **kw: object) -> FleetRow:
    base = FleetRow(charger_id=cid, name=f"Bay {cid[-1]}", site_id="demo", site_name="Demo depot", org_id="acme",
                    status="Idle", connectors=1, active_sessions=0, power_w=0.0, energy_today_wh=0.0,
                    last_seen_at=NOW, vendor="FlowSim", model="AC22", cost_centre=None, latitude=52.0, longitude=5.1,
                    address="1 Depot Road")
    return replace(base, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- naming


def test_a_name_used_by_another_charger_at_the_location_is_refused_with_a_free_suggestion() -> None:
    verdict = check_name("Bay 1", others=["bay  1", "Bay 1 (2)", "Bay 2"], location="Demo depot")
    assert not verdict.ok
    assert verdict.message == "Bay 1 already exists at Demo depot: choose a different name, e.g. 'Bay 1 (3)'."
    assert verdict.suggestion == "Bay 1 (3)"


def test_a_distinct_name_is_cleaned_and_accepted_and_empty_or_long_names_are_refused() -> None:
    assert check_name("  Bay   7 ", others=["Bay 1"], location="X").name == "Bay 7"
    assert check_name("  Bay   7 ", others=["Bay 1"], location="X").ok
    assert not check_name("   ", others=[], location="X").ok
    assert "under 60" in check_name("x" * 61, others=[], location="X").message
    assert suggest("Bay 1", []) == "Bay 1 (2)"


# --------------------------------------------------------------------------- installer codes


def test_codes_use_an_unambiguous_alphabet_and_typing_variants_hash_alike() -> None:
    code = new_code(bytes(range(8)))
    assert code == "2345-6789"
    assert all(ch in ALPHABET for ch in code.replace("-", ""))
    assert code_hash(code) == code_hash(" 2345 6789 ") == code_hash("23456789")
    assert code_hash(code) != code_hash("2345-678A")
    assert check_format("abcd-efgh") == "ABCDEFGH"
    with pytest.raises(InstallerCodeError, match="typo"):
        check_format("ABCD-EFG0")  # 0 is not in the alphabet
    with pytest.raises(InstallerCodeError, match="Enter"):
        check_format(" - ")
    with pytest.raises(ValueError):
        new_code(b"short")


def test_the_installer_session_lasts_thirty_minutes_and_covers_its_site() -> None:
    s = InstallerSession("u", NOW, "demo")
    assert SESSION_LENGTH == timedelta(minutes=30)
    assert s.active(NOW + timedelta(minutes=29)) and not s.active(NOW + timedelta(minutes=30))
    assert remaining_text(s.remaining(NOW + timedelta(minutes=6, seconds=55))) == "23 min 05 s left"
    assert remaining_text(s.remaining(NOW + timedelta(hours=1))) == "installer mode has ended"
    assert s.covers("demo") and not s.covers("other") and InstallerSession("u", NOW, None).covers("other")
    assert validity(2) == timedelta(hours=2)
    with pytest.raises(InstallerCodeError):
        validity(0)
    with pytest.raises(InstallerCodeError, match="7 days"):
        validity(24 * 8)


# --------------------------------------------------------------------------- grid, totals, pins


def test_totals_count_statuses_sessions_power_and_energy() -> None:
    rows = [_row("A-1", status="Charging", active_sessions=1, power_w=7400, energy_today_wh=5000),
            _row("A-2", status="Error"), _row("B-3", site_id="b", status="Charging", power_w=3600,
                                              active_sessions=1)]
    t = totals_of(rows)
    assert (t.sites, t.chargers, t.active_sessions) == (2, 3, 2)
    assert t.by_status == {"Charging": 2, "Error": 1}
    assert t.power_kw == pytest.approx(11.0) and t.energy_today_kwh == pytest.approx(5.0)


def test_filters_combine_and_the_text_search_matches_names_sites_models_and_cost_centres() -> None:
    rows = [_row("A-1", cost_centre="CC-North"), _row("A-2", status="Error", model="AC7"),
            _row("B-3", site_id="b", site_name="Harbour")]
    ids = lambda f: [r.charger_id for r in filter_rows(rows, f)]  # noqa: E731
    assert ids(GridFilter()) == ["A-1", "A-2", "B-3"]
    assert ids(GridFilter(statuses=frozenset({"Idle"}), site_ids=frozenset({"demo"}))) == ["A-1"]
    assert ids(GridFilter(models=frozenset({"AC7"}))) == ["A-2"]
    assert ids(GridFilter(cost_centres=frozenset({"(none)"}))) == ["A-2", "B-3"]
    assert ids(GridFilter(text="north")) == ["A-1"]
    assert ids(GridFilter(text="harb")) == ["B-3"]


def test_a_site_pin_takes_the_colour_of_its_worst_charger_and_unplaced_sites_are_listed() -> None:
    rows = [_row("A-1", status="Charging"), _row("A-2", status="Idle"), _row("A-3", status="Charging"),
            _row("B-1", site_id="b", site_name="Harbour", latitude=None, longitude=None)]
    pins, unplaced = site_pins(rows)
    assert [(p.site_id, p.pin, p.summary) for p in pins] == [("demo", "charging", "2 charging, 1 idle")]
    assert unplaced == ["Harbour"]
    assert [pin_of(s) for s in ("Idle", "Waiting for vehicle", "Charging", "Error", "Offline", "Weird")] == [
        "available", "available", "charging", "error", "offline", "offline"]


def test_retry_takes_the_failed_and_unanswered_but_not_the_refused() -> None:
    results = [BulkResult("A", True, "done", ""), BulkResult("B", False, "failed", ""),
               BulkResult("C", False, "refused", ""), BulkResult("D", False, "no_answer", "")]
    assert failed_ids(results) == ["B", "D"]


def test_a_manual_location_needs_both_coordinates_in_range_or_an_address() -> None:
    assert check_location(" 1  Depot Road ", None, None).address == "1 Depot Road"
    assert check_location("", 52.0, 5.0).latitude == 52.0
    for bad in (("", None, None), ("x", 91.0, 0.0), ("x", 0.0, 181.0), ("x", 1.0, None)):
        with pytest.raises(ValueError):
            check_location(*bad)


# --------------------------------------------------------------------------- schedule


def test_the_schedule_clips_sessions_to_the_window_and_plans_until_future_departures() -> None:
    rows = [_row("A-1", cost_centre="CC-7"), _row("A-2")]
    start, end = NOW - timedelta(hours=12), NOW + timedelta(hours=24)
    sessions = [SessionSpan("A-1", 1, "s1", NOW - timedelta(hours=20), NOW - timedelta(hours=10), 9000, "VAN", None),
                SessionSpan("A-2", 1, "s2", NOW - timedelta(hours=1), None, 2000, None, "eco"),
                SessionSpan("X-9", 1, "s3", NOW - timedelta(hours=1), None, 1, None, None)]  # not in rows: dropped
    departures = [DepartureRow("A-1", 1, NOW + timedelta(hours=3), 80.0, 60000.0, None, "fm"),
                  DepartureRow("A-2", 1, NOW - timedelta(hours=2), None, None, 5000.0, "fm"),
                  DepartureRow("A-2", 2, NOW + timedelta(days=3), None, None, 5000.0, "fm")]  # outside the window
    decisions = [LatestDecision("A-1", 1, NOW, 12.0, False, "fair share")]
    sched = build_schedule(rows, sessions, departures, decisions, now=NOW, start=start, end=end)
    bars = [(b.row, b.kind, b.starts_at, b.ends_at) for b in sched.bars]
    assert bars == [("Bay 1 #1 · CC-7", "session", start, NOW - timedelta(hours=10)),
                    ("Bay 2 #1", "session", NOW - timedelta(hours=1), NOW),
                    ("Bay 1 #1 · CC-7", "planned", NOW, NOW + timedelta(hours=3))]
    assert sched.bars[-1].label == "planned until departure: 12 A (fair share)"
    assert [(d.row, d.label) for d in sched.departures] == [
        ("Bay 1 #1 · CC-7", "departs Thu 15:00 UTC with 80 % SoC"),
        ("Bay 2 #1", "departs Thu 10:00 UTC with 5.0 kWh")]
