"""Altair charts of the history (the same specs the dashboards show), and their PNG rendering
offline with vl-convert (no browser, no network) for the PDF."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl
import vl_convert as vlc

from warehouse.history import PeriodTotal


def monthly_frame(totals: Sequence[PeriodTotal]) -> pl.DataFrame:
    return pl.DataFrame({
        "month": [t.period.strftime("%Y-%m") if t.period else "all" for t in totals],
        "energy_kwh": [round(t.energy_kwh, 3) for t in totals],
        "sessions": [t.sessions for t in totals],
    }, schema={"month": pl.String(), "energy_kwh": pl.Float64(), "sessions": pl.Int64()})


def monthly_energy_chart(totals: Sequence[PeriodTotal]) -> alt.LayerChart | alt.FacetChart:
    """Bars of kWh per month with the trend (a line through the 3-month moving average)."""
    frame = monthly_frame(totals).with_columns(
        pl.col("energy_kwh").rolling_mean(window_size=3, min_samples=1).alias("trend_kwh"))
    data = alt.Data(values=frame.to_dicts())  # type: ignore[no-untyped-call]
    base = alt.Chart(data).encode(x=alt.X("month:O", title="Month (UTC)"))
    bars = base.mark_bar(color="#4C78A8").encode(
        y=alt.Y("energy_kwh:Q", title="Energy, kWh"), tooltip=["month:O", "energy_kwh:Q", "sessions:Q"])
    trend = base.mark_line(color="#F58518", point=True).encode(y=alt.Y("trend_kwh:Q", title="Energy, kWh"))
    return alt.layer(bars, trend).properties(width=520, height=220, title="Energy per month (bars) and trend")


def daily_energy_chart(daily: pl.DataFrame) -> alt.Chart:
    """kWh per UTC day (the calendar's data) as a line."""
    values = daily.select(pl.col("day").cast(pl.String()), "energy_kwh").to_dicts()
    data = alt.Data(values=values)  # type: ignore[no-untyped-call]
    chart: alt.Chart = alt.Chart(data).mark_line().encode(
        x=alt.X("day:T", title="Day (UTC)"), y=alt.Y("energy_kwh:Q", title="Energy, kWh")
    ).properties(width=520, height=180, title="Energy per day")
    return chart


def to_png(chart: alt.TopLevelMixin, *, scale: float = 2.0) -> bytes:
    """The chart as PNG bytes, rendered offline."""
    png: bytes = vlc.vegalite_to_png(chart.to_json(), scale=scale)
    return png
