"""Shared access in PostgreSQL (migration 0008): invitations, memberships, the member cap,
reservations and who used a shared charger (``sessions.id_tag`` -> ``user_tokens.user_id``).

Plain reads and writes; the rules are :mod:`control.sharing` and the access checks the caller's
(``dashboards.sharing_service``). Writes that must not race (the member cap, accepting an
invitation once) take the charger's row lock with :func:`lock_charger` inside the caller's
transaction. Overlapping reservations are refused by the table's exclusion constraint whatever
the caller checked before: :func:`insert_reservation` raises :class:`ReservationOverlapError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from warehouse.queries import Connection, NotFoundError, _fetch


class ReservationOverlapError(RuntimeError):
    """The database refused a reservation overlapping a live one (another caller won the race)."""


@dataclass(frozen=True, slots=True)
class InviteRow:
    invite_id: str
    charger_id: str
    charger_name: str
    email: str
    role: str
    created_by: str
    created_by_name: str
    created_at: datetime
    expires_at: datetime
    sent_count: int
    accepted_at: datetime | None
    accepted_by: str | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    email: str
    display_name: str
    role: str            # owner | member
    since: datetime
    invited_by: str | None


@dataclass(frozen=True, slots=True)
class ReservationRow:
    reservation_id: str
    charger_id: str
    user_id: str
    user_name: str
    starts_at: datetime
    ends_at: datetime
    note: str | None
    created_at: datetime
    cancelled_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One user's (or one unassigned tag's) use of a charger in a period."""

    user_id: str | None      # None: the tag belongs to nobody
    display_name: str | None
    id_tag: str | None       # set only when user_id is None
    sessions: int
    energy_wh: float
    currency: str | None     # None: nothing costed
    net_nano: int
    vat_nano: int
    costed_sessions: int
    no_tariff_sessions: int


# --------------------------------------------------------------------------- chargers


def charger_name(conn: Connection, charger_id: str) -> str:
    row = conn.execute("select coalesce(display_name, charger_id) from chargers where charger_id = %s",
                       (charger_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no charger {charger_id!r}")
    return str(row[0])


def lock_charger(conn: Connection, charger_id: str) -> int | None:
    """Take the charger's row lock for the caller's transaction; return its member cap."""
    row = conn.execute("select member_cap from chargers where charger_id = %s for update", (charger_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no charger {charger_id!r}")
    return None if row[0] is None else int(row[0])


def member_cap(conn: Connection, charger_id: str) -> int | None:
    row = conn.execute("select member_cap from chargers where charger_id = %s", (charger_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no charger {charger_id!r}")
    return None if row[0] is None else int(row[0])


def set_member_cap(conn: Connection, charger_id: str, cap: int | None) -> None:
    conn.execute("update chargers set member_cap = %s where charger_id = %s", (cap, charger_id))


# --------------------------------------------------------------------------- members


def members(conn: Connection, charger_id: str) -> list[MemberRow]:
    """Everyone with a role on the charger: owners first, then by name."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select m.user_id, u.email, u.display_name, m.role, m.created_at, m.created_by"
            " from memberships m join users u using (user_id) where m.charger_id = %s"
            " order by m.role = 'owner' desc, lower(u.display_name), m.user_id", (charger_id,)).fetchall()
    return [MemberRow(r["user_id"], r["email"], r["display_name"], r["role"], r["created_at"], r["created_by"])
            for r in rows]


def owner_names(conn: Connection, charger_id: str) -> list[str]:
    return [str(name) for (name,) in conn.execute(
        "select u.display_name from memberships m join users u using (user_id)"
        " where m.charger_id = %s and m.role = 'owner' order by lower(u.display_name)", (charger_id,))]


def count_members(conn: Connection, charger_id: str) -> int:
    row = conn.execute("select count(*) from memberships where charger_id = %s and role = 'member'",
                       (charger_id,)).fetchone()
    return int(row[0]) if row else 0


def role_of(conn: Connection, user_id: str, charger_id: str) -> str | None:
    row = conn.execute("select role from memberships where user_id = %s and charger_id = %s",
                       (user_id, charger_id)).fetchone()
    return None if row is None else str(row[0])


def add_member(conn: Connection, user_id: str, charger_id: str, *, by: str) -> None:
    """Make ``user_id`` a member; an existing role (an owner's) is kept."""
    conn.execute("insert into memberships (user_id, charger_id, role, created_by) values (%s, %s, 'member', %s)"
                 " on conflict (user_id, charger_id) do nothing", (user_id, charger_id, by))


def remove_member(conn: Connection, user_id: str, charger_id: str) -> bool:
    """Remove a *member* (owners are not removed here); True when one was removed."""
    cur = conn.execute("delete from memberships where user_id = %s and charger_id = %s and role = 'member'",
                       (user_id, charger_id))
    return cur.rowcount > 0


# --------------------------------------------------------------------------- invitations

_INVITE_SELECT = (
    "select i.invite_id, i.charger_id, coalesce(c.display_name, i.charger_id) as charger_name, i.email, i.role,"
    " i.created_by, u.display_name as created_by_name, i.created_at, i.expires_at, i.sent_count, i.accepted_at,"
    " i.accepted_by, i.revoked_at from invites i join users u on u.user_id = i.created_by"
    " join chargers c on c.charger_id = i.charger_id")


def _invite(row: dict[str, Any]) -> InviteRow:
    return InviteRow(**row)


def insert_invite(conn: Connection, *, invite_id: str, charger_id: str, email: str, digest: bytes, created_by: str,
                  created_at: datetime, expires_at: datetime, role: str = "member") -> None:
    conn.execute("insert into invites (invite_id, charger_id, email, role, token_sha256, created_by, created_at,"
                 " expires_at) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (invite_id, charger_id, email, role, digest, created_by, created_at, expires_at))


def invite_by_id(conn: Connection, invite_id: str, *, for_update: bool = False) -> InviteRow | None:
    lock = " for update of i" if for_update else ""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_INVITE_SELECT} where i.invite_id = %s{lock}", (invite_id,)).fetchone()
    return None if row is None else _invite(row)


def invite_by_digest(conn: Connection, digest: bytes, *, for_update: bool = False) -> InviteRow | None:
    lock = " for update of i" if for_update else ""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_INVITE_SELECT} where i.token_sha256 = %s{lock}", (digest,)).fetchone()
    return None if row is None else _invite(row)


def open_invites(conn: Connection, charger_id: str) -> list[InviteRow]:
    """Invitations neither accepted nor revoked (expired ones included: they can be resent), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_INVITE_SELECT} where i.charger_id = %s and i.accepted_at is null"
                           " and i.revoked_at is null order by i.created_at desc, i.invite_id",
                           (charger_id,)).fetchall()
    return [_invite(r) for r in rows]


def open_invite_for(conn: Connection, charger_id: str, email: str) -> InviteRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_INVITE_SELECT} where i.charger_id = %s and lower(i.email) = lower(%s)"
                          " and i.accepted_at is null and i.revoked_at is null"
                          " order by i.created_at desc limit 1", (charger_id, email)).fetchone()
    return None if row is None else _invite(row)


def count_pending(conn: Connection, charger_id: str, now: datetime) -> int:
    row = conn.execute("select count(*) from invites where charger_id = %s and accepted_at is null"
                       " and revoked_at is null and expires_at > %s", (charger_id, now)).fetchone()
    return int(row[0]) if row else 0


def renew_invite(conn: Connection, invite_id: str, *, digest: bytes, expires_at: datetime) -> bool:
    """Give an open invitation a new token (the old one stops matching) and a new expiry."""
    cur = conn.execute("update invites set token_sha256 = %s, expires_at = %s, sent_count = sent_count + 1"
                       " where invite_id = %s and accepted_at is null and revoked_at is null",
                       (digest, expires_at, invite_id))
    return cur.rowcount > 0


def revoke_invite(conn: Connection, invite_id: str, now: datetime) -> bool:
    cur = conn.execute("update invites set revoked_at = %s where invite_id = %s and accepted_at is null"
                       " and revoked_at is null", (now, invite_id))
    return cur.rowcount > 0


def mark_accepted(conn: Connection, invite_id: str, *, user_id: str, now: datetime) -> bool:
    """Use the invitation once: False when it was accepted or revoked meanwhile."""
    cur = conn.execute("update invites set accepted_at = %s, accepted_by = %s where invite_id = %s"
                       " and accepted_at is null and revoked_at is null", (now, user_id, invite_id))
    return cur.rowcount > 0


# --------------------------------------------------------------------------- reservations

_RESERVATION_SELECT = (
    "select r.reservation_id, r.charger_id, r.user_id, u.display_name as user_name, r.starts_at, r.ends_at, r.note,"
    " r.created_at, r.cancelled_at from reservations r join users u on u.user_id = r.user_id")


def live_reservations(conn: Connection, charger_id: str, start: datetime, end: datetime) -> list[ReservationRow]:
    """The charger's reservations that are not cancelled and overlap ``[start, end)``, earliest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_RESERVATION_SELECT} where r.charger_id = %s and r.cancelled_at is null"
                           " and r.starts_at < %s and r.ends_at > %s order by r.starts_at, r.reservation_id",
                           (charger_id, end, start)).fetchall()
    return [ReservationRow(**r) for r in rows]


def reservation(conn: Connection, reservation_id: str) -> ReservationRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_RESERVATION_SELECT} where r.reservation_id = %s", (reservation_id,)).fetchone()
    return None if row is None else ReservationRow(**row)


def insert_reservation(conn: Connection, *, reservation_id: str, charger_id: str, user_id: str, starts_at: datetime,
                       ends_at: datetime, note: str | None, now: datetime) -> None:
    """Insert a reservation in a savepoint; raise :class:`ReservationOverlapError` on an overlap."""
    try:
        with conn.transaction():
            conn.execute("insert into reservations (reservation_id, charger_id, user_id, starts_at, ends_at, note,"
                         " created_at) values (%s, %s, %s, %s, %s, %s, %s)",
                         (reservation_id, charger_id, user_id, starts_at, ends_at, note, now))
    except psycopg.errors.ExclusionViolation as exc:
        raise ReservationOverlapError(str(exc)) from exc


def cancel_reservations(conn: Connection, reservation_ids: Sequence[str], now: datetime) -> int:
    cur = conn.execute("update reservations set cancelled_at = %s where reservation_id = any(%s)"
                       " and cancelled_at is null", (now, list(reservation_ids)))
    return cur.rowcount


# --------------------------------------------------------------------------- usage per user


def usage_by_user(conn: Connection, charger_id: str, start: datetime, end: datetime, *,
                  user_id: str | None = None) -> list[UsageRow]:
    """kWh, sessions and stored costs per user of the charger's sessions in ``[start, end)``.

    A session counts in the period it started in; excluded (corrupted) sessions count nowhere.
    Sessions whose id tag belongs to no user are grouped per tag. ``user_id``: only that
    user's sessions (a member sees their own). Costs come from ``session_costs`` (the tariff
    costing run); a session not costed yet adds energy but no money.
    """
    query = """
with s as (
  select s.session_id, s.energy_wh, s.id_tag, ut.user_id
  from sessions s left join user_tokens ut on ut.id_tag = s.id_tag
  where s.charger_id = %(charger)s and s.started_at >= %(start)s and s.started_at < %(end)s and not s.excluded
    and (%(user)s::text is null or ut.user_id = %(user)s)
), k as (
  select session_id, min(currency) as currency, sum(net_nano) as net_nano, sum(vat_nano) as vat_nano,
         bool_or(status = 'no_tariff') as no_tariff
  from session_costs where session_id in (select session_id from s) group by session_id
)
select s.user_id, u.display_name, case when s.user_id is null then s.id_tag end as id_tag,
       count(*) as sessions, coalesce(sum(s.energy_wh), 0) as energy_wh, min(k.currency) as currency,
       coalesce(sum(k.net_nano), 0)::bigint as net_nano, coalesce(sum(k.vat_nano), 0)::bigint as vat_nano,
       count(k.session_id) filter (where not k.no_tariff) as costed_sessions,
       count(k.session_id) filter (where k.no_tariff) as no_tariff_sessions
from s left join users u on u.user_id = s.user_id left join k using (session_id)
group by s.user_id, u.display_name, case when s.user_id is null then s.id_tag end
order by energy_wh desc, s.user_id nulls last
"""
    rows = _fetch(conn, "usage per user", query, {"charger": charger_id, "start": start, "end": end,
                                                  "user": user_id})
    return [UsageRow(r["user_id"], r["display_name"], r["id_tag"], int(r["sessions"]), float(r["energy_wh"]),
                     r["currency"], int(r["net_nano"]), int(r["vat_nano"]), int(r["costed_sessions"]),
                     int(r["no_tariff_sessions"])) for r in rows]


def tokens_of(conn: Connection, user_id: str) -> list[str]:
    return [str(tag) for (tag,) in conn.execute("select id_tag from user_tokens where user_id = %s order by id_tag",
                                                (user_id,))]
