"""Installer mode: entry with a one-time code (issued here by support or an operator), a session
timer, the device profile from BootNotification and live diagnostics meters (User Story 10)."""

from __future__ import annotations

import streamlit as st

from control.access import Permission
from control.installer import SESSION_LENGTH, InstallerCodeError, remaining_text
from dashboards import context, fleet_ui, runtime
from dashboards.access import AccessDenied
from dashboards.installer_service import DeviceProfile

_NOT_REPORTED = "not reported by this charger"

user = runtime.current_user()
ctx = context.active()
svc = fleet_ui.installer_service()
acc = runtime.access()

st.title("Installer mode")

# --------------------------------------------------------------------------- issuing codes (back office)
if svc.may_issue(user):
    with st.expander("Issue a one-time installer code", expanded=False):
        sites = {loc.site_id: loc.name for loc in ctx.locations if loc.site_id is not None}
        site_choice = st.selectbox("For location", ["__any__", *sites], key="issue_site",
                                   format_func=lambda k: "Any location" if k == "__any__" else sites.get(k, k))
        hours = st.number_input("Valid for (hours)", min_value=1, max_value=168, value=24, key="issue_hours")
        if st.button("Issue code", key="issue_code"):
            try:
                issued = svc.issue_code(user, site_id=None if site_choice == "__any__" else site_choice,
                                        valid_hours=float(hours))
                st.session_state["issued_code"] = issued
            except (InstallerCodeError, AccessDenied) as exc:
                st.error(str(exc))
        issued_code = st.session_state.get("issued_code")
        if issued_code is not None:
            st.code(issued_code.code, language=None)
            st.caption(f"Give this code to the installer. It works once, until {issued_code.expires_at:%d %b %H:%M} "
                       "UTC. Only its fingerprint is stored: copy it now, it cannot be shown again.")

if not acc.check(user, Permission.INSTALL).allowed:
    st.info("Installer mode is for installers. You can issue codes above." if svc.may_issue(user) else
            "Your role does not include installer mode.")
    st.stop()

session = fleet_ui.load("your installer session", lambda: svc.session(user))

# --------------------------------------------------------------------------- locked: code entry
if session is None:
    st.subheader("🔒 Locked")
    st.write(f"Enter the one-time code you received from support. Installer mode then stays open for "
             f"{int(SESSION_LENGTH.total_seconds() // 60)} minutes.")
    with st.form("installer_entry"):
        typed = st.text_input("Installer code", placeholder="ABCD-EFGH", key="installer_code")
        entered = st.form_submit_button("Enter installer mode", type="primary", key="installer_enter")
    if entered:
        try:
            svc.redeem(user, typed)
        except InstallerCodeError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    st.stop()


# --------------------------------------------------------------------------- unlocked
open_session = session


@st.fragment(run_every="1s")
def timer() -> None:
    left = open_session.remaining(acc.now())
    if left.total_seconds() <= 0:
        st.rerun()  # back to the code entry
    scope = "every location" if open_session.site_id is None else f"location {open_session.site_id}"
    st.success(f"🔓 Installer mode for {scope}: {remaining_text(left)}", icon=":material/timer:")


timer()

charger = ctx.charger
if charger is None:
    st.info("Choose a charger in the sidebar to see its device profile.")
    st.stop()

charger_id = charger.charger_id
st.subheader(f"Device — {charger.site_name or 'No location'} / {charger.name}")


def _profile() -> DeviceProfile | None:
    try:
        return svc.device_profile(user, charger_id)
    except AccessDenied as exc:
        st.error(str(exc))
        return None


profile = fleet_ui.load("the device profile", _profile)
if profile is None:
    st.stop()
c = profile.charger
cols = st.columns(3)
cols[0].metric("Vendor / model", f"{c.vendor or '?'} {c.model or ''}".strip())
cols[1].metric("Serial number", profile.serial_number or "not reported")
cols[2].metric("Firmware", profile.firmware_version or "not reported")
st.caption(f"Charger id {c.charger_id} · OCPP {profile.ocpp_version or '?'} · last boot "
           + (f"{profile.last_boot_at:%Y-%m-%d %H:%M} UTC" if profile.last_boot_at else "not recorded")
           + " · from the charger's BootNotification")


@st.fragment(run_every="2s")
def diagnostics() -> None:
    st.markdown("**Live diagnostics**")
    try:
        live = svc.device_profile(user, charger_id).connectors
    except AccessDenied as exc:
        st.error(str(exc))
        return
    if not live:
        st.info("This charger has reported no connector state yet.")
        return
    now = acc.now()
    for conn in live:
        with st.container(border=True):
            st.markdown(f"Connector {conn.connector_id}: **{conn.status}**"
                        + ("" if conn.online else " (offline)"))
            m = st.columns(6)
            m[0].metric("Power", f"{(conn.power_w or 0) / 1000:.2f} kW" if conn.power_w is not None else "—")
            m[1].metric("Current", f"{conn.current_a:.1f} A" if conn.current_a is not None else "—")
            m[2].metric("Voltage", f"{conn.voltage_v:.0f} V" if conn.voltage_v is not None else "—")
            m[3].metric("Temperature", f"{conn.temperature_c:.1f} °C" if conn.temperature_c is not None else "—")
            m[4].metric("Error code", conn.error_code or "none")
            m[5].metric("Last seen", fleet_ui.ago(conn.last_seen_at, now))
            missing = [w for w, v in (("voltage", conn.voltage_v), ("temperature", conn.temperature_c)) if v is None]
            if missing:
                st.caption(f"{' and '.join(missing).capitalize()}: {_NOT_REPORTED} in the last hour.")


diagnostics()
