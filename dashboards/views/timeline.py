"""Charger timeline: status, errors, sessions, commands and results, alerts, dead letters and raw OCPP frames
on one time axis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import altair as alt
import streamlit as st

from dashboards import context, runtime, ui
from dashboards import support_records as records
from dashboards.access import AccessDenied
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()

st.title("Charger timeline")

TONE_COLOURS = {records.Tone.OK: ui.STATUS_HEX["green"], records.Tone.INFO: ui.STATUS_HEX["blue"],
                records.Tone.WARN: ui.STATUS_HEX["orange"], records.Tone.ERROR: ui.STATUS_HEX["red"]}
WINDOWS = {1: "Last hour", 6: "Last 6 hours", 24: "Last 24 hours", 72: "Last 3 days", 168: "Last 7 days"}

options, names = context.charger_choices(ctx, "tl_charger")
if not options:
    st.info("No chargers in this location.")
    st.stop()
cols = st.columns([3, 2])
charger_id: str = cols[0].selectbox("Charger", options, key="tl_charger", format_func=lambda c: names.get(c, c))
hours: int = cols[1].selectbox("Period", list(WINDOWS), index=2, key="tl_hours", format_func=lambda h: WINDOWS[h])
lanes = st.multiselect("Show", list(records.Lane), default=list(records.Lane), key="tl_lanes",
                       format_func=lambda lane: lane.value)

end = datetime.now(UTC)
try:
    timeline = records.charger_timeline(user, runtime.access(), charger_id, start=end - timedelta(hours=hours),
                                        end=end)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except QueryError as exc:
    ui.error_box(f"the timeline of {charger_id}", exc)
    st.stop()

facts = timeline.charger
st.caption(f"{facts.display_name or facts.charger_id} · {facts.model or '?'} · OCPP {facts.ocpp_version or '?'} · "
           f"{WINDOWS[hours].lower()} · times in {user.time_zone}")
items = [i for i in timeline.items if i.lane in lanes]
counts = {lane: sum(1 for i in timeline.items if i.lane is lane) for lane in records.Lane}
st.caption(" · ".join(f"{lane.value}: {n}" for lane, n in counts.items()))
if not items:
    st.info("Nothing recorded for this charger in this period.", icon=":material/event_busy:")
else:
    rows = [{"start": i.start.isoformat(), "end": (i.end or i.start).isoformat(), "lane": i.lane.value,
             "label": i.label, "detail": i.detail, "tone": i.tone.value, "instant": i.end is None} for i in items]
    base = alt.Chart(alt.Data(values=rows))  # type: ignore[no-untyped-call]
    order = [lane.value for lane in records.Lane if lane in lanes]
    y = alt.Y("lane:N", sort=order, title=None)
    colour = alt.Color("tone:N", scale=alt.Scale(domain=[t.value for t in records.Tone],
                                                 range=[TONE_COLOURS[t] for t in records.Tone]), legend=None)
    tooltip = [alt.Tooltip("start:T", format="%Y-%m-%d %H:%M:%S"), alt.Tooltip("end:T", format="%H:%M:%S"),
               "lane:N", "label:N", "detail:N"]
    spans = base.transform_filter("!datum.instant").mark_bar(height=14, cornerRadius=2).encode(
        x=alt.X("start:T", title=None, scale=alt.Scale(domain=[timeline.start.isoformat(), end.isoformat()])),
        x2="end:T", y=y, color=colour, tooltip=tooltip)
    points = base.transform_filter("datum.instant").mark_tick(thickness=2, size=18).encode(
        x="start:T", y=y, color=colour, tooltip=tooltip)
    st.altair_chart((spans + points).properties(height=40 * len(order) + 40).interactive(bind_y=False),
                    width="stretch", key="tl_chart")
    st.dataframe([{"when": ui.fmt_time(i.start, user.time_zone) + f":{i.start:%S}", "lane": i.lane.value,
                   "what": i.label, "detail": i.detail} for i in reversed(items)],
                 hide_index=True, width="stretch", key="tl_table")

st.subheader("Raw OCPP frames")
if not timeline.frames:
    st.caption("No OCPP frames logged for this charger in this period (the bridge keeps the last frames of each "
               "charger).")
else:
    st.dataframe([{"when": f"{f.ts:%Y-%m-%d %H:%M:%S.%f}"[:-3], "direction": "→ charger" if f.direction == "out"
                   else "← charger", "frame": f.frame} for f in reversed(timeline.frames)],
                 hide_index=True, width="stretch", key="tl_frames")
if timeline.dead_letters:
    st.subheader("Dead letters")
    st.dataframe([{"when": ui.fmt_time(d.ts, user.time_zone), "source": d.source, "reason": d.reason, "raw": d.raw}
                  for d in timeline.dead_letters], hide_index=True, width="stretch", key="tl_dead_letters")
