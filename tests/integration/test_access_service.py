"""Who is signed in and what they may see, against the real PostgreSQL (warehouse/access_store.py,
dashboards/access.py)."""

from __future__ import annotations

import itertools

import psycopg
import pytest
from dbutil import Db as _Db
from portal_fixtures import CHARGERS, NOW

from control.access import Permission
from dashboards.access import Access, AccessDenied

pytestmark = pytest.mark.integration


@pytest.fixture()
def access(portal_dsn: str) -> Access:
    counter = itertools.count(1)
    return Access(_Db(portal_dsn), clock=lambda: NOW, new_id=lambda: f"u-test-{next(counter)}")


def test_a_seeded_user_is_linked_to_their_first_sign_in_then_found_by_subject(access: Access) -> None:
    first = access.sign_in(email="Owner@FlowBank.demo", display_name="Olivia", issuer="https://idp", subject="s-1")
    assert first.user_id == "demo-owner"
    assert first.display_name == "Olivia Owner"  # the name on file is kept
    # The provider's e-mail changed; the (issuer, subject) pair still finds the same person.
    again = access.sign_in(email="olivia@new.example", display_name="O", issuer="https://idp", subject="s-1")
    assert again.user_id == "demo-owner"
    assert again.email == "olivia@new.example"
    access.sign_in(email="owner@flowbank.demo", display_name="O", issuer="https://idp", subject="s-1")  # restore


def test_a_stranger_gets_an_account_with_no_roles_and_sees_nothing(access: Access) -> None:
    who = access.sign_in(email="new@example.com", display_name="New Person", issuer="https://idp", subject="s-new")
    assert who.roles == frozenset()
    assert access.visible(who) == []
    with pytest.raises(AccessDenied, match="no access to charger SIM-0001"):
        access.require(who, Permission.VIEW, "SIM-0001")


def test_an_identity_without_an_e_mail_is_refused(access: Access) -> None:
    with pytest.raises(AccessDenied, match="e-mail"):
        access.sign_in(email="", display_name="x", issuer="https://idp", subject="s-x")


def test_scopes_are_computed_in_the_database(access: Access) -> None:
    member = access.principal("demo-member")
    fleet = access.principal("demo-fleet")
    support = access.principal("demo-support")
    assert access.visible_ids(member) == ["SIM-0001"]
    assert access.visible_ids(fleet) == CHARGERS
    assert access.visible_ids(support) == CHARGERS
    assert access.visible_ids(fleet, site_id="elsewhere") == []


def test_a_refusal_is_logged_and_an_unknown_charger_reads_like_someone_elses(access: Access,
                                                                             portal_dsn: str) -> None:
    member = access.principal("demo-member")
    with pytest.raises(AccessDenied, match="only the charger's owner") as refused:
        access.require(member, Permission.MANAGE_MEMBERS, "SIM-0001")
    assert refused.value.permission is Permission.MANAGE_MEMBERS
    unknown = access.check(member, Permission.VIEW, "NO-SUCH")
    other = access.check(member, Permission.VIEW, "SIM-0003")
    assert unknown.reason.replace("NO-SUCH", "X") == other.reason.replace("SIM-0003", "X")
    with psycopg.connect(portal_dsn) as conn:
        row = conn.execute("select action, charger_id, allowed, detail from access_log"
                           " where user_id = 'demo-member' and action = 'manage_members'").fetchone()
    assert row is not None and row[:3] == ("manage_members", "SIM-0001", False)


def test_revoking_a_membership_takes_effect_on_the_next_load(access: Access, portal_dsn: str) -> None:
    assert access.check(access.principal("demo-member"), Permission.START_STOP, "SIM-0001").allowed
    with psycopg.connect(portal_dsn) as conn:
        conn.execute("delete from memberships where user_id = 'demo-member'")
    try:
        assert not access.check(access.principal("demo-member"), Permission.START_STOP, "SIM-0001").allowed
    finally:
        with psycopg.connect(portal_dsn) as conn:
            conn.execute("insert into memberships (user_id, charger_id, role) values ('demo-member', 'SIM-0001',"
                         " 'member')")
