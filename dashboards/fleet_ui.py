"""Drawing helpers the locations, fleet, bulk, schedule and installer pages share (Streamlit, no SQL).

The map is an Altair scatter of the sites on longitude/latitude, without background tiles:
``st.map`` and pydeck fetch their base map from a tile server (Carto/Mapbox) on the internet, so
on an offline or firewalled server they would show pins on an empty canvas anyway, and AppTest
cannot inspect them. The scatter renders everywhere and its spec is testable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

import altair as alt
import psycopg
import streamlit as st

from dashboards import runtime
from dashboards.fleet_service import FleetService
from dashboards.fleet_views import PIN_COLOURS, SitePin
from dashboards.installer_service import InstallerService

T = TypeVar("T")


def fleet_service() -> FleetService:
    return FleetService(runtime.access(), runtime.commands)


def installer_service() -> InstallerService:
    return InstallerService(runtime.access())


def fail(what: str, exc: BaseException) -> NoReturn:
    st.error(f"Could not load {what}: {exc.__class__.__name__}: {exc}. Nothing is shown rather than a partial "
             "view; check that the database is running (`flowbank services`) and reload.")
    st.stop()
    raise AssertionError("st.stop() returned")  # pragma: no cover  (st.stop raises)


def load(what: str, fetch: Callable[[], T]) -> T:
    """Run a service read; on a database failure, say what could not be loaded and stop the page."""
    try:
        return fetch()
    except (psycopg.Error, OSError) as exc:
        fail(what, exc)


def ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "never seen"
    secs = max(0, int((now - ts).total_seconds()))
    if secs < 60:
        return f"{secs} s ago"
    if secs < 3600:
        return f"{secs // 60} min ago"
    if secs < 86400:
        return f"{secs // 3600} h {secs % 3600 // 60:02d} min ago"
    return f"{ts:%Y-%m-%d %H:%M} UTC"


def site_map(pins: Sequence[SitePin]) -> alt.LayerChart:
    """Status-coloured pins on longitude/latitude (no tiles: works offline)."""
    records = [{"site": p.name, "latitude": p.latitude, "longitude": p.longitude, "pin": p.pin,
                        "status": p.status, "chargers": p.chargers, "summary": p.summary,
                        "address": p.address or ""} for p in pins]
    data = alt.Data(values=records)  # type: ignore[no-untyped-call]
    pad = 0.02
    lat = (min(p.latitude for p in pins) - pad, max(p.latitude for p in pins) + pad)
    lon = (min(p.longitude for p in pins) - pad, max(p.longitude for p in pins) + pad)
    colour = alt.Color("pin:N", title="Status", scale=alt.Scale(domain=list(PIN_COLOURS),
                                                                  range=list(PIN_COLOURS.values())))
    points = alt.Chart(data).mark_point(filled=True, size=400, shape="circle", opacity=0.9).encode(
        x=alt.X("longitude:Q", title="Longitude", scale=alt.Scale(domain=lon, zero=False)),
        y=alt.Y("latitude:Q", title="Latitude", scale=alt.Scale(domain=lat, zero=False)),
        color=colour,
        tooltip=["site:N", "address:N", "chargers:Q", "summary:N"],
    )
    labels = alt.Chart(data).mark_text(dy=-18, fontSize=12).encode(x="longitude:Q", y="latitude:Q", text="site:N")
    chart: alt.LayerChart = (points + labels).properties(height=320)
    return chart


def draw_map(pins: Sequence[SitePin], unplaced: Sequence[str]) -> None:
    if pins:
        st.altair_chart(site_map(pins), width="stretch")
        st.caption("Pins: green available, blue charging, red error, grey offline. Drawn on latitude/longitude "
                   "without background map tiles, so the map also works offline.")
    else:
        st.info("No location has coordinates yet, so there is nothing to put on the map.")
    if unplaced:
        st.warning(f"Not on the map (no coordinates): {', '.join(unplaced)}. Enter the address and "
                   "coordinates on the Locations page.")


def window_around(now: datetime, choice: str) -> tuple[datetime, datetime]:
    """The schedule's time windows."""
    if choice == "Last 7 days":
        return now - timedelta(days=7), now + timedelta(hours=12)
    if choice == "Today and tomorrow":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day, day + timedelta(days=2)
    return now - timedelta(hours=12), now + timedelta(hours=24)
