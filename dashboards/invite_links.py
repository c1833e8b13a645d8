"""Invitation links opened before signing in, remembered across the sign-in redirect.

``st.login()`` sends the browser to the identity provider and back to the app's root: a new
Streamlit session, so the link's ``?token=`` and ``st.session_state`` are gone (measured with
Streamlit 1.67 and ``oidc-provider-mock``: only cookies survive). So a signed-out visitor's link
is remembered on the server, keyed by a random nonce that only their browser holds (a session
cookie, :mod:`dashboards.invite_flow`):

- :meth:`PendingInvites.remember` checks the link first (damaged, unknown, expired, used and
  revoked links are refused with the sentence to show, and nothing is stored), then stores the
  SHA-256 of the nonce and of the token for :data:`PENDING_TTL`. The token itself is stored
  nowhere, and never logged.
- :meth:`PendingInvites.recall` gives the remembered link back as a
  :class:`~dashboards.sharing_service.TokenDigest`, which ``SharingService.preview`` and
  ``accept`` take like a token: the signed-in user's e-mail must still be the invited one, and a
  resend still kills the old link.
- :meth:`PendingInvites.forget` deletes it once used (accepted, or refused for good).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeGuard

from control import sharing as rules
from control.sharing import InviteStatus
from dashboards.access import Access
from dashboards.sharing_service import REPLACED, InviteRefused, TokenDigest, link_digest
from warehouse import pending_invite_store, sharing_store

# Long enough to sign in (or create an account at the provider), short enough not to linger.
PENDING_TTL: Final = timedelta(minutes=30)
_NONCE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class PendingLink:
    nonce: str              # what the browser's cookie holds
    link: TokenDigest       # what SharingService.preview/accept take
    expires_at: datetime


def _nonce_digest(nonce: str) -> bytes:
    return hashlib.sha256(nonce.encode("ascii")).digest()


def looks_like_nonce(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _NONCE_RE.fullmatch(value) is not None


class PendingInvites:
    def __init__(self, access: Access, *, ttl: timedelta = PENDING_TTL,
                 new_nonce: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a remembered invitation must live for some time")
        self._access, self._ttl, self._new_nonce = access, ttl, new_nonce

    def remember(self, token: str, *, replacing: str | None = None) -> PendingLink:
        """Remember an invitation link for a visitor who is about to sign in.

        Raises :class:`InviteRefused` (nothing stored) when the link cannot be accepted by anyone:
        damaged, unknown or replaced by a resend, expired, used or revoked. Whether it is for the
        visitor's e-mail is checked after sign-in. ``replacing``: the nonce this browser held
        already; its link is forgotten (one remembered link per browser).
        """
        digest = link_digest(token)
        now = self._access.now()
        nonce = self._new_nonce()
        if not looks_like_nonce(nonce):
            raise ValueError("new_nonce must return 32 random bytes, URL-safe base64 without padding")
        with self._access.connection() as conn, conn.transaction():
            row = sharing_store.invite_by_digest(conn, digest)
            if row is None:
                raise InviteRefused(REPLACED)
            status = rules.invite_status(expires_at=row.expires_at, accepted_at=row.accepted_at,
                                         revoked_at=row.revoked_at, now=now)
            if status is not InviteStatus.PENDING:
                raise InviteRefused(rules.refusal_for(status, expires_at=row.expires_at,
                                                      owner_name=row.created_by_name) or REPLACED)
            # Never past the invitation's own expiry: a remembered link is no longer-lived than the link.
            expires_at = min(now + self._ttl, row.expires_at)
            if looks_like_nonce(replacing):
                pending_invite_store.delete(conn, _nonce_digest(replacing))
            pending_invite_store.insert(conn, nonce_digest=_nonce_digest(nonce), token_digest=digest,
                                        created_at=now, expires_at=expires_at)
        return PendingLink(nonce, TokenDigest(digest), expires_at)

    def recall(self, nonce: str | None) -> PendingLink | None:
        """The link this browser's nonce remembers; None when there is none (any more)."""
        if not looks_like_nonce(nonce):
            return None
        now = self._access.now()
        with self._access.connection() as conn:
            found = pending_invite_store.lookup(conn, _nonce_digest(nonce), now)
        return None if found is None else PendingLink(nonce, TokenDigest(found[0]), found[1])

    def forget(self, nonce: str) -> bool:
        """Delete the remembered link (used, refused for good, or dismissed); False when it was gone."""
        if not looks_like_nonce(nonce):
            return False
        with self._access.connection() as conn:
            return pending_invite_store.delete(conn, _nonce_digest(nonce))

