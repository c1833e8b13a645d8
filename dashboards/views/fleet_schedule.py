"""Departure schedule: a Gantt-style view per connector of past and running sessions and of the charging
planned until each vehicle's departure, with the departures as markers and cost centres in the row
labels (User Story 9)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import context, fleet_ui, runtime

MAX_ROWS = 60

user = runtime.current_user()
ctx = context.active()
svc = fleet_ui.fleet_service()

st.title("Departure schedule")
choice = st.radio("Period", ["Next 24 hours", "Today and tomorrow", "Last 7 days"], horizontal=True,
                  key="sched_period")
now = runtime.access().now()
start, end = fleet_ui.window_around(now, choice)
schedule = fleet_ui.load("the sessions and departures", lambda: svc.schedule(user, start=start, end=end,
                                                                            site_id=ctx.site_id))
st.caption(f"{start:%a %d %b %H:%M} – {end:%a %d %b %H:%M} UTC · the black line is now")

if not schedule.bars and not schedule.departures:
    st.info("No sessions or departures in this period.")
    st.stop()

# Connectors with the soonest departures first, then the rest by name; a fleet-wide chart stays readable.
soonest: dict[str, str] = {}
for d in sorted(schedule.departures, key=lambda d: d.departure_at):
    soonest.setdefault(d.row, d.departure_at.isoformat())
all_rows = sorted({b.row for b in schedule.bars} | set(soonest), key=lambda r: (soonest.get(r, "~"), r))
rows = all_rows[:MAX_ROWS]
if len(all_rows) > MAX_ROWS:
    st.caption(f"Showing {MAX_ROWS} of {len(all_rows)} connectors (soonest departures first); choose a location "
               "in the sidebar to see the others.")
shown = set(rows)
bars = [{"row": b.row, "kind": b.kind, "start": b.starts_at.isoformat(), "end": b.ends_at.isoformat(),
         "label": b.label, "cost_centre": b.cost_centre or ""} for b in schedule.bars if b.row in shown]
marks = [{"row": d.row, "at": d.departure_at.isoformat(), "label": d.label} for d in schedule.departures
         if d.row in shown]
y = alt.Y("row:N", title=None, sort=rows)
x_scale = alt.Scale(domain=[start.isoformat(), end.isoformat()])
layers = []
if bars:
    layers.append(alt.Chart(alt.Data(values=bars)).mark_bar(cornerRadius=3, height=14).encode(  # type: ignore[no-untyped-call]
        x=alt.X("start:T", title="UTC", scale=x_scale), x2="end:T", y=y,
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=["session", "planned"],
                                                                range=["#1f6fd1", "#9ecae9"])),
        tooltip=["row:N", "label:N", "cost_centre:N", alt.Tooltip("start:T", format="%a %H:%M"),
                 alt.Tooltip("end:T", format="%a %H:%M")]))
if marks:
    layers.append(alt.Chart(alt.Data(values=marks)).mark_tick(color="#d62728", thickness=3, size=22).encode(  # type: ignore[no-untyped-call]
        x=alt.X("at:T", scale=x_scale), y=y, tooltip=["row:N", "label:N"]))
layers.append(alt.Chart(alt.Data(values=[{"now": now.isoformat()}])).mark_rule(color="black").encode(  # type: ignore[no-untyped-call]
    x=alt.X("now:T", scale=x_scale)))
chart = alt.layer(*layers).properties(height=max(120, 28 * len(rows)))
st.altair_chart(chart, width="stretch", key="sched_chart")
st.caption("Dark blue: sessions · light blue: charging planned until departure · red tick: departure")

if schedule.departures:
    st.subheader("Departures")
    st.dataframe([{"Connector": d.row, "Departure (UTC)": f"{d.departure_at:%a %d %b %H:%M}", "Plan": d.label}
                  for d in schedule.departures], hide_index=True, width="stretch", key="sched_departures")
