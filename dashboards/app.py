"""FlowBankOS dashboards: ``streamlit run dashboards/app.py`` (or ``flowbank dashboard``).

The entry point signs the user in, shows only the pages their roles open, keeps the active
location and charger in the sidebar on every page, and runs the chosen page. Pages are thin:
they call ``dashboards.services`` (which checks access) and draw.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboards/app.py` puts dashboards/ (not the project) on sys.path.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import psycopg  # noqa: E402
import streamlit as st  # noqa: E402

from dashboards import context, invite_flow, runtime  # noqa: E402
from dashboards.nav import invite_page, pages_for  # noqa: E402

st.set_page_config(page_title="FlowBankOS", page_icon=":material/ev_station:", layout="wide")

try:
    # Signed out with an invitation link: remembered across the sign-in (dashboards/invite_flow.py).
    user = runtime.current_user(sign_in_notice=invite_flow.before_sign_in())
except psycopg.Error as exc:
    st.error(f"The FlowBankOS database is not reachable, so nothing can be shown: {exc.__class__.__name__}. "
             "Check that PostgreSQL is running (`flowbank services`).")
    st.stop()

pending_invitation = invite_flow.pending_after_sign_in()
invite_flow.write_cookie()
if invite_flow.just_accepted() is None and (
        pending_invitation is not None or (not user.roles and "token" in st.query_params)):
    # An invitation opened before signing in, or by someone without roles: accepting it is what
    # gives them the charger. The page forgets the remembered link once it is used.
    st.navigation([invite_page()], position="hidden").run()
    st.stop()

if not user.roles:
    st.title(f"Welcome, {user.display_name}")
    st.info("Your account has no chargers, sites or roles yet. Ask a charger's owner to invite you "
            "(the invitation link signs you in and adds the charger), or your operator to give you a role.")
    st.button("Sign out", on_click=st.logout, key="sign_out_empty")
    st.stop()

with st.sidebar:
    st.markdown(f"**{user.display_name}**  \n{user.email}")
    st.caption(" · ".join(sorted(r.label for r in user.roles)))
    context.sidebar(user)
    st.button("Sign out", on_click=st.logout, key="sign_out")

sections = pages_for(user.roles)
sections.setdefault("Account", []).append(invite_page())
page = st.navigation(sections, position="sidebar")
if invite_flow.just_accepted() is not None:
    # Straight to the home page (Chargers, for an owner or member) with the charger just shared
    # active (context.focus_charger) and the news above it.
    home = next((p for group in sections.values() for p in group if p.url_path == ""), None)
    if home is not None and page.url_path == "invite":
        st.switch_page(home)
    invite_flow.show_accepted_banner()
page.run()
