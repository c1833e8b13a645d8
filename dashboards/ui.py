"""Small UI pieces every page may share: status chips, the kW gauge, number formats, error boxes.

The formatting functions are pure (unit-tested in tests/unit/test_dashboards_ui.py); the drawing
functions only call Streamlit. Keep signatures stable: other pages import them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

import altair as alt
import streamlit as st

# The status chip colours (Streamlit badge colours) and a hex for charts.
STATUS_COLOURS: Final[Mapping[str, str]] = {
    "Charging": "green",
    "Paused": "orange",
    "Waiting for vehicle": "blue",
    "Error": "red",
    "Idle": "gray",
    "Offline": "gray",
}
STATUS_HEX: Final[Mapping[str, str]] = {
    "green": "#21a366", "orange": "#f0a202", "blue": "#1c83e1", "red": "#e0413a", "gray": "#8d8f95",
    "violet": "#803df5",
}
STATUS_ICONS: Final[Mapping[str, str]] = {
    "Charging": ":material/bolt:",
    "Paused": ":material/pause_circle:",
    "Waiting for vehicle": ":material/hourglass_empty:",
    "Error": ":material/error:",
    "Idle": ":material/power_settings_new:",
    "Offline": ":material/cloud_off:",
}


def status_colour(status: str) -> str:
    """The badge colour of a connector or charger status (grey for anything unknown)."""
    return STATUS_COLOURS.get(status, "gray")


# --------------------------------------------------------------------------- formats (pure)


def fmt_kw(power_w: float | None) -> str:
    return "–" if power_w is None else f"{power_w / 1000:.1f} kW"


def fmt_kwh(energy_wh: float | None) -> str:
    if energy_wh is None:
        return "–"
    return f"{energy_wh / 1000:.2f} kWh" if energy_wh < 100_000 else f"{energy_wh / 1000:,.0f} kWh"


def fmt_a(current_a: float | None) -> str:
    return "–" if current_a is None else f"{current_a:.1f} A"


def fmt_elapsed(seconds: float | None) -> str:
    """``1:05:09`` style (h:mm:ss), ``–`` when unknown; negative clock skew counts as 0."""
    if seconds is None:
        return "–"
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def elapsed_s(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max((now - since).total_seconds(), 0.0)


def fmt_ago(then: datetime | None, now: datetime) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``; ``never`` for None."""
    if then is None:
        return "never"
    seconds = max((now - then).total_seconds(), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def fmt_time(ts: datetime | None, tz_name: str = "UTC") -> str:
    if ts is None:
        return "–"
    from zoneinfo import ZoneInfo

    return ts.astimezone(ZoneInfo(tz_name)).strftime("%Y-%m-%d %H:%M")


def fraction(value: float | None, maximum: float | None) -> float:
    """``value / maximum`` clipped to [0, 1] (0 when either is unknown), for progress bars."""
    if value is None or not maximum or maximum <= 0:
        return 0.0
    return min(max(value / maximum, 0.0), 1.0)


def load_colour(share: float) -> str:
    """Green below 80 %, amber below 95 %, red from 95 % of a limit."""
    if share < 0.80:
        return "green"
    return "orange" if share < 0.95 else "red"


# --------------------------------------------------------------------------- drawing


def status_chip(status: str) -> None:
    st.badge(status, icon=STATUS_ICONS.get(status), color=status_colour(status))  # type: ignore[arg-type]


def kw_gauge(power_w: float | None, max_w: float | None, *, key: str | None = None) -> None:
    """A bullet gauge: the bar is the power now, the grey track the hardware maximum."""
    value_kw = (power_w or 0.0) / 1000
    max_kw = max((max_w or 0.0) / 1000, value_kw, 0.1)
    data = [{"what": "power", "kw": value_kw, "max": max_kw}]
    base = alt.Chart(alt.Data(values=data))  # type: ignore[no-untyped-call]
    track = base.mark_bar(color="#e6e6e9", size=18).encode(
        x=alt.X("max:Q", scale=alt.Scale(domain=[0, max_kw]), title=None, axis=alt.Axis(format=".1f", tickCount=4)))
    bar = base.mark_bar(color=STATUS_HEX["green"], size=10).encode(x="kw:Q", tooltip=[
        alt.Tooltip("kw:Q", title="kW", format=".2f"), alt.Tooltip("max:Q", title="max kW", format=".1f")])
    st.altair_chart((track + bar).properties(height=48), width="stretch", key=key)


def error_box(what: str, exc: BaseException) -> None:
    """A clear error naming what could not be loaded (never an empty view pretending no data)."""
    st.error(f"Could not load {what}: {exc}", icon=":material/error:")


def flash(key: str, message: str) -> None:
    """Show ``message`` once after the rerun this starts (an action's outcome survives the rerun)."""
    st.session_state[key] = message
    st.rerun()


def show_flash(key: str) -> None:
    """The message :func:`flash` left under ``key``, once."""
    message = st.session_state.pop(key, None)
    if message:
        st.success(str(message), icon=":material/check_circle:")


def refused(exc: BaseException) -> None:
    st.warning(f"Not allowed: {exc}", icon=":material/block:")


def duration_text(span: timedelta) -> str:
    return fmt_elapsed(span.total_seconds())
