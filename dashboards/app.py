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

from dashboards import context, runtime  # noqa: E402
from dashboards.nav import invite_page, pages_for  # noqa: E402

st.set_page_config(page_title="FlowBankOS", page_icon=":material/ev_station:", layout="wide")

try:
    user = runtime.current_user()
except psycopg.Error as exc:
    st.error(f"The FlowBankOS database is not reachable, so nothing can be shown: {exc.__class__.__name__}. "
             "Check that PostgreSQL is running (`flowbank services`).")
    st.stop()

if not user.roles and "token" in st.query_params:
    # Someone invited to a charger opens their link: accepting it is what gives them a role.
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
st.navigation(sections, position="sidebar").run()
