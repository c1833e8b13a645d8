"""Accept an invitation: the page an invitation link (``/invite?token=...``) opens.

The link's token comes from the address bar, or, for a link opened before signing in, from the
invitation remembered across the sign-in (:mod:`dashboards.invite_flow`). The token is checked by
:mod:`dashboards.sharing_service`: it must be current, unused, and for the signed-in user's
e-mail address. A remembered link is forgotten once used or refused for good; one for another
e-mail address is kept, so signing out and in with the right account still works.
"""

from __future__ import annotations

import psycopg
import streamlit as st
from streamlit.errors import StreamlitAPIException

from control.sharing import InviteStatus
from dashboards import invite_flow, runtime, ui
from dashboards.sharing_service import InviteLink, InviteRefused, SharingError, from_settings
from warehouse.queries import QueryError

# Signed out: the sign-in screen, remembering the link. Also here, not only in app.py: a page run
# on its own (AppTest) must not skip the sign-in. The pages live in views/, not pages/, because a
# pages/ folder beside app.py put a fresh server in Streamlit's old folder mode (a raw file list in
# the sidebar for signed-out visitors, /live running that file as the main script).
user = runtime.current_user(sign_in_notice=invite_flow.before_sign_in())
st.title("Invitation")

accepted = invite_flow.just_accepted()
if accepted is not None:  # the app shows the charger instead; this is for the page run on its own
    st.success(invite_flow.accepted_message(accepted), icon=":material/check_circle:")
    try:
        st.page_link("views/live.py", label="Open my chargers", icon=":material/ev_station:")
    except StreamlitAPIException:  # not in this run's navigation (a page opened on its own)
        st.caption("Choose **Chargers** in the sidebar to start charging.")
    st.stop()

token = st.query_params.get("token")
pending = None if token else invite_flow.pending_after_sign_in()
link: InviteLink | None = token or (pending.link if pending is not None else None)
if link is None:
    st.info("Open the invitation link from your e-mail (or scan its QR code) to accept an invitation. "
            "The link ends with `?token=...`; if it was cut off, copy the whole link.")
    st.stop()


def _not_now() -> None:
    invite_flow.forget(pending, draw=False)  # a callback: the app's next run expires the cookie


svc = from_settings(runtime.access(), runtime.settings())
try:
    preview = svc.preview(user, link)
except InviteRefused as exc:
    invite_flow.forget(pending)
    st.error(str(exc), icon=":material/link_off:")
    st.stop()
except (psycopg.Error, QueryError) as exc:
    ui.error_box("the invitation", exc)
    st.stop()

st.markdown(f"**{preview.inviter_name}** invited you to share the charger **{preview.charger_name}** on FlowBankOS.")
if preview.refusal is not None:
    st.error(preview.refusal, icon=":material/block:")
    if preview.status is InviteStatus.PENDING:  # open, but for another e-mail address
        st.button("Sign out", on_click=st.logout, key="invite_sign_out")
        if pending is not None:
            st.button("Not now", on_click=_not_now, key="invite_not_now")
    else:  # expired, used or revoked: nothing more this link can do
        invite_flow.forget(pending)
    st.stop()

st.caption(f"As a member you can start and stop charging, reserve time slots and see your own sessions. "
           f"The invitation {preview.expiry_text}.")
if st.button("Accept invitation", type="primary", key="invite_accept"):
    try:
        result = svc.accept(user, link)
    except SharingError as exc:  # expired meanwhile, used elsewhere, the member cap reached
        invite_flow.forget(pending)
        st.error(str(exc), icon=":material/block:")
        st.stop()
    except (psycopg.Error, QueryError) as exc:
        ui.error_box("accepting the invitation", exc)
        st.stop()
    invite_flow.accepted(result, pending)
    st.rerun()
if pending is not None:
    st.button("Not now", on_click=_not_now, key="invite_not_now",
              help="Forget this invitation here; the link in the e-mail still works until it expires.")
