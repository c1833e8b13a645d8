"""Load: building load vs the site's limit, the chargers' share, and the throttling audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from dashboards import charging_load_service as svc
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()

st.title("Load")
st.caption(ctx.label)

site_id = ctx.site_id or (ctx.charger.site_id if ctx.charger else None)
if site_id is None:
    st.info("Choose a location in the sidebar: load is measured per location (site).")
    st.stop()
_SITE: str = site_id


@st.fragment(run_every="2s")
def load_now() -> None:
    now = datetime.now(UTC)
    try:
        data = svc.site_load(user, runtime.access(), _SITE, now=now)
    except AccessDenied as exc:
        ui.refused(exc)
        return
    except (QueryError, LookupError, ValueError) as exc:
        ui.error_box(f"the load of {_SITE}", exc)
        return
    if data.stale:
        st.error(f"{svc.SAFE_FALLBACK_BANNER}: {data.stale_reason}. Chargers run on the site's safe fallback "
                 "current until fresh readings arrive.", icon=":material/sensors_off:")
    share = data.share
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Building (worst phase)", ui.fmt_a(data.building_a),
              help="No meter reading yet" if data.building_a is None else None)
    c2.metric("Chargers", ui.fmt_a(data.ev_a))
    c3.metric("Limit", ui.fmt_a(data.limit_a))
    c4.metric("Used", "–" if share is None else f"{share * 100:.0f} %")
    if data.building_a is None:
        st.info("No building meter reading for this site: the total counts the chargers only.")
    if share is not None:
        colour = ui.load_colour(share)
        label = {"green": "Plenty of headroom", "orange": "Close to the limit", "red": "At the limit"}[colour]
        st.markdown(f":{colour}-badge[{label}] building {ui.fmt_a(data.building_a)} + chargers "
                    f"{ui.fmt_a(data.ev_a)} of {ui.fmt_a(data.limit_a)}")
        st.progress(ui.fraction(data.total_a, data.limit_a))
    if data.shares:
        st.caption("Chargers' share (current per phase): " + " · ".join(
            f"{s.name} {ui.fmt_a(s.current_a)}" for s in data.shares)
            + (f" · other chargers {ui.fmt_a(data.other_chargers_a)}" if data.other_chargers_a else ""))
    st.session_state["load_data"] = data


load_now()

data = st.session_state.get("load_data")
if isinstance(data, svc.SiteLoad) and data.site_id == _SITE:
    st.subheader("Last two hours", anchor=False)
    if not data.series or all(p.series == "Limit" for p in data.series):
        st.info("No building load readings or control decisions in the last two hours.")
    else:
        frame = pl.DataFrame([{"ts": p.ts, "series": p.series, "current_a": p.current_a} for p in data.series])
        chart = alt.Chart(frame.to_pandas()).mark_line(interpolate="step-after").encode(
            x=alt.X("ts:T", title=None), y=alt.Y("current_a:Q", title="A (worst phase)"),
            color=alt.Color("series:N", title=None, scale=alt.Scale(
                domain=["Building", "EV limit set", "Limit"], range=["#1c83e1", "#21a366", "#e0413a"])),
            strokeDash=alt.condition(alt.datum.series == "Limit", alt.value([6, 4]), alt.value([1, 0])),
            tooltip=["series:N", alt.Tooltip("ts:T", format="%H:%M:%S"), alt.Tooltip("current_a:Q", format=".1f")])
        st.altair_chart(chart.properties(height=260), width="stretch", key="load_chart")

    st.subheader("Throttling audit trail", anchor=False)
    if not data.audit:
        st.info("No control decisions for your chargers in the last two hours.")
    else:
        st.dataframe(pl.DataFrame([{
            "time": ui.fmt_time(r.ts, user.time_zone), "charger": r.charger_id, "connector": r.connector_id,
            "rule / reason": r.reason, "binding": r.binding or "", "old A": r.old_limit_a,
            "new A": 0.0 if r.paused else r.new_limit_a, "paused": r.paused, "state": r.site_state,
            "charger answer": r.command_outcome or "pending"} for r in data.audit]), hide_index=True,
            width="stretch", key="load_audit")
