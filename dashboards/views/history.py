"""History: every session the user may see, as a list or a calendar, with filters and a detail view."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboards import context, runtime, ui
from dashboards.history_service import HistoryService
from warehouse.costing import money
from warehouse.history import HistoryFilter
from warehouse.queries import NotFoundError, QueryError

user = runtime.current_user()
ctx = context.active()
service = HistoryService(runtime.access())

st.title("History")
st.caption(f"{ctx.label} · times in UTC · corrupted sessions are marked and left out of every total")

today = datetime.now(UTC).date()
f1, f2, f3, f4 = st.columns([2, 2, 1, 1])
period = f1.date_input("Period", value=(today - timedelta(days=30), today), key="hist_period")
first, last = (period if isinstance(period, tuple) and len(period) == 2 else (today - timedelta(days=30), today))
names = {c.charger_id: c.name for c in ctx.chargers}
chargers = f2.multiselect("Chargers", list(names), format_func=lambda c: names.get(c, c), key="hist_chargers",
                          placeholder=f"All at {ctx.label}" if ctx.chargers else "All")
mode = f3.selectbox("Mode", ["any", "standard", "eco", "boost"], key="hist_mode")
outcome = f4.selectbox("Outcome", ["any", "success", "error"], key="hist_outcome")
g1, g2 = st.columns([1, 3])
cost_centre = g1.text_input("Cost centre", key="hist_cc", placeholder="any")
view = g2.segmented_control("View", ["List", "Calendar"], default="List", key="hist_view")

scope_ids = tuple(chargers) or tuple(names)
flt = HistoryFilter(first_day=first if isinstance(first, date) else today, last_day=last if isinstance(last, date)
                    else today, charger_ids=scope_ids, modes=() if mode == "any" else (mode,),
                    outcome=None if outcome == "any" else outcome,  # type: ignore[arg-type]
                    cost_centres=(cost_centre.strip(),) if cost_centre.strip() else ())
if not scope_ids:
    st.info("There are no chargers at this location, so there is no history to show.")
    st.stop()
try:
    overview = service.overview(user, flt, by=None, daily=view == "Calendar")
except QueryError as exc:
    ui.error_box("the charging history", exc)
    st.stop()

history = overview.history
clean = history.filter(~pl.col("excluded"))
t = overview.total
m1, m2, m3, m4 = st.columns(4)
m1.metric("Sessions", f"{t.sessions:,}")
m2.metric("Energy", f"{t.energy_kwh:,.1f} kWh")
m3.metric("Average", f"{t.avg_kwh_per_session:,.1f} kWh" if t.avg_kwh_per_session else "–")
if t.costs:
    cur, (net_nano, vat_nano) = next(iter(t.costs.items()))
    m4.metric("Estimated cost", f"{t.amounts(cur)[2]} {cur}", help="gross, VAT included; see Analytics for details")
else:
    m4.metric("Estimated cost", "–", help=t.cost_message or "no costed session in this period")
if t.cost_message:
    st.info(f"{t.cost_message}: some sessions have no tariff.", icon=":material/sell:")

if history.is_empty():
    st.info("No sessions in this period with these filters.")
    st.stop()

if view == "Calendar":
    daily = overview.daily.to_pandas()
    if daily.empty:
        st.info("No energy was charged on any day of this period.")
    else:
        chart = alt.Chart(daily).mark_rect().encode(
            x=alt.X("yearweek(day):O", title="Week"), y=alt.Y("day(day):O", title=None),
            color=alt.Color("energy_kwh:Q", title="kWh", scale=alt.Scale(scheme="blues")),
            tooltip=[alt.Tooltip("day:T", title="Day"), alt.Tooltip("energy_kwh:Q", format=",.1f", title="kWh"),
                     alt.Tooltip("sessions:Q", title="Sessions")])
        st.altair_chart(chart, width="stretch")
else:
    table = history.select(
        pl.col("session_id"), pl.col("started_at").dt.strftime("%Y-%m-%d").alias("date"),
        pl.col("started_at").dt.strftime("%H:%M").alias("start"), pl.col("ended_at").dt.strftime("%H:%M").alias("stop"),
        (pl.col("duration_s") / 60).round(0).alias("minutes"), (pl.col("energy_wh") / 1000).round(2).alias("kWh"),
        pl.col("charger_name").fill_null(pl.col("charger_id")).alias("charger"), pl.col("site_id").alias("location"),
        pl.col("mode"), pl.col("user_name").fill_null(pl.col("id_tag")).alias("user"), pl.col("outcome"),
        pl.when(pl.col("excluded")).then(pl.lit("excluded"))
        .when(pl.col("flags").list.len() > 0).then(pl.lit("flagged")).otherwise(pl.lit("ok")).alias("quality"),
        pl.col("flags").list.join(", ").alias("quality reasons"),
    ).reverse()
    picked = st.dataframe(table, width="stretch", hide_index=True, on_select="rerun", selection_mode="single-row",
                          key="hist_table")
    rows = picked.selection.rows if picked is not None else []
    if rows:
        st.session_state["hist_session"] = table["session_id"][rows[0]]

excluded = overview.excluded
if not excluded.is_empty():
    with st.expander(f"Excluded from totals: {excluded.height} corrupted session(s)"):
        st.dataframe(excluded.with_columns(pl.col("reasons").list.join("; ")).drop("flags"), hide_index=True,
                     width="stretch")

session_id = st.session_state.get("hist_session")
if session_id:
    st.divider()
    try:
        detail = service.detail(user, session_id)
    except NotFoundError as exc:
        st.warning(str(exc))
        st.stop()
    except QueryError as exc:
        ui.error_box(f"session {session_id}", exc)
        st.stop()
    s = detail.session
    st.subheader(f"Session {s['session_id']}", anchor=False)
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Energy", f"{s['energy_wh'] / 1000:,.2f} kWh")
    d2.metric("Peak power", ui.fmt_kw(s.get("peak_power_w")))
    d3.metric("Average power", ui.fmt_kw(s.get("avg_power_w")))
    d4.metric("Duration", ui.fmt_elapsed(s.get("duration_s")))
    st.caption(f"{s['started_at']:%Y-%m-%d %H:%M:%S} → "
               f"{s['ended_at']:%Y-%m-%d %H:%M:%S}" if s.get("ended_at") else f"{s['started_at']} → (open)")
    st.caption(f"Charger {s['charger_id']} connector {s['connector_id']} · mode {s.get('mode') or 'standard'}"
               f" · id tag {s.get('id_tag') or '–'} · stop reason {s.get('stop_reason') or '–'}")
    for reason in detail.quality_reasons:
        st.warning(reason, icon=":material/report:")
    if detail.cost_message:
        st.info(detail.cost_message, icon=":material/sell:")
    for cur, (net_nano, vat_nano) in detail.costs.items():
        st.caption(f"Estimated cost: {money(net_nano, cur)} + VAT {money(vat_nano, cur)} {cur}")
    if detail.samples.is_empty():
        st.info("No meter samples are stored for this session.")
    else:
        samples = detail.samples.with_columns((pl.col("power_w") / 1000).alias("power_kw")).to_pandas()
        base = alt.Chart(samples).encode(x=alt.X("ts:T", title=None))
        chart = alt.layer(base.mark_line().encode(y=alt.Y("power_kw:Q", title="kW")),
                          base.mark_line(strokeDash=[4, 3], color="orange").encode(
                              y=alt.Y("current_a:Q", title="A"))).resolve_scale(y="independent")
        st.altair_chart(chart, width="stretch")
    st.markdown("**Notes**")
    try:
        for note in service.notes(user, session_id):
            st.caption(f"{note.created_at:%Y-%m-%d %H:%M} UTC · {note.author or 'a former user'}")
            st.write(note.body)
    except QueryError as exc:
        ui.error_box("the session's notes", exc)
    with st.form("hist_note", clear_on_submit=True):
        text = st.text_area("Add a note", max_chars=2000, key="hist_note_text")
        if st.form_submit_button("Save note"):
            try:
                service.add_note(user, session_id, text)
                st.rerun()
            except ValueError as exc:
                st.error(str(exc))
    if detail.setpoints:
        st.markdown("**Setpoints applied**")
        st.dataframe(pl.DataFrame(detail.setpoints), hide_index=True, width="stretch")
    if detail.error_codes:
        st.markdown("**Error codes**")
        st.dataframe(pl.DataFrame(detail.error_codes), hide_index=True, width="stretch")
