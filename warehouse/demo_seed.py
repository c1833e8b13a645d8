"""The demo's people: one user per role, attached to the demo's chargers and site.

``flowbank run`` and ``flowbank dashboard`` call :func:`seed_demo_access` so that signing in as
each demo user through the local OpenID Connect provider shows a different, meaningful scope.
Seeding is idempotent and never takes anything away from an existing installation: it only adds
the demo users' own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import Connection

from control.access import Role
from warehouse import access_store

DEMO_ORG: Final = "acme"
DEMO_ORG_NAME: Final = "Acme Logistics"


@dataclass(frozen=True, slots=True)
class DemoUser:
    user_id: str
    email: str
    display_name: str
    role: Role
    what: str  # what signing in as them shows, for the run command's printout


DEMO_USERS: Final[tuple[DemoUser, ...]] = (
    DemoUser("demo-owner", "owner@flowbank.demo", "Olivia Owner", Role.OWNER,
             "owns the first two chargers; invites, schedules, modes, load view"),
    DemoUser("demo-member", "member@flowbank.demo", "Max Member", Role.MEMBER,
             "family member on the first charger; start/stop, reservations, own sessions"),
    DemoUser("demo-fleet", "fleet@flowbank.demo", "Fatima Fleet", Role.FLEET_MANAGER,
             f"fleet manager of {DEMO_ORG_NAME}, which runs the demo site"),
    DemoUser("demo-support", "support@flowbank.demo", "Sam Support", Role.SUPPORT,
             "support staff: every charger, alerts, troubleshooting"),
    DemoUser("demo-installer", "installer@flowbank.demo", "Ian Installer", Role.INSTALLER,
             "installer: device profiles and diagnostics after a one-time code"),
    DemoUser("demo-operator", "operator@flowbank.demo", "Oscar Operator", Role.OPERATOR,
             "operator (back office): everything, operator limits"),
)


def seed_demo_access(conn: Connection, *, charger_ids: Sequence[str], site_id: str | None, now: datetime,
                     site_address: str = "1 Depot Road, Utrecht", latitude: float = 52.0907,
                     longitude: float = 5.1214) -> tuple[DemoUser, ...]:
    """Create the demo users and their roles on ``charger_ids`` (and ``site_id`` for the fleet)."""
    for user in DEMO_USERS:
        existing = access_store.user_by_email(conn, user.email)
        if existing is None:
            access_store.create_user(conn, user_id=user.user_id, email=user.email, display_name=user.display_name,
                                     now=now)
    ids = {u.role: (access_store.user_by_email(conn, u.email) or u).user_id for u in DEMO_USERS}
    for charger_id in charger_ids[:2]:
        access_store.grant_charger_role(conn, ids[Role.OWNER], charger_id, Role.OWNER, by="demo")
    if charger_ids:
        access_store.grant_charger_role(conn, ids[Role.MEMBER], charger_ids[0], Role.MEMBER, by=ids[Role.OWNER])
    for role in (Role.SUPPORT, Role.INSTALLER, Role.OPERATOR):
        access_store.grant_platform_role(conn, ids[role], role)
    access_store.ensure_organisation(conn, DEMO_ORG, DEMO_ORG_NAME)
    access_store.grant_fleet_manager(conn, ids[Role.FLEET_MANAGER], DEMO_ORG)
    if site_id is not None:
        conn.execute("update sites set org_id = coalesce(org_id, %s), address = coalesce(address, %s),"
                     " latitude = coalesce(latitude, %s), longitude = coalesce(longitude, %s) where site_id = %s",
                     (DEMO_ORG, site_address, latitude, longitude, site_id))
    return DEMO_USERS
