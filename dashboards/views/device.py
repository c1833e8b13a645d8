"""Device & V2G: the active charger's profile, live diagnostics, V2G readiness and an estimate."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from control.v2g import EstimateError, RevenueAssumptions, V2GReadiness, estimate_revenue
from dashboards import charging_device_service as svc
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()
now = datetime.now(UTC)

st.title("Device & V2G")
st.caption(ctx.label)

if ctx.charger is None:
    st.info("Choose a charger in the sidebar to see its device profile.")
    st.stop()
charger_id = ctx.charger.charger_id

try:
    profile = svc.device_profile(user, runtime.access(), charger_id)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except (QueryError, LookupError, ValueError) as exc:
    ui.error_box(f"the device profile of {charger_id}", exc)
    st.stop()

d = profile.device
st.subheader("Profile", anchor=False)
p1, p2, p3 = st.columns(3)
p1.markdown(f"**Vendor**  \n{d.vendor or 'not reported'}  \n**Model**  \n{d.model or 'not reported'}")
p2.markdown(f"**Serial number**  \n{d.serial_number or 'not reported'}  \n**Firmware**  \n"
            f"{d.firmware_version or 'not reported'}")
p3.markdown(f"**OCPP version**  \n{d.ocpp_version or 'not reported'}  \n**Hardware maximum**  \n"
            f"{ui.fmt_a(profile.hardware_max_a)}{f' × {profile.phases} phase(s)' if profile.phases else ''} "
            f"({profile.hardware_max_source})")
st.caption("Vendor, model, serial, firmware and OCPP version come from the charger's BootNotification.")


@st.fragment(run_every="2s")
def diagnostics() -> None:
    moment = datetime.now(UTC)
    try:
        fresh = svc.device_profile(user, runtime.access(), charger_id)
    except (AccessDenied, QueryError, LookupError, ValueError) as exc:
        ui.error_box(f"the live diagnostics of {charger_id}", exc)
        return
    if not fresh.connectors:
        st.info("The charger has not reported any connector yet: no live diagnostics.")
        return
    for row in fresh.connectors:
        live = row.live
        status = live.status.value if live.online else "Offline"
        with st.container(border=True, key=f"diag_{row.charger_id}_{row.connector_id}"):
            a, b, c, e = st.columns(4)
            with a:
                st.markdown(f"**Connector {row.connector_id}**")
                ui.status_chip(status)
            b.metric("Last seen", ui.fmt_ago(live.last_seen_at or live.updated_at, moment))
            c.metric("Current", ui.fmt_a(live.current_a))
            e.metric("Error code", live.error_code or "none")
            st.caption(f"OCPP connector status: {live.connector_status or 'not reported'} · power "
                       f"{ui.fmt_kw(live.power_w)} · per-phase currents are not reported by this charger")


st.subheader("Live diagnostics", anchor=False)
diagnostics()

st.subheader("Vehicle-to-grid (V2G)", anchor=False)
badge = profile.badge
colour = {V2GReadiness.READY: "green", V2GReadiness.COMING_SOON: "blue", V2GReadiness.NOT_SUPPORTED: "gray"}
st.markdown(f":{colour[badge.readiness]}-badge[{badge.readiness.label}] {badge.explanation}")

st.markdown("**Before V2G can be switched on**")
for item in profile.prerequisites:
    st.markdown(f"{':white_check_mark:' if item.met else ':x:'} {item.name}"
                + ("" if item.met else f" — *{item.hint}*"))

prefs = profile.preferences
notify = st.toggle("Notify me when V2G becomes possible on this charger", value=prefs.notify, key="v2g_notify")
if notify != prefs.notify:
    try:
        svc.set_v2g_notify(user, runtime.access(), charger_id, notify, now=now)
        st.toast("We will let you know." if notify else "No V2G notifications for this charger.")
    except (AccessDenied, QueryError) as exc:
        st.error(f"Could not save the notification wish: {exc}")

if profile.may_change:
    with st.form("v2g_confirm"):
        vehicle = st.checkbox("My car supports bidirectional charging", value=prefs.vehicle_bidirectional,
                              key="v2g_vehicle")
        grid = st.checkbox("My grid operator approved feeding in", value=prefs.grid_approved, key="v2g_grid")
        if st.form_submit_button("Save confirmations"):
            try:
                svc.confirm_v2g_prerequisites(user, runtime.access(), charger_id, vehicle_bidirectional=vehicle,
                                              grid_approved=grid, now=now)
                st.rerun()
            except (AccessDenied, QueryError) as exc:
                st.error(f"Not saved: {exc}")

locked = not (profile.v2g_unlocked and profile.may_change)
if locked:
    unmet = [p.name for p in profile.prerequisites if not p.met]
    st.caption("Discharge settings are locked" + (f" until: {'; '.join(unmet)}." if unmet else
                                                  ": your role does not allow changing them."))
with st.form("v2g_settings"):
    w1, w2 = st.columns(2)
    start = w1.time_input("Discharge from", value=prefs.discharge_start or time(17, 0), disabled=locked,
                          key="v2g_start")
    end = w2.time_input("Discharge until", value=prefs.discharge_end or time(21, 0), disabled=locked, key="v2g_end")
    reserve = st.slider("Minimum charge kept in the car (%)", 10, 90, int(prefs.min_soc_pct or 50), disabled=locked,
                        key="v2g_reserve")
    price = st.number_input("Only discharge above this price (€/kWh)", min_value=0.0, max_value=5.0, step=0.01,
                            value=float(prefs.price_threshold_eur_kwh or 0.30), disabled=locked, key="v2g_price")
    if st.form_submit_button("Save V2G settings", disabled=locked):
        try:
            svc.save_v2g_settings(user, runtime.access(), charger_id, discharge_start=start, discharge_end=end,
                                  min_soc_pct=float(reserve), price_threshold_eur_kwh=price, now=now)
            st.success("V2G settings saved.")
        except (AccessDenied, svc.V2GNotReadyError, ValueError, QueryError) as exc:
            st.error(f"Not saved: {exc}")

st.subheader("Revenue estimator", anchor=False)
e1, e2, e3, e4, e5 = st.columns(5)
battery = e1.number_input("Battery (kWh)", 10.0, 200.0, 60.0, 5.0, key="est_battery")
cycles = e2.number_input("Cycles / month", 0.0, 60.0, 8.0, 1.0, key="est_cycles")
depth = e3.number_input("Depth used (%)", 5.0, 100.0, 50.0, 5.0, key="est_depth")
spread = e4.number_input("Spread (€/kWh)", 0.0, 2.0, 0.12, 0.01, key="est_spread")
efficiency = e5.number_input("Round-trip efficiency (%)", 50.0, 100.0, 85.0, 1.0, key="est_eff")
try:
    estimate = estimate_revenue(RevenueAssumptions(battery, cycles, depth, spread, efficiency / 100))
    r1, r2, r3 = st.columns(3)
    r1.metric("Estimated per month", f"€{estimate.revenue_eur_month:,.2f}")
    r2.metric("Estimated per year", f"€{estimate.revenue_eur_year:,.2f}")
    r3.metric("Energy to the grid", f"{estimate.energy_out_kwh_month:,.0f} kWh/month")
    st.caption(f"**{estimate.label}** No battery wear, fees or taxes are counted.")
except EstimateError as exc:
    st.error(f"The estimate cannot be computed: {exc}")
