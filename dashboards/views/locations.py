"""Locations: a map of the sites with status-coloured pins, charger cards with quick actions, and
per-charger and per-location settings, scoped in their headings (User Story 5)."""

from __future__ import annotations

import streamlit as st

from control.access import Permission
from dashboards import context, fleet_ui, runtime
from dashboards.access import AccessDenied
from dashboards.fleet_service import may
from dashboards.fleet_views import pin_of, site_pins
from warehouse.command_api import Action
from warehouse.fleet_store import FleetRow

MAX_CARDS = 60
_PIN_ICON = {"available": "🟢", "charging": "🔵", "error": "🔴", "offline": "⚪"}

user = runtime.current_user()
ctx = context.active()
svc = fleet_ui.fleet_service()

site = next((loc for loc in ctx.locations if loc.site_id == ctx.site_id), None) if ctx.site_id else None
st.title("Locations")
st.caption(f"Showing {site.name if site else 'all locations'}")


def _act(row: FleetRow, action: Action) -> None:
    try:
        reply = svc.quick_action(user, row.charger_id, action)
    except AccessDenied as exc:
        st.session_state["loc_reply"] = ("error", f"{row.name}: {exc}")
        return
    st.session_state["loc_reply"] = ("success" if reply.ok else "error", f"{row.name}: {reply.message}")


def _card(row: FleetRow) -> None:
    now = runtime.access().now()
    with st.container(border=True):
        st.markdown(f"**{_PIN_ICON[pin_of(row.status)]} {row.name}**  \n{row.status}")
        power = f"{row.power_w / 1000:.1f} kW" if row.power_w else "0 kW"
        st.caption(f"{power} · last activity {fleet_ui.ago(row.last_seen_at, now)}"
                   + (f" · cost centre {row.cost_centre}" if row.cost_centre else ""))
        allowed = may(user, Permission.START_STOP, row)
        left, right = st.columns(2)
        left.button("Start", key=f"start_{row.charger_id}", disabled=not allowed, on_click=_act,
                    args=(row, Action.START), width="stretch")
        right.button("Stop", key=f"stop_{row.charger_id}", disabled=not allowed, on_click=_act,
                     args=(row, Action.STOP), width="stretch")


@st.fragment(run_every="3s")
def live_part() -> None:
    overview = fleet_ui.load("the chargers of this location", lambda: svc.overview(user, site_id=ctx.site_id))
    pins, unplaced = site_pins(overview.rows)
    fleet_ui.draw_map(pins, unplaced)
    reply = st.session_state.pop("loc_reply", None)
    if reply is not None:
        (st.success if reply[0] == "success" else st.error)(reply[1])
    st.subheader("Chargers")
    if not overview.rows:
        st.info("No chargers at this location.")
        return
    rows = overview.rows[:MAX_CARDS]
    if len(overview.rows) > MAX_CARDS:
        st.caption(f"Showing the first {MAX_CARDS} of {len(overview.rows)} chargers; the Fleet overview has them all.")
    columns = st.columns(3)
    for i, row in enumerate(rows):
        with columns[i % 3]:
            _card(row)


live_part()

# --------------------------------------------------------------------------- per-charger settings
charger = ctx.charger
if charger is not None:
    st.subheader(f"Settings — {charger.site_name or 'No location'} / {charger.name}")
    if not runtime.access().check(user, Permission.CHANGE_SETTINGS, charger.charger_id).allowed:
        st.info("Your role does not allow changing this charger's settings.")
    else:
        with st.form(f"settings_{charger.charger_id}"):
            name = st.text_input("Name", value=charger.name, key="set_name")
            cost_centre = st.text_input("Cost centre", value=charger.cost_centre or "", key="set_cost_centre",
                                        help="Sessions on this charger are reported under this cost centre.")
            saved = st.form_submit_button("Save settings", key="save_settings")
        if saved:
            try:
                verdict = svc.rename(user, charger.charger_id, name)
                if verdict.ok:
                    centre = svc.set_cost_centre(user, charger.charger_id, cost_centre)
                    st.success(f"Saved. {verdict.message} Cost centre: {centre or 'none'}.")
                else:
                    st.warning(verdict.message)
            except AccessDenied as exc:
                st.error(str(exc))

# --------------------------------------------------------------------------- location address
if site is not None and site.site_id is not None:
    st.subheader(f"Address and map position — {site.name}")
    if site.latitude is None or site.longitude is None:
        st.warning(f"{site.name} has no map position. FlowBankOS does not look addresses up, so enter the "
                   "coordinates (for example from a maps app) to put it on the map.")
    with st.form(f"location_{site.site_id}"):
        address = st.text_input("Address", value=site.address or "", key="loc_address")
        lat_col, lon_col = st.columns(2)
        latitude = lat_col.number_input("Latitude", min_value=-90.0, max_value=90.0, value=site.latitude,
                                        format="%.5f", key="loc_lat")
        longitude = lon_col.number_input("Longitude", min_value=-180.0, max_value=180.0, value=site.longitude,
                                         format="%.5f", key="loc_lon")
        placed = st.form_submit_button("Save address and position", key="save_location")
    if placed:
        try:
            svc.set_site_location(user, site.site_id, address=address, latitude=latitude, longitude=longitude)
            st.success(f"Saved the address and position of {site.name}.")
        except AccessDenied as exc:
            st.error(str(exc))
        except ValueError as exc:
            st.warning(str(exc))
