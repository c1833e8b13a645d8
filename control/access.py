"""Who may do what: roles, permissions and the one decision every read and action goes through. Pure.

Roles come at three scopes, and a user may hold several:

- on a **charger** (``memberships``): ``owner`` (its admin) and ``member`` (a family member or
  colleague the owner invited: start/stop, reserve, view their own sessions);
- on an **organisation** (``org_memberships``): ``fleet_manager``, for every charger on the
  organisation's sites;
- on the **platform** (``user_roles``): ``support``, ``installer`` and ``operator`` (the back
  office), for every charger.

:func:`decide` is the only place the table below is read. The dashboards' service layer calls it
(through ``dashboards.access``) before every query and every action, so a page cannot widen what
its user sees, and a member calling the service directly is refused exactly as in the app.

Scope of reads. A charger is *visible* to a user when any of their roles grants ``VIEW`` on it.
Sessions are finer: owners, fleet managers, support and operators see every session of a visible
charger; a member sees only their own (``VIEW_OWN_SESSIONS``), which the history queries enforce
by user, not by charger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"
    FLEET_MANAGER = "fleet_manager"
    SUPPORT = "support"
    INSTALLER = "installer"
    OPERATOR = "operator"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS: Final[Mapping[Role, str]] = {
    Role.OWNER: "Owner", Role.MEMBER: "Member", Role.FLEET_MANAGER: "Fleet manager",
    Role.SUPPORT: "Support", Role.INSTALLER: "Installer", Role.OPERATOR: "Operator",
}

CHARGER_ROLES: Final = frozenset({Role.OWNER, Role.MEMBER})
ORG_ROLES: Final = frozenset({Role.FLEET_MANAGER})
PLATFORM_ROLES: Final = frozenset({Role.SUPPORT, Role.INSTALLER, Role.OPERATOR})


class Permission(StrEnum):
    VIEW = "view"                            # the charger, its live state and device profile
    VIEW_ALL_SESSIONS = "view_all_sessions"  # every session of the charger, every user's usage
    VIEW_OWN_SESSIONS = "view_own_sessions"  # the user's own sessions only
    START_STOP = "start_stop"
    PAUSE_RESUME = "pause_resume"
    LOCK = "lock"                            # lock/unlock the connector, release the cable
    SET_MODE = "set_mode"                    # Standard / Eco (Boost needs BOOST too)
    BOOST = "boost"
    RESERVE = "reserve"                      # book a time slot on a shared charger
    CHANGE_SETTINGS = "change_settings"      # rename, cost centre, schedules, rules, tariff, member cap
    MANAGE_MEMBERS = "manage_members"        # invite, resend, revoke, remove
    VIEW_LOAD = "view_load"                  # building load vs limit, the throttling audit trail
    SET_LIMIT = "set_limit"                  # operator limits on a site or charger
    BULK_ACTIONS = "bulk_actions"
    SOFT_TROUBLESHOOT = "soft_troubleshoot"  # non-destructive: soft reset, unlock, trigger a message
    TROUBLESHOOT = "troubleshoot"            # hard reset, diagnostics, configuration, availability
    ACKNOWLEDGE_ALERTS = "acknowledge_alerts"
    INSTALL = "install"                      # installer mode (after a one-time code)
    RUN_SQL = "run_sql"                      # read-only SQL over the whole analytics lake
    EXPORT = "export"                        # CSV/PDF reports of what the user may see


_P = Permission
GRANTS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.OWNER: frozenset({
        _P.VIEW, _P.VIEW_ALL_SESSIONS, _P.VIEW_OWN_SESSIONS, _P.START_STOP, _P.PAUSE_RESUME, _P.LOCK,
        _P.SET_MODE, _P.BOOST, _P.RESERVE, _P.CHANGE_SETTINGS, _P.MANAGE_MEMBERS, _P.VIEW_LOAD,
        _P.SOFT_TROUBLESHOOT, _P.EXPORT,
    }),
    Role.MEMBER: frozenset({
        _P.VIEW, _P.VIEW_OWN_SESSIONS, _P.START_STOP, _P.PAUSE_RESUME, _P.SET_MODE, _P.BOOST, _P.RESERVE,
        _P.EXPORT,
    }),
    Role.FLEET_MANAGER: frozenset({
        _P.VIEW, _P.VIEW_ALL_SESSIONS, _P.VIEW_OWN_SESSIONS, _P.START_STOP, _P.PAUSE_RESUME, _P.LOCK,
        _P.SET_MODE, _P.BOOST, _P.CHANGE_SETTINGS, _P.VIEW_LOAD, _P.SET_LIMIT, _P.BULK_ACTIONS,
        _P.SOFT_TROUBLESHOOT, _P.ACKNOWLEDGE_ALERTS, _P.EXPORT,
    }),
    Role.SUPPORT: frozenset({
        _P.VIEW, _P.VIEW_ALL_SESSIONS, _P.VIEW_LOAD, _P.SOFT_TROUBLESHOOT, _P.TROUBLESHOOT, _P.LOCK,
        _P.ACKNOWLEDGE_ALERTS, _P.RUN_SQL, _P.EXPORT,
    }),
    Role.INSTALLER: frozenset({_P.VIEW, _P.INSTALL, _P.SOFT_TROUBLESHOOT}),
    Role.OPERATOR: frozenset(set(Permission)),
}


@dataclass(frozen=True, slots=True)
class Grants:
    """Every role one user holds, as loaded from the store."""

    user_id: str
    charger_roles: Mapping[str, Role] = field(default_factory=dict)  # charger_id -> owner | member
    org_ids: frozenset[str] = frozenset()                            # fleet manager of these
    platform_roles: frozenset[Role] = frozenset()

    def __post_init__(self) -> None:
        bad = [r for r in self.charger_roles.values() if r not in CHARGER_ROLES]
        bad += [r for r in self.platform_roles if r not in PLATFORM_ROLES]
        if bad:
            raise ValueError(f"roles at the wrong scope: {sorted(set(bad))}")

    @property
    def roles(self) -> frozenset[Role]:
        """Every role the user holds somewhere (for navigation: which pages to show)."""
        found = set(self.charger_roles.values()) | set(self.platform_roles)
        if self.org_ids:
            found.add(Role.FLEET_MANAGER)
        return frozenset(found)

    def has_platform(self, *roles: Role) -> bool:
        return any(r in self.platform_roles for r in roles)


@dataclass(frozen=True, slots=True)
class ChargerRef:
    """What the policy needs to know about a charger: where it belongs."""

    charger_id: str
    site_id: str | None = None
    org_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    via: Role | None = None  # the role that granted it


def roles_on(grants: Grants, charger: ChargerRef) -> frozenset[Role]:
    """The user's roles that apply to this charger."""
    found: set[Role] = set(grants.platform_roles)
    role = grants.charger_roles.get(charger.charger_id)
    if role is not None:
        found.add(role)
    if charger.org_id is not None and charger.org_id in grants.org_ids:
        found.add(Role.FLEET_MANAGER)
    return frozenset(found)


# Strongest first: the role named in a Decision is the first that grants the permission.
_ORDER: Final = (Role.OPERATOR, Role.OWNER, Role.FLEET_MANAGER, Role.SUPPORT, Role.INSTALLER, Role.MEMBER)


def decide(grants: Grants, permission: Permission, charger: ChargerRef | None = None) -> Decision:
    """May this user do ``permission`` on ``charger`` (or platform-wide when ``charger`` is None)?

    Platform-wide permissions (``RUN_SQL``, installer mode, acknowledging alerts across the fleet)
    are asked with ``charger=None`` and only platform roles count; a fleet manager's
    ``BULK_ACTIONS`` without a charger means "may use the bulk page", each charger is then
    checked on its own.
    """
    held = roles_on(grants, charger) if charger is not None else _platform_wide(grants)
    for role in _ORDER:
        if role in held and permission in GRANTS[role]:
            return Decision(True, f"allowed as {role.label.lower()}", role)
    return Decision(False, _refusal(permission, held, charger))


def _platform_wide(grants: Grants) -> frozenset[Role]:
    found = set(grants.platform_roles)
    if grants.org_ids:
        found.add(Role.FLEET_MANAGER)
    return frozenset(found)


def _refusal(permission: Permission, held: frozenset[Role], charger: ChargerRef | None) -> str:
    what = permission.value.replace("_", " ")
    if charger is not None and not held:
        return f"you have no access to charger {charger.charger_id}"
    if held == {Role.MEMBER}:
        return f"only the charger's owner may {what}; ask them to do it or to change your role"
    where = f" on charger {charger.charger_id}" if charger is not None else ""
    names = ", ".join(sorted(r.label.lower() for r in held)) or "no role"
    return f"your role ({names}) does not allow {what}{where}"


def visible(grants: Grants, chargers: Iterable[ChargerRef]) -> list[ChargerRef]:
    """The chargers this user may see, in the given order."""
    return [c for c in chargers if decide(grants, Permission.VIEW, c).allowed]
