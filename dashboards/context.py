"""The always-visible context: the active location and charger, chosen in the sidebar.

Pages read :func:`active` instead of keeping their own selection, so the location and charger
stay the same as the user moves between pages, and every page can name them in its heading
("Settings — Home / Driveway").
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboards import runtime
from dashboards.access import Principal
from warehouse.portal_store import ChargerSummary, Location, charger_summaries, locations

_SITE_KEY = "ctx_site"
_CHARGER_KEY = "ctx_charger"
_FOCUS_KEY = "ctx_focus"
_ALL = "__all__"


@dataclass(frozen=True, slots=True)
class Context:
    locations: list[Location]
    chargers: list[ChargerSummary]       # the chargers of the active location (all visible ones for "All")
    site_id: str | None                  # None: all locations
    charger: ChargerSummary | None

    @property
    def label(self) -> str:
        where = next((loc.name for loc in self.locations if loc.site_id == self.site_id), "All locations")
        return f"{where} / {self.charger.name}" if self.charger else where


def _load(user: Principal) -> tuple[list[Location], list[ChargerSummary]]:
    ids = runtime.access().visible_ids(user)
    with runtime.pool().connection() as conn:
        summaries = charger_summaries(conn, ids)
    return locations(summaries), summaries


def sidebar(user: Principal) -> Context:
    """Draw the location and charger switchers; remember the choice for the session."""
    locs, summaries = _load(user)
    wanted = st.session_state.pop(_FOCUS_KEY, None)
    focus = next((s for s in summaries if s.charger_id == wanted), None)
    if focus is not None:
        st.session_state[_SITE_KEY] = focus.site_id or ""
        st.session_state[_CHARGER_KEY] = focus.charger_id
    site_options = [_ALL] + [loc.site_id or "" for loc in locs]
    names = {loc.site_id or "": f"{loc.name} ({loc.chargers})" for loc in locs} | {_ALL: "All locations"}
    if st.session_state.get(_SITE_KEY) not in site_options:
        st.session_state[_SITE_KEY] = site_options[1] if len(site_options) == 2 else _ALL
    site_choice = st.selectbox("Location", site_options, key=_SITE_KEY, format_func=lambda k: names.get(k, k))
    site_id = None if site_choice == _ALL else (site_choice or None)
    here = summaries if site_choice == _ALL else [s for s in summaries if (s.site_id or "") == site_choice]
    charger_options = [s.charger_id for s in here]
    label = {s.charger_id: f"{s.name} · {s.status}" for s in here}
    charger = None
    if charger_options:
        if st.session_state.get(_CHARGER_KEY) not in charger_options:
            st.session_state[_CHARGER_KEY] = charger_options[0]
        chosen = st.selectbox("Charger", charger_options, key=_CHARGER_KEY, format_func=lambda k: label.get(k, k))
        charger = next(s for s in here if s.charger_id == chosen)
    ctx = Context(locs, here, site_id, charger)
    st.session_state["ctx"] = ctx
    return ctx


def focus_charger(charger_id: str) -> None:
    """Make ``charger_id`` the active charger (and its location) at the next sidebar draw."""
    st.session_state[_FOCUS_KEY] = charger_id


SUPPORT_REQUEST_KEY = "support_charger_request"  # the alert feed asks the support pages to open a charger


def request_charger(charger_id: str) -> None:
    """Ask the next support page (troubleshooting, timeline) to open ``charger_id``."""
    st.session_state[SUPPORT_REQUEST_KEY] = charger_id


def charger_choices(ctx: Context, state_key: str) -> tuple[list[str], dict[str, str]]:
    """A support page's charger picker: the location's chargers (id -> label) and the one the alert
    feed asked for, first and preselected in ``state_key``; else the active charger."""
    options = [c.charger_id for c in ctx.chargers]
    names = {c.charger_id: f"{c.name} ({c.charger_id}) · {c.status}" for c in ctx.chargers}
    requested = st.session_state.pop(SUPPORT_REQUEST_KEY, None)
    if requested and requested not in options:
        options.insert(0, requested)
        names[requested] = requested
    if requested:
        st.session_state[state_key] = requested
    elif st.session_state.get(state_key) not in options and ctx.charger is not None:
        st.session_state[state_key] = ctx.charger.charger_id
    return options, names


def active() -> Context:
    """The context the sidebar drew in this run (pages run after the sidebar)."""
    ctx = st.session_state.get("ctx")
    if not isinstance(ctx, Context):
        raise RuntimeError("the sidebar context was not drawn; run pages through dashboards/app.py")
    return ctx
