"""Which pages exist, where they sit in the sidebar, and which roles see them.

A page listed for a role is only navigation: the page's service calls still check every read and
action (``dashboards.access``). Hiding a page is a courtesy, not the protection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import streamlit as st

from control.access import Role

PAGES_DIR: Final = Path(__file__).resolve().parent / "views"

_O, _M, _F, _S, _I, _OP = Role.OWNER, Role.MEMBER, Role.FLEET_MANAGER, Role.SUPPORT, Role.INSTALLER, Role.OPERATOR
_EVERYONE: Final = frozenset(Role)


@dataclass(frozen=True, slots=True)
class PageSpec:
    section: str
    file: str
    title: str
    icon: str
    url_path: str
    roles: frozenset[Role]


PAGES: Final[tuple[PageSpec, ...]] = (
    PageSpec("Charging", "live.py", "Chargers", ":material/ev_station:", "chargers", frozenset({_O, _M, _F, _S, _OP})),
    PageSpec("Charging", "locations.py", "Locations", ":material/map:", "locations", frozenset({_O, _F, _OP})),
    PageSpec("Charging", "schedules.py", "Schedules & rules", ":material/schedule:", "schedules",
             frozenset({_O, _F, _OP})),
    PageSpec("Charging", "load.py", "Load", ":material/bolt:", "load", frozenset({_O, _F, _S, _OP})),
    PageSpec("Charging", "device.py", "Device & V2G", ":material/memory:", "device", frozenset({_O, _F, _S, _I, _OP})),
    PageSpec("Charging", "sharing.py", "Sharing & reservations", ":material/group:", "sharing",
             frozenset({_O, _M})),
    PageSpec("History", "history.py", "History", ":material/history:", "history", frozenset({_O, _M, _F, _S, _OP})),
    PageSpec("History", "analytics.py", "Analytics & exports", ":material/bar_chart:", "analytics",
             frozenset({_O, _M, _F, _OP})),
    PageSpec("History", "sql.py", "SQL", ":material/database:", "sql", frozenset({_S, _OP})),
    PageSpec("Fleet", "fleet.py", "Fleet overview", ":material/dashboard:", "fleet", frozenset({_F, _OP})),
    PageSpec("Fleet", "bulk.py", "Bulk actions", ":material/checklist:", "bulk", frozenset({_F, _OP})),
    PageSpec("Fleet", "fleet_schedule.py", "Departure schedule", ":material/view_timeline:", "fleet-schedule",
             frozenset({_F, _OP})),
    PageSpec("Support", "alerts.py", "Alert feed", ":material/notifications_active:", "alerts",
             frozenset({_S, _OP, _F})),
    PageSpec("Support", "timeline.py", "Charger timeline", ":material/timeline:", "timeline",
             frozenset({_S, _OP})),
    PageSpec("Support", "troubleshoot.py", "Troubleshooting", ":material/build:", "troubleshoot",
             frozenset({_S, _OP})),
    PageSpec("Support", "tickets.py", "Tickets", ":material/confirmation_number:", "tickets",
             frozenset({_S, _OP})),
    PageSpec("Account", "notifications.py", "Notifications", ":material/notifications:", "notifications", _EVERYONE),
    PageSpec("Install", "installer.py", "Installer mode", ":material/construction:", "installer",
             frozenset({_I, _S, _OP})),  # support issues the one-time codes there
)


def page_path(spec: PageSpec) -> Path:
    return PAGES_DIR / spec.file


def visible_specs(roles: Iterable[Role]) -> list[PageSpec]:
    held = frozenset(roles)
    return [spec for spec in PAGES if spec.roles & held]


def pages_for(roles: Iterable[Role]) -> dict[str, list[st.Page]]:
    """``st.navigation``'s sections for a user holding ``roles`` (empty when none applies)."""
    sections: dict[str, list[st.Page]] = {}
    first = True
    for spec in visible_specs(roles):
        if not page_path(spec).exists():  # pages still being written; tests/unit check every one exists
            continue
        page = st.Page(str(page_path(spec)), title=spec.title, icon=spec.icon, url_path=spec.url_path,
                       default=first)
        first = False
        sections.setdefault(spec.section, []).append(page)
    return sections


def invite_page() -> st.Page:
    """The accept-invitation page: reached only through an invitation link, never listed."""
    return st.Page(str(PAGES_DIR / "invite.py"), title="Accept invitation", icon=":material/mail:",
                   url_path="invite", visibility="hidden")
