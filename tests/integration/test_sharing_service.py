"""Shared access against the real PostgreSQL: dashboards/sharing_service.py over warehouse/sharing_store.py.

The service is called directly, as a page would, and as someone trying to get around the pages.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from dbutil import Db as _Db
from portal_fixtures import NOW
from psycopg import Connection

from control.access import Role
from control.sharing import Resolution, token_digest
from dashboards.access import Access, AccessDenied, Principal
from dashboards.invite_mail import InviteMail
from dashboards.sharing_service import (
    CapReached,
    InviteRefused,
    ReservationConflict,
    Reserved,
    SharingError,
    SharingService,
)
from warehouse import sharing_store

pytestmark = pytest.mark.integration

BASE_URL = "http://dash.test:8501"
_SEEDS = itertools.count(1)  # token randomness, unique across the module's tests (one database)


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class _Mailer:
    def __init__(self) -> None:
        self.sent: list[InviteMail] = []
        self.fail: OSError | None = None

    def send(self, mail: InviteMail) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(mail)


@pytest.fixture()
def clock() -> _Clock:
    return _Clock()


@pytest.fixture()
def access(portal_dsn: str, clock: _Clock) -> Access:
    counter = itertools.count(1)
    return Access(_Db(portal_dsn), clock=clock, new_id=lambda: f"u-share-{next(counter)}-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def mailer() -> _Mailer:
    return _Mailer()


@pytest.fixture()
def service(access: Access, mailer: _Mailer) -> SharingService:
    ids = itertools.count(1)
    return SharingService(access, base_url=BASE_URL, mailer=mailer,
                          random_bytes=lambda n: next(_SEEDS).to_bytes(4, "big") * (n // 4) + bytes(n % 4),
                          new_id=lambda prefix: f"{prefix}-{next(ids)}-{uuid.uuid4().hex[:8]}")


def _stranger(access: Access, email: str) -> Principal:
    return access.sign_in(email=email, display_name=email.split("@")[0].title(), issuer="https://idp",
                          subject=f"sub-{email.lower()}")


def _token(link: str) -> str:
    return link.split("token=", 1)[1]


def _log(dsn: str, action: str, charger_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select user_id, allowed, detail from access_log where action = %s and charger_id = %s"
                            " order by ts", (action, charger_id)).fetchall()


# --------------------------------------------------------------------------- policy


def test_a_member_cannot_manage_members_even_by_calling_the_service(service: SharingService, access: Access,
                                                                    portal_dsn: str) -> None:
    member = access.principal("demo-member")
    owner = access.principal("demo-owner")
    sent = service.invite(owner, "SIM-0001", "policy.target@example.com")
    attempts = [
        lambda: service.members(member, "SIM-0001"),
        lambda: service.invites(member, "SIM-0001"),
        lambda: service.invite(member, "SIM-0001", "friend@example.com"),
        lambda: service.resend(member, "SIM-0001", sent.invite_id),
        lambda: service.revoke(member, "SIM-0001", sent.invite_id),
        lambda: service.remove_member(member, "SIM-0001", "demo-owner"),
        lambda: service.set_member_cap(member, "SIM-0001", 10),
    ]
    for attempt in attempts:
        with pytest.raises(AccessDenied, match="only the charger's owner"):
            attempt()
    with pytest.raises(AccessDenied, match="no access to charger SIM-0003"):
        service.invite(owner, "SIM-0003", "friend@example.com")  # not theirs
    with psycopg.connect(portal_dsn) as conn:
        refused = conn.execute("select count(*) from access_log where user_id = 'demo-member'"
                               " and action = 'manage_members' and not allowed").fetchone()
        cap = conn.execute("select member_cap from chargers where charger_id = 'SIM-0001'").fetchone()
    assert refused is not None and refused[0] >= len(attempts)
    assert cap == (None,)
    overview = service.overview(member, "SIM-0001")
    assert not overview.can_manage and overview.can_reserve and not overview.sees_everyones_usage
    assert service.overview(owner, "SIM-0001").can_manage


# --------------------------------------------------------------------------- invitations


def test_invite_and_accept_gives_the_charger_without_scanning_anything(
        service: SharingService, access: Access, mailer: _Mailer, portal_dsn: str) -> None:
    owner = access.principal("demo-owner")
    sent = service.invite(owner, "SIM-0001", "New.Person@Example.com")
    assert sent.link.startswith(f"{BASE_URL}/invite?token=")
    assert sent.emailed and mailer.sent[-1].to == "New.Person@Example.com" and mailer.sent[-1].link == sent.link
    assert sent.expires_at == NOW + timedelta(days=7)
    with psycopg.connect(portal_dsn) as conn:
        stored = conn.execute("select token_sha256 from invites where invite_id = %s", (sent.invite_id,)).fetchone()
    assert stored is not None and bytes(stored[0]) == token_digest(_token(sent.link))
    assert _token(sent.link).encode() not in bytes(stored[0])
    assert [i.email for i in service.invites(owner, "SIM-0001")].count("New.Person@Example.com") == 1

    newcomer = _stranger(access, "new.person@example.COM")
    assert newcomer.roles == frozenset()
    preview = service.preview(newcomer, _token(sent.link))
    assert preview.refusal is None and preview.charger_name == "Bay 1" and preview.inviter_name == "Olivia Owner"
    accepted = service.accept(newcomer, _token(sent.link))
    assert (accepted.charger_id, accepted.role, accepted.already) == ("SIM-0001", Role.MEMBER, False)
    again = access.principal(newcomer.user_id)
    assert access.visible_ids(again) == ["SIM-0001"]
    assert any(m.user_id == newcomer.user_id and m.role is Role.MEMBER for m in service.members(owner, "SIM-0001"))
    assert "New.Person@Example.com" not in [i.email for i in service.invites(owner, "SIM-0001")]
    with pytest.raises(InviteRefused, match="already been used"):
        service.accept(again, _token(sent.link))
    assert (newcomer.user_id, True) in [r[:2] for r in _log(portal_dsn, "accept_invite", "SIM-0001")]
    service.remove_member(owner, "SIM-0001", newcomer.user_id)
    assert access.visible_ids(access.principal(newcomer.user_id)) == []


def test_someone_else_signed_in_cannot_use_the_link(service: SharingService, access: Access,
                                                    portal_dsn: str) -> None:
    owner = access.principal("demo-owner")
    sent = service.invite(owner, "SIM-0002", "right.person@example.com")
    eve = _stranger(access, "eve@example.com")
    with pytest.raises(InviteRefused, match=r"is for r\*\*\*@example.com, but you are signed in as eve@example.com"):
        service.accept(eve, _token(sent.link))
    assert service.preview(eve, _token(sent.link)).refusal is not None
    assert access.visible_ids(access.principal(eve.user_id)) == []
    assert [r[1] for r in _log(portal_dsn, "accept_invite", "SIM-0002") if r[0] == eve.user_id] == [False]
    right = _stranger(access, "right.person@example.com")
    assert service.accept(right, _token(sent.link)).charger_id == "SIM-0002"  # still usable by the invitee
    service.remove_member(owner, "SIM-0002", right.user_id)


def test_a_damaged_or_unknown_link_is_refused_clearly(service: SharingService, access: Access) -> None:
    someone = _stranger(access, "someone@example.com")
    with pytest.raises(InviteRefused, match="incomplete or damaged"):
        service.accept(someone, "abc")
    with pytest.raises(InviteRefused, match="no longer valid"):
        service.accept(someone, "A" * 43)


def test_an_expired_invitation_is_refused_and_a_resend_kills_the_old_link(
        service: SharingService, access: Access, clock: _Clock) -> None:
    owner = access.principal("demo-owner")
    sent = service.invite(owner, "SIM-0002", "late@example.com")
    late = _stranger(access, "late@example.com")
    clock.now = NOW + timedelta(days=8)
    with pytest.raises(InviteRefused, match=r"^This invitation expired on 3 Dec 2026; ask Olivia Owner to resend it\."):
        service.accept(late, _token(sent.link))
    pending = next(i for i in service.invites(owner, "SIM-0002") if i.invite_id == sent.invite_id)
    assert pending.status == "expired" and pending.expiry_text == "expired on 3 Dec 2026"

    resent = service.resend(owner, "SIM-0002", sent.invite_id)
    assert resent.invite_id == sent.invite_id and resent.sent_count == 2
    assert resent.link != sent.link and resent.expires_at == clock.now + timedelta(days=7)
    with pytest.raises(InviteRefused, match="no longer valid"):
        service.accept(late, _token(sent.link))
    assert service.accept(late, _token(resent.link)).charger_id == "SIM-0002"
    service.remove_member(owner, "SIM-0002", late.user_id)


def test_inviting_the_same_address_twice_resends_and_revoking_withdraws(
        service: SharingService, access: Access) -> None:
    owner = access.principal("demo-owner")
    first = service.invite(owner, "SIM-0002", "twice@example.com")
    second = service.invite(owner, "SIM-0002", "TWICE@example.com")
    assert second.invite_id == first.invite_id and second.sent_count == 2
    service.revoke(owner, "SIM-0002", first.invite_id)
    twice = _stranger(access, "twice@example.com")
    with pytest.raises(InviteRefused, match="withdrawn by Olivia Owner"):
        service.accept(twice, _token(second.link))
    with pytest.raises(SharingError, match="no longer open"):
        service.revoke(owner, "SIM-0002", first.invite_id)
    with pytest.raises(SharingError, match="already shares this charger as member"):
        service.invite(owner, "SIM-0001", "member@flowbank.demo")
    with pytest.raises(SharingError, match="not an e-mail address"):
        service.invite(owner, "SIM-0002", "not-an-address")


def test_a_failed_e_mail_still_returns_the_link(service: SharingService, access: Access, mailer: _Mailer) -> None:
    mailer.fail = ConnectionRefusedError(111, "Connection refused")
    sent = service.invite(access.principal("demo-owner"), "SIM-0002", "offline@example.com")
    assert not sent.emailed and sent.email_error is not None and "refused" in sent.email_error
    assert sent.link.startswith(BASE_URL)
    service.revoke(access.principal("demo-owner"), "SIM-0002", sent.invite_id)


def test_the_member_cap_is_enforced_at_invite_and_at_accept(service: SharingService, access: Access,
                                                            portal_dsn: str) -> None:
    owner = access.principal("demo-owner")
    try:
        service.set_member_cap(owner, "SIM-0002", 1)
        one = service.invite(owner, "SIM-0002", "cap.one@example.com")
        with pytest.raises(CapReached, match="You have 0 of 1 members and 1 pending invitation"):
            service.invite(owner, "SIM-0002", "cap.two@example.com")
        first = _stranger(access, "cap.one@example.com")
        service.accept(first, _token(one.link))
        with pytest.raises(CapReached, match=r"^You have 1 of 1 members\. Remove a member or raise the cap\.$"):
            service.invite(owner, "SIM-0002", "cap.two@example.com")
        assert ("demo-owner", False, "You have 1 of 1 members. Remove a member or raise the cap.") in \
            _log(portal_dsn, "invite", "SIM-0002")

        assert "The cap is now 2" in service.set_member_cap(owner, "SIM-0002", 2)
        two = service.invite(owner, "SIM-0002", "cap.two@example.com")
        message = service.set_member_cap(owner, "SIM-0002", 1)  # lowered while an invitation is out
        assert "Nobody is removed" not in message  # 1 member, cap 1: not below
        second = _stranger(access, "cap.two@example.com")
        with pytest.raises(CapReached, match=r"Bay 2 already has 1 of 1 members.*Ask Olivia Owner"):
            service.accept(second, _token(two.link))
        assert access.visible_ids(access.principal(second.user_id)) == []
        service.remove_member(owner, "SIM-0002", first.user_id)
        assert service.accept(second, _token(two.link)).charger_id == "SIM-0002"
        assert service.overview(owner, "SIM-0002").cap_text == "1 of 1 members"
        with pytest.raises(SharingError, match="whole number"):
            service.set_member_cap(owner, "SIM-0002", -1)
        with pytest.raises(SharingError, match="Owners cannot be removed"):
            service.remove_member(owner, "SIM-0002", "demo-owner")
        service.remove_member(owner, "SIM-0002", second.user_id)
    finally:
        service.set_member_cap(owner, "SIM-0002", None)


# --------------------------------------------------------------------------- reservations


def _at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def test_an_overlap_returns_the_conflict_with_options_and_owners_may_override(
        service: SharingService, access: Access) -> None:
    owner, member = access.principal("demo-owner"), access.principal("demo-member")
    mine = service.reserve(member, "SIM-0001", _at(2), _at(4), note="before work")
    assert isinstance(mine, Reserved) and mine.reservation.mine and mine.reservation.can_cancel
    clash = service.reserve(owner, "SIM-0001", _at(1), _at(3))
    assert isinstance(clash, ReservationConflict)
    assert clash.message == "That time overlaps Max Member's reservation 14:00–16:00."
    kinds = [o.kind for o in clash.options]
    assert kinds[0] is Resolution.MOVE and Resolution.OVERRIDE in kinds and Resolution.SHORTEN in kinds
    as_member = service.reserve(member, "SIM-0001", _at(3), _at(5))
    assert isinstance(as_member, ReservationConflict) and "your own reservation" in as_member.message

    by_owner = service.reserve(owner, "SIM-0001", _at(20), _at(21))
    assert isinstance(by_owner, Reserved)
    clash = service.reserve(member, "SIM-0001", _at(20.5), _at(22))
    assert isinstance(clash, ReservationConflict)
    ask = [o for o in clash.options if o.kind is Resolution.ASK_OWNER]
    assert ask and ask[0].label == "Ask Olivia Owner to override"
    with pytest.raises(AccessDenied):
        service.reserve(member, "SIM-0001", _at(20.5), _at(22), override=True)
    move = next(o for o in clash.options if o.kind is Resolution.MOVE)
    assert move.slot is not None
    moved = service.reserve(member, "SIM-0001", move.slot.start, move.slot.end)
    assert isinstance(moved, Reserved)

    override = service.reserve(owner, "SIM-0001", _at(2.5), _at(3.5), override=True)
    assert isinstance(override, Reserved) and override.overridden == (mine.reservation.reservation_id,)
    schedule = service.schedule(member, "SIM-0001", NOW, NOW + timedelta(days=7))
    ids = [r.reservation_id for r in schedule]
    assert mine.reservation.reservation_id not in ids and override.reservation.reservation_id in ids
    colours = {r.user_id: r.colour for r in schedule}
    assert colours["demo-owner"] != colours["demo-member"]
    for r in schedule:
        assert r.can_cancel == (r.user_id == "demo-member")
    for r in service.schedule(owner, "SIM-0001", NOW, NOW + timedelta(days=7)):
        service.cancel_reservation(owner, "SIM-0001", r.reservation_id)


def test_a_member_cancels_only_their_own_reservation(service: SharingService, access: Access) -> None:
    owner, member = access.principal("demo-owner"), access.principal("demo-member")
    owners = service.reserve(owner, "SIM-0001", _at(30), _at(31))
    members = service.reserve(member, "SIM-0001", _at(31), _at(32))
    assert isinstance(owners, Reserved) and isinstance(members, Reserved)
    with pytest.raises(AccessDenied, match="only the charger's owner may cancel someone else's reservation"):
        service.cancel_reservation(member, "SIM-0001", owners.reservation.reservation_id)
    service.cancel_reservation(member, "SIM-0001", members.reservation.reservation_id)
    with pytest.raises(SharingError, match="no longer exists"):
        service.cancel_reservation(member, "SIM-0001", members.reservation.reservation_id)
    service.cancel_reservation(owner, "SIM-0001", owners.reservation.reservation_id)
    with pytest.raises(AccessDenied, match="no access"):
        service.reserve(member, "SIM-0002", _at(30), _at(31))
    with pytest.raises(SharingError, match="already started or passed"):
        service.reserve(member, "SIM-0001", _at(-3), _at(-1))


def test_two_concurrent_callers_one_wins_the_other_gets_the_conflict_answer(
        service: SharingService, access: Access, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, member = access.principal("demo-owner"), access.principal("demo-member")
    both_read = threading.Barrier(2, timeout=60)
    real = sharing_store.live_reservations
    calls = itertools.count()

    def read_then_wait(conn: Connection, charger_id: str, start: datetime, end: datetime) -> list[Any]:
        rows = real(conn, charger_id, start, end)
        if next(calls) < 2:  # each caller's first read: both see a free slot before either inserts
            both_read.wait()
        return rows

    monkeypatch.setattr(sharing_store, "live_reservations", read_then_wait)
    results: dict[str, object] = {}

    def book(name: str, who: Principal) -> None:
        try:
            results[name] = service.reserve(who, "SIM-0001", _at(40), _at(42))
        except Exception as exc:  # surfaced by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=book, args=(n, w)) for n, w in (("owner", owner), ("member", member))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    won = [r for r in results.values() if isinstance(r, Reserved)]
    lost = [r for r in results.values() if isinstance(r, ReservationConflict)]
    assert len(won) == 1 and len(lost) == 1, results
    winner = won[0].reservation
    assert [c.reservation_id for c in lost[0].conflicts] == [winner.reservation_id]
    assert lost[0].message == f"That time overlaps {winner.user_name}'s reservation 04:00–06:00."
    assert any(o.kind is Resolution.MOVE for o in lost[0].options)
    monkeypatch.undo()
    service.cancel_reservation(owner, "SIM-0001", winner.reservation_id)


# --------------------------------------------------------------------------- usage per user


def test_usage_per_user_everyone_for_the_owner_own_for_a_member(service: SharingService, access: Access,
                                                                portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn) as conn:
        conn.execute("insert into user_tokens (id_tag, user_id) values ('TAG-OWNER', 'demo-owner'),"
                     " ('TAG-MEMBER', 'demo-member') on conflict do nothing")
        for i, (tag, wh) in enumerate([("TAG-OWNER", 10_000.0), ("TAG-MEMBER", 4_000.0), ("TAG-MEMBER", 2_000.0),
                                       ("STRAY-9", 1_500.0), (None, 500.0)]):
            conn.execute("insert into sessions (session_id, charger_id, connector_id, transaction_id, state, revision,"
                         " started_at, ended_at, energy_wh, id_tag) values (%s, 'SIM-0001', 1, %s, 'closed', 1, %s, %s,"
                         " %s, %s)", (f"use-{i}", f"tx-{i}", NOW - timedelta(days=2, hours=i),
                                      NOW - timedelta(days=2, hours=i - 1), wh, tag))
        conn.execute("insert into session_costs (session_id, day, charger_id, user_id, session_revision, cost_revision,"
                     " tariff_id, currency, status, energy_wh, costed_energy_wh, net_nano, vat_nano)"
                     " values ('use-1', %s, 'SIM-0001', 'demo-member', 1, 1, 't', 'EUR', 'costed', 4000, 4000,"
                     " 1000000000, 210000000)", ((NOW - timedelta(days=2)).date(),))
    owner, member = access.principal("demo-owner"), access.principal("demo-member")
    start, end = NOW - timedelta(days=30), NOW
    everyone = service.usage(owner, "SIM-0001", start, end)
    assert everyone.scope == "everyone"
    lines = {line.label: line for line in everyone.lines}
    assert set(lines) == {"Olivia Owner", "Max Member", "Unassigned tag STRAY-9", "Started without an id tag"}
    assert (lines["Max Member"].sessions, lines["Max Member"].energy_wh) == (2, 6_000.0)
    assert lines["Max Member"].cost == Decimal("1.21") and lines["Max Member"].currency == "EUR"
    assert lines["Max Member"].cost_note == "1 session(s) not costed yet"
    assert lines["Olivia Owner"].cost is None
    assert everyone.energy_wh == 18_000.0
    own = service.usage(member, "SIM-0001", start, end)
    assert own.scope == "own" and [line.label for line in own.lines] == ["Max Member"]
    assert service.usage(owner, "SIM-0001", NOW - timedelta(days=1), end).lines == ()
