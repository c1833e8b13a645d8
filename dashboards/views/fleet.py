"""Fleet overview: sites, chargers, statuses and active sessions in aggregate, a filterable grid of
chargers and a map of the sites (User Story 9)."""

from __future__ import annotations

import streamlit as st

from dashboards import context, fleet_ui, runtime
from dashboards.fleet_views import NO_COST_CENTRE, GridFilter, filter_rows, site_pins

user = runtime.current_user()
ctx = context.active()
svc = fleet_ui.fleet_service()

st.title("Fleet overview")
overview = fleet_ui.load("the fleet overview", lambda: svc.overview(user, site_id=ctx.site_id))
rows, totals = overview.rows, overview.totals
now = runtime.access().now()

if not rows:
    st.info("No chargers to show: none of your organisation's sites has chargers yet.")
    st.stop()

cols = st.columns(4)
cols[0].metric("Sites", totals.sites)
cols[1].metric("Chargers", totals.chargers)
cols[2].metric("Active sessions", totals.active_sessions)
cols[3].metric("Power now", f"{totals.power_kw:.1f} kW")
cols = st.columns(4)
cols[0].metric("Charging", totals.by_status.get("Charging", 0))
cols[1].metric("Errors", totals.by_status.get("Error", 0))
cols[2].metric("Offline", totals.by_status.get("Offline", 0))
cols[3].metric("Energy today (UTC)", f"{totals.energy_today_kwh:.1f} kWh")

st.subheader("Chargers")
sites = {r.site_id or "": r.site_name or "No location" for r in rows}
f1, f2, f3, f4 = st.columns(4)
site_ids = f1.multiselect("Site", sorted(sites, key=lambda k: sites[k]), format_func=lambda k: sites[k],
                          key="fleet_sites")
statuses = f2.multiselect("Status", sorted({r.status for r in rows}), key="fleet_statuses")
models = f3.multiselect("Model", sorted({r.model or "" for r in rows}), key="fleet_models")
centres = f4.multiselect("Cost centre", sorted({r.cost_centre or NO_COST_CENTRE for r in rows}),
                         key="fleet_cost_centres")
text = st.text_input("Search", placeholder="charger id, name, site, model or cost centre", key="fleet_search")
shown = filter_rows(rows, GridFilter(frozenset(site_ids), frozenset(statuses), frozenset(models), frozenset(centres),
                                     text))
st.caption(f"Showing {len(shown)} of {len(rows)} chargers")
if shown:
    st.dataframe(
        [{"Charger": r.charger_id, "Name": r.name, "Site": r.site_name or "—", "Status": r.status,
          "Sessions": r.active_sessions, "Power kW": round(r.power_w / 1000, 2),
          "Today kWh": round(r.energy_today_wh / 1000, 2), "Model": " ".join(x for x in (r.vendor, r.model) if x),
          "Cost centre": r.cost_centre or "", "Last seen": fleet_ui.ago(r.last_seen_at, now)} for r in shown],
        hide_index=True, width="stretch", key="fleet_grid")
else:
    st.info("No chargers match these filters.")

st.subheader("Sites")
pins, unplaced = site_pins(rows)
fleet_ui.draw_map(pins, unplaced)
