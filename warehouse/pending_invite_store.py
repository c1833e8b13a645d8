"""Invitation links remembered across sign-in (migration 0015): ``pending_invite_links``.

A row maps the SHA-256 of a random nonce (kept by one browser in a cookie) to the SHA-256 of an
invitation token (``invites.token_sha256``). Neither secret is stored. The rules (what may be
remembered, for how long) are the caller's: ``dashboards.invite_links``.
"""

from __future__ import annotations

from datetime import datetime

from warehouse.queries import Connection


def insert(conn: Connection, *, nonce_digest: bytes, token_digest: bytes, created_at: datetime,
           expires_at: datetime) -> None:
    """Remember a link, and sweep the rows expired by ``created_at`` (the table stays minutes deep)."""
    conn.execute("delete from pending_invite_links where expires_at <= %s", (created_at,))
    conn.execute("insert into pending_invite_links (nonce_sha256, token_sha256, created_at, expires_at)"
                 " values (%s, %s, %s, %s)", (nonce_digest, token_digest, created_at, expires_at))


def lookup(conn: Connection, nonce_digest: bytes, now: datetime) -> tuple[bytes, datetime] | None:
    """The remembered invitation's token digest and when it is forgotten; None when unknown,
    deleted, or expired at ``now``."""
    row = conn.execute("select token_sha256, expires_at from pending_invite_links where nonce_sha256 = %s"
                       " and expires_at > %s", (nonce_digest, now)).fetchone()
    return None if row is None else (bytes(row[0]), row[1])


def delete(conn: Connection, nonce_digest: bytes) -> bool:
    cur = conn.execute("delete from pending_invite_links where nonce_sha256 = %s", (nonce_digest,))
    return cur.rowcount > 0
