"""Installer mode: one-time codes and the installer session. Pure (randomness and time are passed in).

Support or an operator issues a code for an installer (optionally for one site). The installer
types it on the installer page; only its SHA-256 is stored, it works once, and only before it
expires. Redeeming it opens an installer session of :data:`SESSION_LENGTH`; after that the page
falls back to the code entry.

Codes are 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L), shown as
``ABCD-EFGH``; what the installer types is normalised (case, spaces and dashes ignored).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH: Final = 8
DEFAULT_VALIDITY: Final = timedelta(hours=24)
MAX_VALIDITY: Final = timedelta(days=7)
SESSION_LENGTH: Final = timedelta(minutes=30)


class InstallerCodeError(ValueError):
    """A code that cannot be issued or redeemed; the message is for the person at the screen."""


def new_code(random_bytes: bytes) -> str:
    """A code from ``CODE_LENGTH`` random bytes (``secrets.token_bytes(CODE_LENGTH)`` in production)."""
    if len(random_bytes) < CODE_LENGTH:
        raise ValueError(f"need {CODE_LENGTH} random bytes")
    chars = "".join(ALPHABET[b % len(ALPHABET)] for b in random_bytes[:CODE_LENGTH])
    return f"{chars[:4]}-{chars[4:]}"


def normalise(typed: str) -> str:
    """What the installer typed, as issued: upper case, no spaces or dashes."""
    return "".join(ch for ch in typed.upper() if ch not in " -\t")


def code_hash(code: str) -> bytes:
    """The SHA-256 stored in ``installer_codes.code_sha256`` (of the normalised code)."""
    return hashlib.sha256(normalise(code).encode("ascii", "replace")).digest()


def check_format(typed: str) -> str:
    """The normalised code, or :class:`InstallerCodeError` saying what is wrong with it."""
    code = normalise(typed)
    if not code:
        raise InstallerCodeError("Enter the installer code you were given.")
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        raise InstallerCodeError(f"An installer code has {CODE_LENGTH} letters and digits, like ABCD-EFGH; "
                                 "check for a typo.")
    return code


def validity(hours: float) -> timedelta:
    """How long an issued code stays valid (refuses nonsense)."""
    if not hours > 0:
        raise InstallerCodeError("A code must stay valid for some time.")
    span = timedelta(hours=hours)
    if span > MAX_VALIDITY:
        raise InstallerCodeError(f"A code can stay valid for at most {MAX_VALIDITY.days} days.")
    return span


@dataclass(frozen=True, slots=True)
class InstallerSession:
    user_id: str
    started_at: datetime
    site_id: str | None            # None: every site

    @property
    def ends_at(self) -> datetime:
        return self.started_at + SESSION_LENGTH

    def active(self, now: datetime) -> bool:
        return self.started_at <= now < self.ends_at

    def remaining(self, now: datetime) -> timedelta:
        return max(timedelta(0), self.ends_at - now)

    def covers(self, site_id: str | None) -> bool:
        return self.site_id is None or self.site_id == site_id


def remaining_text(left: timedelta) -> str:
    """ "23 min 05 s left" for the session timer."""
    total = int(left.total_seconds())
    if total <= 0:
        return "installer mode has ended"
    return f"{total // 60} min {total % 60:02d} s left"
