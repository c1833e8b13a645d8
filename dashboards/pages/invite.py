"""Accept an invitation: the page an invitation link (``/invite?token=...``) opens.

Works for a signed-in user who has no roles yet (the usual case: the invitation is how they get
their first charger). The token is checked by :mod:`dashboards.sharing_service`: it must be
current, unused, and for the signed-in user's e-mail address.
"""

from __future__ import annotations

import psycopg
import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboards import runtime, ui
from dashboards.sharing_service import Accepted, InviteRefused, SharingError, from_settings
from warehouse.queries import QueryError

_ACCEPTED = "invite_accepted"

user = runtime.current_user()
st.title("Invitation")

accepted = st.session_state.get(_ACCEPTED)
if isinstance(accepted, Accepted):
    what = "already shared" if accepted.already else f"now share as {accepted.role.label.lower()}"
    st.success(f"You {what} **{accepted.charger_name}**. It is in your charger list: no hardware to scan.",
               icon=":material/check_circle:")
    try:
        st.page_link("pages/live.py", label="Open my chargers", icon=":material/ev_station:")
    except StreamlitAPIException:  # not in this run's navigation (a page opened on its own)
        st.caption("Choose **Chargers** in the sidebar to start charging.")
    st.stop()

token = st.query_params.get("token")
if not token:
    st.info("Open the invitation link from your e-mail (or scan its QR code) to accept an invitation. "
            "The link ends with `?token=...`; if it was cut off, copy the whole link.")
    st.stop()

svc = from_settings(runtime.access(), runtime.settings())
try:
    preview = svc.preview(user, token)
except InviteRefused as exc:
    st.error(str(exc), icon=":material/link_off:")
    st.stop()
except (psycopg.Error, QueryError) as exc:
    ui.error_box("the invitation", exc)
    st.stop()

st.markdown(f"**{preview.inviter_name}** invited you to share the charger **{preview.charger_name}** on FlowBankOS.")
if preview.refusal is not None:
    st.error(preview.refusal, icon=":material/block:")
    if "signed in as" in preview.refusal:
        st.button("Sign out", on_click=st.logout, key="invite_sign_out")
    st.stop()

st.caption(f"As a member you can start and stop charging, reserve time slots and see your own sessions. "
           f"The invitation {preview.expiry_text}.")
if st.button("Accept invitation", type="primary", key="invite_accept"):
    try:
        result = svc.accept(user, token)
    except SharingError as exc:
        st.error(str(exc), icon=":material/block:")
        st.stop()
    except (psycopg.Error, QueryError) as exc:
        ui.error_box("accepting the invitation", exc)
        st.stop()
    st.session_state[_ACCEPTED] = result
    del st.query_params["token"]  # used up: a reload must not try again
    st.rerun()
