"""Invitation links remembered across sign-in, against the real PostgreSQL:
dashboards/invite_links.py over warehouse/pending_invite_store.py (migration 0015), and the
remembered link used through SharingService.preview/accept.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from dbutil import Db
from portal_fixtures import NOW

from control.access import Role
from dashboards.access import Access, Principal
from dashboards.invite_links import PENDING_TTL, PendingInvites, looks_like_nonce
from dashboards.sharing_service import InviteRefused, SharingService, TokenDigest

pytestmark = pytest.mark.integration

_SEEDS = itertools.count(1)


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> _Clock:
    return _Clock()


@pytest.fixture()
def access(portal_dsn: str, clock: _Clock) -> Access:
    counter = itertools.count(1)
    return Access(Db(portal_dsn), clock=clock, new_id=lambda: f"u-link-{next(counter)}-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def sharing(access: Access) -> SharingService:
    ids = itertools.count(1)
    return SharingService(access, base_url="http://dash.test:8501",
                          random_bytes=lambda n: (1000 + next(_SEEDS)).to_bytes(4, "big") * (n // 4) + bytes(n % 4),
                          new_id=lambda prefix: f"{prefix}-link-{next(ids)}-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def pending(access: Access) -> PendingInvites:
    return PendingInvites(access)


@pytest.fixture(autouse=True)
def _no_rows_left(portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn) as conn:
        conn.execute("delete from pending_invite_links")


def _rows(dsn: str) -> list[tuple[bytes, bytes]]:
    with psycopg.connect(dsn) as conn:
        return [(bytes(a), bytes(b)) for a, b in
                conn.execute("select nonce_sha256, token_sha256 from pending_invite_links").fetchall()]


def _stranger(access: Access, email: str) -> Principal:
    return access.sign_in(email=email, display_name=email.split("@")[0].title(), issuer="https://idp",
                          subject=f"sub-{email.lower()}")


def _invite(sharing: SharingService, access: Access, email: str) -> str:
    return sharing.invite(access.principal("demo-owner"), "SIM-0002", email).link.split("token=", 1)[1]


def test_a_remembered_link_is_recalled_by_its_nonce_and_stores_neither_secret(
        sharing: SharingService, access: Access, pending: PendingInvites, portal_dsn: str) -> None:
    token = _invite(sharing, access, "remember.me@example.com")
    remembered = pending.remember(token)
    assert looks_like_nonce(remembered.nonce) and remembered.nonce != token
    assert remembered.expires_at == NOW + PENDING_TTL
    [(nonce_sha, token_sha)] = _rows(portal_dsn)
    assert token.encode() not in nonce_sha + token_sha and remembered.nonce.encode() not in nonce_sha + token_sha

    recalled = pending.recall(remembered.nonce)
    assert recalled is not None and recalled.link == remembered.link == TokenDigest(token_sha)
    assert pending.recall("x" * 43) is None and pending.recall(None) is None and pending.recall("short") is None

    invitee = _stranger(access, "remember.me@example.com")
    preview = sharing.preview(invitee, recalled.link)
    assert preview.refusal is None and preview.charger_name == "Bay 2"
    accepted = sharing.accept(invitee, recalled.link)
    assert (accepted.charger_id, accepted.role, accepted.already) == ("SIM-0002", Role.MEMBER, False)
    assert pending.forget(remembered.nonce) and not pending.forget(remembered.nonce)
    assert pending.recall(remembered.nonce) is None and _rows(portal_dsn) == []
    sharing.remove_member(access.principal("demo-owner"), "SIM-0002", invitee.user_id)


def test_links_that_cannot_work_are_refused_before_sign_in_and_not_remembered(
        sharing: SharingService, access: Access, pending: PendingInvites, clock: _Clock, portal_dsn: str) -> None:
    owner = access.principal("demo-owner")
    with pytest.raises(InviteRefused, match="incomplete or damaged"):
        pending.remember("cut-off")
    with pytest.raises(InviteRefused, match="no longer valid"):
        pending.remember("A" * 43)

    used = _invite(sharing, access, "used.link@example.com")
    user = _stranger(access, "used.link@example.com")
    sharing.accept(user, used)
    with pytest.raises(InviteRefused, match="already been used"):
        pending.remember(used)
    sharing.remove_member(owner, "SIM-0002", user.user_id)

    revoked_link = sharing.invite(owner, "SIM-0002", "revoked.link@example.com")
    sharing.revoke(owner, "SIM-0002", revoked_link.invite_id)
    with pytest.raises(InviteRefused, match="withdrawn by Olivia Owner"):
        pending.remember(revoked_link.link.split("token=", 1)[1])

    expired = _invite(sharing, access, "expired.link@example.com")
    clock.now = NOW + timedelta(days=8)
    with pytest.raises(InviteRefused, match=r"^This invitation expired on 3 Dec 2026; ask Olivia Owner to resend it"):
        pending.remember(expired)
    assert _rows(portal_dsn) == []


def test_a_remembered_link_expires_and_never_outlives_the_invitation(
        sharing: SharingService, access: Access, pending: PendingInvites, clock: _Clock, portal_dsn: str) -> None:
    token = _invite(sharing, access, "slow.signer@example.com")
    first = pending.remember(token)
    clock.now = NOW + PENDING_TTL
    assert pending.recall(first.nonce) is None  # too slow: open the link again
    second = pending.remember(token)  # a new row sweeps the expired one
    assert [r[0] for r in _rows(portal_dsn)] == [hashlib.sha256(second.nonce.encode()).digest()]

    clock.now = NOW + timedelta(days=7) - timedelta(minutes=5)  # 5 minutes before the invitation expires
    late = pending.remember(token)
    assert late.expires_at == NOW + timedelta(days=7)


def test_one_remembered_link_per_browser_and_a_resend_kills_the_remembered_one(
        sharing: SharingService, access: Access, pending: PendingInvites, portal_dsn: str) -> None:
    owner = access.principal("demo-owner")
    sent = sharing.invite(owner, "SIM-0002", "twice@example.com")
    first = pending.remember(sent.link.split("token=", 1)[1])
    second = pending.remember(sent.link.split("token=", 1)[1], replacing=first.nonce)
    assert pending.recall(first.nonce) is None and pending.recall(second.nonce) is not None
    assert len(_rows(portal_dsn)) == 1

    sharing.resend(owner, "SIM-0002", sent.invite_id)  # a new token: the remembered old one stops working
    recalled = pending.recall(second.nonce)
    assert recalled is not None
    invitee = _stranger(access, "twice@example.com")
    with pytest.raises(InviteRefused, match="no longer valid"):
        sharing.preview(invitee, recalled.link)
    with pytest.raises(InviteRefused, match="no longer valid"):
        sharing.accept(invitee, recalled.link)


def test_a_remembered_link_still_needs_the_invited_address(
        sharing: SharingService, access: Access, pending: PendingInvites) -> None:
    remembered = pending.remember(_invite(sharing, access, "the.right.one@example.com"))
    other = _stranger(access, "someone.else@example.com")
    preview = sharing.preview(other, remembered.link)
    assert preview.refusal is not None and "but you are signed in as someone.else@example.com" in preview.refusal
    with pytest.raises(InviteRefused, match=r"but you are signed in as someone\.else@example\.com"):
        sharing.accept(other, remembered.link)
    assert access.visible_ids(access.principal(other.user_id)) == []
    assert pending.recall(remembered.nonce) is not None  # kept: signing in with the right account still works
