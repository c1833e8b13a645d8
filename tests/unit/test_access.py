"""The access policy (control/access.py): one table, one decision."""

from __future__ import annotations

import pytest

from control.access import GRANTS, ChargerRef, Grants, Permission, Role, decide, roles_on, visible

HOME = ChargerRef("CP-HOME", site_id=None, org_id=None)
DEPOT = ChargerRef("CP-DEPOT", site_id="depot", org_id="acme")
OTHER = ChargerRef("CP-OTHER", site_id="yard", org_id="globex")

OWNER = Grants("u-owner", {"CP-HOME": Role.OWNER})
MEMBER = Grants("u-member", {"CP-HOME": Role.MEMBER})
FLEET = Grants("u-fleet", org_ids=frozenset({"acme"}))
SUPPORT = Grants("u-support", platform_roles=frozenset({Role.SUPPORT}))
INSTALLER = Grants("u-installer", platform_roles=frozenset({Role.INSTALLER}))
OPERATOR = Grants("u-operator", platform_roles=frozenset({Role.OPERATOR}))
NOBODY = Grants("u-nobody")


@pytest.mark.parametrize(("grants", "permission", "charger", "allowed"), [
    # the owner administers their own charger, nobody else's
    (OWNER, Permission.MANAGE_MEMBERS, HOME, True),
    (OWNER, Permission.CHANGE_SETTINGS, HOME, True),
    (OWNER, Permission.VIEW, DEPOT, False),
    # a member starts, stops, reserves and sees their own sessions; owner-only settings are refused
    (MEMBER, Permission.START_STOP, HOME, True),
    (MEMBER, Permission.RESERVE, HOME, True),
    (MEMBER, Permission.VIEW_OWN_SESSIONS, HOME, True),
    (MEMBER, Permission.VIEW_ALL_SESSIONS, HOME, False),
    (MEMBER, Permission.CHANGE_SETTINGS, HOME, False),
    (MEMBER, Permission.MANAGE_MEMBERS, HOME, False),
    (MEMBER, Permission.LOCK, HOME, False),
    # a fleet manager acts on their organisation's sites only
    (FLEET, Permission.BULK_ACTIONS, DEPOT, True),
    (FLEET, Permission.SET_LIMIT, DEPOT, True),
    (FLEET, Permission.VIEW, OTHER, False),
    (FLEET, Permission.VIEW, HOME, False),
    (FLEET, Permission.MANAGE_MEMBERS, DEPOT, False),
    # support troubleshoots everywhere but does not drive sessions
    (SUPPORT, Permission.TROUBLESHOOT, OTHER, True),
    (SUPPORT, Permission.START_STOP, HOME, False),
    (SUPPORT, Permission.CHANGE_SETTINGS, DEPOT, False),
    (INSTALLER, Permission.INSTALL, HOME, True),
    (INSTALLER, Permission.VIEW_ALL_SESSIONS, HOME, False),
    (OPERATOR, Permission.SET_LIMIT, OTHER, True),
    (NOBODY, Permission.VIEW, HOME, False),
])
def test_the_table(grants: Grants, permission: Permission, charger: ChargerRef, allowed: bool) -> None:
    assert decide(grants, permission, charger).allowed is allowed


def test_every_role_has_a_row_and_the_operator_may_do_everything() -> None:
    assert set(GRANTS) == set(Role)
    assert GRANTS[Role.OPERATOR] == frozenset(Permission)


def test_a_refusal_says_why_in_words_a_member_understands() -> None:
    decision = decide(MEMBER, Permission.MANAGE_MEMBERS, HOME)
    assert not decision.allowed
    assert "only the charger's owner" in decision.reason
    assert "no access to charger CP-DEPOT" in decide(MEMBER, Permission.VIEW, DEPOT).reason


def test_the_granting_role_is_named() -> None:
    both = Grants("u", {"CP-DEPOT": Role.MEMBER}, org_ids=frozenset({"acme"}))
    assert roles_on(both, DEPOT) == {Role.MEMBER, Role.FLEET_MANAGER}
    assert decide(both, Permission.SET_LIMIT, DEPOT).via is Role.FLEET_MANAGER
    assert decide(both, Permission.START_STOP, DEPOT).via is Role.FLEET_MANAGER  # strongest first


def test_platform_wide_permissions_count_platform_roles_only() -> None:
    assert decide(SUPPORT, Permission.RUN_SQL).allowed
    assert not decide(OWNER, Permission.RUN_SQL).allowed  # owning a charger grants nothing fleet-wide
    assert decide(FLEET, Permission.BULK_ACTIONS).allowed
    assert not decide(MEMBER, Permission.BULK_ACTIONS).allowed


def test_roles_at_the_wrong_scope_are_refused_when_loaded() -> None:
    with pytest.raises(ValueError, match="wrong scope"):
        Grants("u", {"CP": Role.SUPPORT})
    with pytest.raises(ValueError, match="wrong scope"):
        Grants("u", platform_roles=frozenset({Role.OWNER}))


def test_roles_summarise_every_scope() -> None:
    assert OWNER.roles == {Role.OWNER}
    assert FLEET.roles == {Role.FLEET_MANAGER}
    assert visible(MEMBER, [HOME, DEPOT, OTHER]) == [HOME]
    assert visible(OPERATOR, [HOME, DEPOT, OTHER]) == [HOME, DEPOT, OTHER]
