"""dashboards.ui formatting helpers (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboards import ui

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_formats() -> None:
    assert ui.fmt_kw(7400.0) == "7.4 kW"
    assert ui.fmt_kw(None) == "–"
    assert ui.fmt_kwh(5230.0) == "5.23 kWh"
    assert ui.fmt_a(32.24) == "32.2 A"
    assert ui.fmt_elapsed(3909) == "1:05:09"
    assert ui.fmt_elapsed(-5) == "0:00:00"
    assert ui.fmt_elapsed(None) == "–"
    assert ui.elapsed_s(NOW - timedelta(minutes=42), NOW) == 2520
    assert ui.fmt_ago(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert ui.fmt_ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert ui.fmt_ago(None, NOW) == "never"
    assert ui.fmt_time(NOW, "Europe/Berlin") == "2026-11-26 13:00"


def test_status_colours_and_thresholds() -> None:
    assert ui.status_colour("Charging") == "green"
    assert ui.status_colour("Offline") == "gray"
    assert ui.status_colour("Error") == "red"
    assert ui.status_colour("Something new") == "gray"
    assert [ui.load_colour(s) for s in (0.5, 0.79, 0.8, 0.94, 0.95, 1.2)] == [
        "green", "green", "orange", "orange", "red", "red"]
    assert ui.fraction(5, 10) == 0.5
    assert ui.fraction(20, 10) == 1.0
    assert ui.fraction(None, 10) == 0.0
    assert ui.fraction(5, 0) == 0.0
