"""Shared access to a charger: invitations, the member cap, reservations and per-user colours. Pure.

Standard library only, no IO; time (``now``) and randomness (``random_bytes``) are parameters.

- **Invitations**: an owner invites an e-mail address; the link carries a random token of
  :data:`TOKEN_BYTES` bytes (URL-safe base64) and only its SHA-256 (:func:`token_digest`) is
  stored. A token expires after :data:`INVITE_TTL` unless renewed by a resend, which issues a
  new token (the old one stops working). Accepting needs the signed-in user's e-mail to match
  the invited one, case-insensitively (:func:`same_email`); the refusals are sentences
  (:func:`refusal_for`, :func:`email_mismatch_message`).
- **Member cap**: an owner may cap how many members share the charger. It is checked when an
  invitation is sent (members plus pending invitations) and again when one is accepted
  (members only), and the refusal says what to do (:func:`check_cap_for_invite`,
  :func:`check_cap_for_accept`).
- **Reservations**: half-open slots ``[start, end)``; :func:`find_conflicts` and
  :func:`resolution_options` ("Move to the next free slot 14:00–16:00", "Shorten to end at
  13:30", "Ask Olivia Owner to override"). The database's exclusion constraint is the last word
  on overlaps; these functions explain them.
- **Colours**: :func:`assign_colours` gives each user of a shared schedule a stable colour.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INVITE_TTL: Final = timedelta(days=7)
TOKEN_BYTES: Final = 32
MAX_MEMBER_CAP: Final = 100

MIN_RESERVATION: Final = timedelta(minutes=15)
MAX_RESERVATION: Final = timedelta(hours=24)
BOOKING_HORIZON: Final = timedelta(days=60)
START_GRACE: Final = timedelta(minutes=5)   # a slot "starting now" may begin a little in the past

_TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, URL-safe base64 without padding
_EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class SharingRuleError(ValueError):
    """A request the rules refuse (bad e-mail, bad cap, bad slot); the message is for the user."""


def _zone(tz_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


# --------------------------------------------------------------------------- invitations


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str          # goes into the link, never stored
    digest: bytes       # SHA-256 of the token: what the database keeps
    issued_at: datetime
    expires_at: datetime


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def looks_like_token(token: str | None) -> bool:
    """Whether ``token`` has the shape of one of ours (a truncated link does not)."""
    return token is not None and _TOKEN_RE.fullmatch(token) is not None


def issue_token(now: datetime, random_bytes: Callable[[int], bytes], *, ttl: timedelta = INVITE_TTL) -> IssuedToken:
    """A fresh invitation token valid from ``now`` for ``ttl``."""
    _require_aware("now", now)
    if ttl <= timedelta(0):
        raise ValueError("an invitation must be valid for some time")
    raw = random_bytes(TOKEN_BYTES)
    if len(raw) != TOKEN_BYTES:
        raise ValueError(f"random_bytes returned {len(raw)} bytes, not {TOKEN_BYTES}")
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return IssuedToken(token, token_digest(token), now, now + ttl)


def invite_link(base_url: str, token: str) -> str:
    """``<base>/invite?token=...``: the dashboards' accept-invite page."""
    return f"{base_url.rstrip('/')}/invite?{urlencode({'token': token})}"


def normalise_email(raw: str) -> str:
    """The address as typed, trimmed; refuse what cannot be an e-mail address."""
    email = raw.strip()
    if not _EMAIL_RE.fullmatch(email):
        raise SharingRuleError(f"{raw.strip() or 'An empty address'!s} is not an e-mail address.")
    return email


def same_email(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def mask_email(email: str) -> str:
    """``m***@example.com``: enough to recognise one's own address, not to harvest someone else's."""
    local, _, domain = email.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


class InviteStatus(StrEnum):
    PENDING = "pending"
    EXPIRED = "expired"
    ACCEPTED = "accepted"
    REVOKED = "revoked"


def invite_status(*, expires_at: datetime, accepted_at: datetime | None, revoked_at: datetime | None,
                  now: datetime) -> InviteStatus:
    if accepted_at is not None:
        return InviteStatus.ACCEPTED
    if revoked_at is not None:
        return InviteStatus.REVOKED
    return InviteStatus.EXPIRED if now >= expires_at else InviteStatus.PENDING


def fmt_date(ts: datetime, tz_name: str = "UTC") -> str:
    """``3 Dec 2026`` in the reader's time zone."""
    local = ts.astimezone(_zone(tz_name))
    return f"{local.day} {local:%b %Y}"


def refusal_for(status: InviteStatus, *, expires_at: datetime, owner_name: str, tz_name: str = "UTC") -> str | None:
    """Why an invitation in ``status`` cannot be accepted (None: it can)."""
    if status is InviteStatus.EXPIRED:
        return f"This invitation expired on {fmt_date(expires_at, tz_name)}; ask {owner_name} to resend it."
    if status is InviteStatus.REVOKED:
        return f"This invitation was withdrawn by {owner_name}; ask them for a new one if you still need access."
    if status is InviteStatus.ACCEPTED:
        return "This invitation has already been used. Each invitation link works once."
    return None


def email_mismatch_message(*, invited_email: str, signed_in_email: str, owner_name: str) -> str:
    return (f"This invitation is for {mask_email(invited_email)}, but you are signed in as {signed_in_email}. "
            f"Sign out and sign in with the invited address, or ask {owner_name} to invite {signed_in_email}.")


def expiry_text(expires_at: datetime, now: datetime, tz_name: str = "UTC") -> str:
    """``expires in 6 days (3 Dec 2026 12:00)`` or ``expired on 3 Dec 2026``."""
    if now >= expires_at:
        return f"expired on {fmt_date(expires_at, tz_name)}"
    left = expires_at - now
    if left >= timedelta(days=2):
        amount = f"{left.days} days"
    elif left >= timedelta(hours=2):
        amount = f"{int(left.total_seconds() // 3600)} hours"
    else:
        amount = f"{max(int(left.total_seconds() // 60), 1)} minutes"
    local = expires_at.astimezone(_zone(tz_name))
    return f"expires in {amount} ({fmt_date(expires_at, tz_name)} {local:%H:%M})"


# --------------------------------------------------------------------------- member cap


@dataclass(frozen=True, slots=True)
class CapCheck:
    allowed: bool
    message: str | None = None


def validate_cap(cap: int | None) -> int | None:
    """None = no cap; otherwise 0..:data:`MAX_MEMBER_CAP` members."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_MEMBER_CAP:
        raise SharingRuleError(f"The member cap must be a whole number from 0 to {MAX_MEMBER_CAP}, or no cap.")
    return cap


def cap_summary(members: int, cap: int | None) -> str:
    noun = "member" if members == 1 else "members"
    return f"{members} {noun} (no cap)" if cap is None else f"{members} of {cap} members"


def check_cap_for_invite(*, members: int, pending: int, cap: int | None) -> CapCheck:
    """May the owner send one more invitation? Pending invitations count: each may become a member."""
    if cap is None:
        return CapCheck(True)
    if members >= cap:
        return CapCheck(False, f"You have {members} of {cap} members. Remove a member or raise the cap.")
    if members + pending >= cap:
        waiting = "1 pending invitation" if pending == 1 else f"{pending} pending invitations"
        return CapCheck(False, f"You have {members} of {cap} members and {waiting}, which would fill the cap. "
                               "Revoke an invitation, remove a member or raise the cap.")
    return CapCheck(True)


def check_cap_for_accept(*, members: int, cap: int | None, charger_name: str, owner_name: str) -> CapCheck:
    """May one more member join now (the owner may have lowered the cap since inviting)?"""
    if cap is None or members < cap:
        return CapCheck(True)
    return CapCheck(False, f"{charger_name} already has {members} of {cap} members, the most its owner allows. "
                           f"Ask {owner_name} to remove a member or raise the cap, then open this link again.")


# --------------------------------------------------------------------------- reservations


@dataclass(frozen=True, slots=True)
class Slot:
    """``[start, end)``, timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        if self.end <= self.start:
            raise SharingRuleError("A reservation must end after it starts.")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Slot) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class Booking:
    reservation_id: str
    user_id: str
    user_name: str
    slot: Slot


def validate_request(slot: Slot, now: datetime) -> None:
    """Refuse a slot nobody should book (raises :class:`SharingRuleError` with the reason)."""
    if slot.duration < MIN_RESERVATION:
        raise SharingRuleError(f"A reservation lasts at least {int(MIN_RESERVATION.total_seconds() // 60)} minutes.")
    if slot.duration > MAX_RESERVATION:
        raise SharingRuleError(f"A reservation lasts at most {int(MAX_RESERVATION.total_seconds() // 3600)} hours; "
                               "book the rest as a second reservation.")
    if slot.end <= now or slot.start < now - START_GRACE:
        raise SharingRuleError("That time has already started or passed; pick a slot from now on.")
    if slot.start > now + BOOKING_HORIZON:
        raise SharingRuleError(f"Reservations can be made up to {BOOKING_HORIZON.days} days ahead.")


def find_conflicts(slot: Slot, bookings: Iterable[Booking]) -> list[Booking]:
    """The live bookings overlapping ``slot`` (touching ends do not), earliest first."""
    return sorted((b for b in bookings if b.slot.overlaps(slot)), key=lambda b: (b.slot.start, b.reservation_id))


def next_free_slot(duration: timedelta, not_before: datetime, bookings: Iterable[Booking]) -> Slot:
    """The earliest slot of ``duration`` starting at or after ``not_before`` that overlaps nothing."""
    start = not_before
    for booking in sorted(bookings, key=lambda b: b.slot.start):
        if booking.slot.end <= start:
            continue
        if booking.slot.start >= start + duration:
            break
        start = booking.slot.end
    return Slot(start, start + duration)


def fmt_span(slot: Slot, tz_name: str = "UTC", *, on_day_of: datetime | None = None) -> str:
    """``14:00–16:00`` when the slot is on the local day of ``on_day_of``; else with the day(s)."""
    zone = _zone(tz_name)
    start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
    same_day = end.date() == start.date() or (end - timedelta(microseconds=1)).date() == start.date()
    reference = (on_day_of or slot.start).astimezone(zone).date()
    if same_day and start.date() == reference:
        return f"{start:%H:%M}–{end:%H:%M}"
    if same_day:
        return f"{start:%a} {start.day} {start:%b %H:%M}–{end:%H:%M}"
    return f"{start:%a} {start.day} {start:%b %H:%M}–{end:%a} {end.day} {end:%b %H:%M}"


def fmt_instant(ts: datetime, tz_name: str = "UTC", *, on_day_of: datetime | None = None) -> str:
    """``13:30`` on the local day of ``on_day_of``, else ``Thu 27 Nov 13:30``."""
    zone = _zone(tz_name)
    local = ts.astimezone(zone)
    if on_day_of is not None and on_day_of.astimezone(zone).date() == local.date():
        return f"{local:%H:%M}"
    return f"{local:%a} {local.day} {local:%b %H:%M}"


class Resolution(StrEnum):
    MOVE = "move"                # same length, the next free slot
    SHORTEN = "shorten"          # keep the start, end when the first conflict begins
    START_LATER = "start_later"  # keep the end, start when the last conflict ends
    OVERRIDE = "override"        # the owner cancels the conflicting reservations and books
    ASK_OWNER = "ask_owner"      # a member asks the owner to override


@dataclass(frozen=True, slots=True)
class ResolutionOption:
    kind: Resolution
    label: str
    slot: Slot | None = None     # the slot to book instead (None: ask someone)


def _who(booking: Booking, requester_id: str) -> str:
    return "your own" if booking.user_id == requester_id else f"{booking.user_name}'s"


def describe_conflicts(requested: Slot, conflicts: Sequence[Booking], *, requester_id: str,
                       tz_name: str = "UTC") -> str:
    """``That time overlaps Max Member's reservation 13:00–15:00.``"""
    parts = [f"{_who(b, requester_id)} reservation {fmt_span(b.slot, tz_name, on_day_of=requested.start)}"
             for b in conflicts]
    if not parts:
        return "That time is free."
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"That time overlaps {listed}."


def resolution_options(requested: Slot, bookings: Sequence[Booking], *, requester_id: str,
                       owner_names: Sequence[str], can_override: bool, now: datetime,
                       tz_name: str = "UTC") -> list[ResolutionOption]:
    """What the user can do instead of the conflicting ``requested`` slot, most useful first."""
    conflicts = find_conflicts(requested, bookings)
    if not conflicts:
        return []
    options: list[ResolutionOption] = []
    day = requested.start

    moved = next_free_slot(requested.duration, max(requested.start, now), bookings)
    if moved.start - now <= BOOKING_HORIZON:
        options.append(ResolutionOption(Resolution.MOVE,
                                        f"Move to the next free slot {fmt_span(moved, tz_name, on_day_of=day)}",
                                        moved))

    first_start = conflicts[0].slot.start
    if first_start - requested.start >= MIN_RESERVATION and first_start > now:
        shorter = Slot(requested.start, first_start)
        options.append(ResolutionOption(
            Resolution.SHORTEN, f"Shorten to end at {fmt_instant(first_start, tz_name, on_day_of=day)}", shorter))

    last_end = max(b.slot.end for b in conflicts)
    if requested.end - last_end >= MIN_RESERVATION:
        later = Slot(last_end, requested.end)
        if later != moved:
            options.append(ResolutionOption(
                Resolution.START_LATER, f"Start later: {fmt_span(later, tz_name, on_day_of=day)}", later))

    others = [b for b in conflicts if b.user_id != requester_id]
    if others and can_override:
        names = sorted({b.user_name for b in others})
        whose = " and ".join(names)
        options.append(ResolutionOption(
            Resolution.OVERRIDE,
            f"Override: cancel {whose}'s reservation{'s' if len(others) > 1 else ''} and book "
            f"{fmt_span(requested, tz_name, on_day_of=day)}", requested))
    elif others and owner_names:
        options.append(ResolutionOption(Resolution.ASK_OWNER, f"Ask {' or '.join(owner_names)} to override"))
    return options


# --------------------------------------------------------------------------- usage and colours


def unassigned_tag_label(id_tag: str | None) -> str:
    """How sessions whose id tag belongs to nobody are grouped in a per-user breakdown."""
    return "Started without an id tag" if not id_tag else f"Unassigned tag {id_tag}"


# Distinguishable on white and for the common colour-vision deficiencies (Tableau 10 order).
PALETTE: Final[tuple[str, ...]] = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


def assign_colours(user_ids: Iterable[str], palette: Sequence[str] = PALETTE) -> dict[str, str]:
    """A colour per user: each user's own (hash-chosen) colour when free, the next free one when
    taken, so a user keeps their colour from week to week and two users of one schedule never
    share one while the palette lasts."""
    if not palette:
        raise ValueError("the palette is empty")
    out: dict[str, str] = {}
    used: set[int] = set()
    for user_id in sorted(set(user_ids)):
        preferred = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:4], "big") % len(palette)
        index = preferred
        if len(used) < len(palette):
            while index in used:
                index = (index + 1) % len(palette)
        used.add(index)
        out[user_id] = palette[index]
    return out


def as_utc(value: datetime) -> datetime:
    _require_aware("value", value)
    return value.astimezone(UTC)


def colour_legend(colours: Mapping[str, str], names: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, colour)`` pairs sorted by name, for a chart's legend scale."""
    return sorted(((names.get(uid, uid), colour) for uid, colour in colours.items()), key=lambda p: p[0])
