"""Users, roles and scopes in PostgreSQL (migration 0008); the policy is :mod:`control.access`.

Everything here is a plain read or write; deciding whether a user may do something is the
caller's job (``dashboards.access``), which loads :class:`control.access.Grants` from
:func:`load_grants` and filters with :func:`visible_chargers` in SQL, so a fleet of thousands of
chargers is scoped by the database, not by a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import dict_row

from control.access import CHARGER_ROLES, PLATFORM_ROLES, ChargerRef, Grants, Role


class UserNotFoundError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    email: str
    display_name: str
    time_zone: str = "UTC"
    disabled: bool = False


_SELECT_USER = "select user_id, email, display_name, time_zone, disabled from users"
_RETURNING_USER = " returning user_id, email, display_name, time_zone, disabled"


def _user(row: dict[str, object]) -> UserRow:
    return UserRow(str(row["user_id"]), str(row["email"]), str(row["display_name"]), str(row["time_zone"]),
                   bool(row["disabled"]))


def get_user(conn: Connection, user_id: str) -> UserRow:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT_USER + " where user_id = %s", (user_id,)).fetchone()
    if row is None:
        raise UserNotFoundError(f"no user {user_id!r}")
    return _user(row)


def user_by_email(conn: Connection, email: str) -> UserRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT_USER + " where lower(email) = lower(%s)", (email,)).fetchone()
    return None if row is None else _user(row)


def create_user(conn: Connection, *, user_id: str, email: str, display_name: str, now: datetime,
                time_zone: str = "UTC") -> UserRow:
    """Insert a user (e-mail unique, case-insensitively); return the stored row."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into users (user_id, email, display_name, time_zone, created_at) values (%s, %s, %s, %s, %s)"  # noqa: S608 - fixed text
            " on conflict (lower(email)) do update set display_name = users.display_name" + _RETURNING_USER,
            (user_id, email.strip(), display_name.strip() or email.strip(), time_zone, now)).fetchone()
    if row is None:  # insert ... returning / update of a locked row always yield one
        raise RuntimeError("the users table returned no row")
    return _user(row)


def record_sign_in(conn: Connection, *, email: str, display_name: str, issuer: str | None, subject: str | None,
                   now: datetime, new_id: Callable[[], str]) -> UserRow:
    """The user behind an OpenID Connect sign-in, created on first sight.

    Matched by (issuer, subject) first, the identity the provider guarantees; else by e-mail,
    which links a user seeded or invited by e-mail to their first sign-in. The e-mail on file
    follows the provider's, and the display name is only filled in, never overwritten (the
    user may have chosen their own).
    """
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = None
        if subject:
            row = cur.execute(_SELECT_USER + " where oidc_issuer is not distinct from %s"
                              " and oidc_subject = %s for update", (issuer, subject)).fetchone()
        if row is None:
            row = cur.execute(_SELECT_USER + " where lower(email) = lower(%s) for update",
                              (email,)).fetchone()
        if row is None:
            row = cur.execute(
                "insert into users (user_id, email, display_name, oidc_issuer, oidc_subject, created_at,"  # noqa: S608 - fixed text
                " last_login_at) values (%s, %s, %s, %s, %s, %s, %s)" + _RETURNING_USER,
                (new_id(), email.strip(), display_name.strip() or email.strip(), issuer, subject, now, now)).fetchone()
        else:
            row = cur.execute(
                "update users set last_login_at = %s, email = %s,"  # noqa: S608 - fixed text
                " oidc_issuer = coalesce(oidc_issuer, %s), oidc_subject = coalesce(oidc_subject, %s)"
                " where user_id = %s" + _RETURNING_USER,
                (now, email.strip(), issuer, subject, row["user_id"])).fetchone()
    if row is None:  # insert ... returning / update of a locked row always yield one
        raise RuntimeError("the users table returned no row")
    return _user(row)


def load_grants(conn: Connection, user_id: str) -> Grants:
    """Every role the user holds, at every scope."""
    with conn.cursor() as cur:
        chargers = {cid: Role(role) for cid, role in
                    cur.execute("select charger_id, role from memberships where user_id = %s", (user_id,))}
        orgs = frozenset(org for (org,) in
                         cur.execute("select org_id from org_memberships where user_id = %s", (user_id,)))
        platform = frozenset(Role(r) for (r,) in
                             cur.execute("select role from user_roles where user_id = %s", (user_id,)))
    return Grants(user_id, chargers, orgs, platform)


def grant_charger_role(conn: Connection, user_id: str, charger_id: str, role: Role, *, by: str | None = None) -> None:
    if role not in CHARGER_ROLES:
        raise ValueError(f"{role} is not a charger role")
    conn.execute("insert into memberships (user_id, charger_id, role, created_by) values (%s, %s, %s, %s)"
                 " on conflict (user_id, charger_id) do update set role = excluded.role",
                 (user_id, charger_id, role.value, by))


def grant_platform_role(conn: Connection, user_id: str, role: Role) -> None:
    if role not in PLATFORM_ROLES:
        raise ValueError(f"{role} is not a platform role")
    conn.execute("insert into user_roles (user_id, role) values (%s, %s) on conflict do nothing", (user_id, role.value))


def ensure_organisation(conn: Connection, org_id: str, name: str) -> None:
    conn.execute("insert into organisations (org_id, name) values (%s, %s)"
                 " on conflict (org_id) do update set name = excluded.name", (org_id, name))


def grant_fleet_manager(conn: Connection, user_id: str, org_id: str) -> None:
    conn.execute("insert into org_memberships (user_id, org_id, role) values (%s, %s, 'fleet_manager')"
                 " on conflict do nothing", (user_id, org_id))


_REF_SELECT = ("select c.charger_id, c.site_id, s.org_id from chargers c"
               " left join sites s on s.site_id = c.site_id")


def charger_ref(conn: Connection, charger_id: str) -> ChargerRef | None:
    row = conn.execute(f"{_REF_SELECT} where c.charger_id = %s", (charger_id,)).fetchone()
    return None if row is None else ChargerRef(row[0], row[1], row[2])


def visible_chargers(conn: Connection, grants: Grants, *, site_id: str | None = None,
                     charger_ids: Sequence[str] | None = None) -> list[ChargerRef]:
    """The chargers these grants may see (``Permission.VIEW``), ordered by site then id.

    Every platform role sees every charger (see ``control.access.GRANTS``); other users see the
    chargers they own or were invited to and every charger on their organisations' sites.
    """
    where: list[str] = []
    params: list[object] = []
    if not grants.platform_roles:
        where.append("(c.charger_id = any(%s) or s.org_id = any(%s))")
        params += [list(grants.charger_roles), list(grants.org_ids)]
    if site_id is not None:
        where.append("c.site_id = %s")
        params.append(site_id)
    if charger_ids is not None:
        where.append("c.charger_id = any(%s)")
        params.append(list(charger_ids))
    clause = f" where {' and '.join(where)}" if where else ""
    rows = conn.execute(f"{_REF_SELECT}{clause} order by c.site_id nulls last, c.charger_id", params).fetchall()
    return [ChargerRef(r[0], r[1], r[2]) for r in rows]


def log_access(conn: Connection, *, ts: datetime, user_id: str | None, action: str, charger_id: str | None,
               allowed: bool, detail: str | None = None) -> None:
    conn.execute("insert into access_log (ts, user_id, action, charger_id, allowed, detail)"
                 " values (%s, %s, %s, %s, %s, %s)", (ts, user_id, action, charger_id, allowed, detail))
