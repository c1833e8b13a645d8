"""The access check every page goes through: who is signed in, and may they do this?

Pages never query or act directly. They call the service layer (``dashboards.services`` and the
modules beside it), and every service function starts with :meth:`Access.require` (one charger)
or :meth:`Access.visible` (a scope). A refusal raises :class:`AccessDenied` with a sentence a page
can show, and is written to the access log. Calling a service function directly, as the tests do,
is refused in exactly the same way as clicking in the app.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from psycopg import Connection

from control.access import ChargerRef, Decision, Grants, Permission, Role, decide
from warehouse import access_store


class Database(Protocol):
    """Hands out a connection that commits when its block ends (``psycopg_pool.ConnectionPool``)."""

    def connection(self) -> AbstractContextManager[Connection]: ...


class AccessDenied(PermissionError):
    def __init__(self, decision: Decision, permission: Permission, charger_id: str | None) -> None:
        super().__init__(decision.reason)
        self.decision, self.permission, self.charger_id = decision, permission, charger_id


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user and every role they hold (reloaded per page run, so revocation is immediate)."""

    user_id: str
    email: str
    display_name: str
    grants: Grants
    time_zone: str = "UTC"

    @property
    def roles(self) -> frozenset[Role]:
        return self.grants.roles


class Access:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_id: Callable[[], str] = lambda: f"u-{uuid.uuid4().hex[:16]}") -> None:
        self._db, self._clock, self._new_id = db, clock, new_id

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._db.connection() as conn:
            yield conn

    def now(self) -> datetime:
        return self._clock()

    # who ---------------------------------------------------------------------------------------

    def sign_in(self, *, email: str, display_name: str, issuer: str | None, subject: str | None) -> Principal:
        """The FlowBankOS user behind an OpenID Connect identity (``st.user``), created on first sight."""
        if not email or "@" not in email:
            raise AccessDenied(Decision(False, "your identity provider did not give an e-mail address"),
                               Permission.VIEW, None)
        now = self._clock()
        with self._db.connection() as conn:
            user = access_store.record_sign_in(conn, email=email, display_name=display_name, issuer=issuer,
                                               subject=subject, now=now, new_id=self._new_id)
            access_store.log_access(conn, ts=now, user_id=user.user_id, action="sign_in", charger_id=None,
                                    allowed=not user.disabled, detail=issuer)
            if user.disabled:
                raise AccessDenied(Decision(False, "this account is disabled; contact your operator"),
                                   Permission.VIEW, None)
            grants = access_store.load_grants(conn, user.user_id)
        return Principal(user.user_id, user.email, user.display_name, grants, user.time_zone)

    def principal(self, user_id: str) -> Principal:
        with self._db.connection() as conn:
            user = access_store.get_user(conn, user_id)
            grants = access_store.load_grants(conn, user_id)
        return Principal(user.user_id, user.email, user.display_name, grants, user.time_zone)

    # may they ----------------------------------------------------------------------------------

    def check(self, who: Principal, permission: Permission, charger_id: str | None = None) -> Decision:
        return self._decide(who, permission, charger_id)[0]

    def _decide(self, who: Principal, permission: Permission,
                charger_id: str | None) -> tuple[Decision, ChargerRef | None]:
        if charger_id is None:
            return decide(who.grants, permission), None
        with self._db.connection() as conn:
            ref = access_store.charger_ref(conn, charger_id)
        if ref is None:
            # Same answer as for a charger that exists but is not theirs: ids are not probed.
            return Decision(False, f"you have no access to charger {charger_id}"), None
        return decide(who.grants, permission, ref), ref

    def require(self, who: Principal, permission: Permission, charger_id: str | None = None) -> ChargerRef | None:
        """Return the charger (None for platform-wide permissions) or raise :class:`AccessDenied`.

        Refusals are logged; granted reads are not (they would drown the log), granted actions
        are logged by the service that performs them, with their outcome.
        """
        decision, ref = self._decide(who, permission, charger_id)
        if not decision.allowed:
            with self._db.connection() as conn:
                access_store.log_access(conn, ts=self._clock(), user_id=who.user_id, action=permission.value,
                                        charger_id=charger_id, allowed=False, detail=decision.reason)
            raise AccessDenied(decision, permission, charger_id)
        return ref

    def require_all(self, who: Principal, permission: Permission, charger_ids: Sequence[str]) -> None:
        """All or nothing, for a page that acts on a selection it was shown."""
        for charger_id in charger_ids:
            self.require(who, permission, charger_id)

    def visible(self, who: Principal, *, site_id: str | None = None,
                charger_ids: Sequence[str] | None = None) -> list[ChargerRef]:
        with self._db.connection() as conn:
            return access_store.visible_chargers(conn, who.grants, site_id=site_id, charger_ids=charger_ids)

    def visible_ids(self, who: Principal, *, site_id: str | None = None) -> list[str]:
        return [ref.charger_id for ref in self.visible(who, site_id=site_id)]

    def log(self, who: Principal, action: str, charger_id: str | None, *, allowed: bool = True,
            detail: str | None = None) -> None:
        with self._db.connection() as conn:
            access_store.log_access(conn, ts=self._clock(), user_id=who.user_id, action=action,
                                    charger_id=charger_id, allowed=allowed, detail=detail)
