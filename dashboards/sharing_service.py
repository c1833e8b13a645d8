"""Shared access to a charger: members, invitations, the member cap, reservations, usage per user.

Every public method takes the signed-in :class:`~dashboards.access.Principal` first and starts
with an access check (``control.access.Permission``): ``MANAGE_MEMBERS`` to list, invite, resend,
revoke, remove and set the cap; ``RESERVE`` to book and cancel one's own reservation (cancelling
someone else's needs ``MANAGE_MEMBERS``); ``VIEW`` for the shared schedule; ``VIEW_ALL_SESSIONS``
for everyone's usage, else ``VIEW_OWN_SESSIONS`` for one's own. Accepting an invitation needs no
role (the token is the credential, or its digest for a link remembered across sign-in by
:mod:`dashboards.invite_links`) but the signed-in user's e-mail must be the invited one.

Refusals by policy raise :class:`~dashboards.access.AccessDenied`; refusals by the sharing rules
(cap reached, expired invitation, bad slot) raise :class:`SharingError` with a sentence for the
page. A reservation conflict is an answer, not an error: :meth:`SharingService.reserve` returns
:class:`ReservationConflict` with resolution options, whether the overlap was seen beforehand or
only by the database's exclusion constraint (another user won the race). Every action is written
to the access log with its outcome.
"""

from __future__ import annotations

import io
import secrets
import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

import segno

from control import sharing as rules
from control.access import Decision, Permission, Role, decide
from control.settings import Settings
from control.sharing import InviteStatus, ResolutionOption, Slot
from control.tariffs import ADD_TARIFF_MESSAGE
from dashboards.access import Access, AccessDenied, Principal
from dashboards.invite_mail import InviteMail, InviteMailer, dashboard_base_url, mailer_from_settings
from warehouse import access_store, sharing_store
from warehouse.costing import money
from warehouse.queries import Connection


class SharingError(Exception):
    """A request the sharing rules refuse; ``str(exc)`` is the sentence to show."""


class InviteRefused(SharingError):
    pass


class CapReached(SharingError):
    pass


@dataclass(frozen=True, slots=True)
class SharingOverview:
    charger_id: str
    charger_name: str
    can_manage: bool          # members, invitations, cap, cancel anyone's reservation
    can_reserve: bool
    sees_everyones_usage: bool
    member_cap: int | None
    member_count: int
    owner_names: tuple[str, ...]

    @property
    def cap_text(self) -> str:
        return rules.cap_summary(self.member_count, self.member_cap)


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    display_name: str
    email: str
    role: Role
    since: datetime
    is_you: bool


@dataclass(frozen=True, slots=True)
class PendingInvite:
    invite_id: str
    email: str
    created_at: datetime
    expires_at: datetime
    sent_count: int
    status: InviteStatus
    expiry_text: str


@dataclass(frozen=True, slots=True)
class SentInvite:
    invite_id: str
    charger_id: str
    email: str
    link: str
    expires_at: datetime
    expiry_text: str
    emailed: bool
    email_error: str | None   # the SMTP problem when sending failed (the link still works)
    sent_count: int


@dataclass(frozen=True, slots=True)
class InvitePreview:
    charger_name: str
    inviter_name: str
    invited_email_masked: str
    status: InviteStatus
    refusal: str | None       # why accepting would be refused; None: it can be accepted
    expiry_text: str


@dataclass(frozen=True, slots=True)
class TokenDigest:
    """An invitation link remembered across sign-in: the SHA-256 of its token, never the token.
    Only the server makes one (from its own pending_invite_links row), never from user input."""

    value: bytes = field(repr=False)


InviteLink = str | TokenDigest    # the token from the link's ?token=, or a remembered link


@dataclass(frozen=True, slots=True)
class Accepted:
    charger_id: str
    charger_name: str
    role: Role
    already: bool             # they had this charger already; the invitation is used up anyway


@dataclass(frozen=True, slots=True)
class ScheduledReservation:
    reservation_id: str
    user_id: str
    user_name: str
    starts_at: datetime
    ends_at: datetime
    note: str | None
    colour: str
    mine: bool
    can_cancel: bool


@dataclass(frozen=True, slots=True)
class Reserved:
    reservation: ScheduledReservation
    overridden: tuple[str, ...] = ()   # reservations the owner cancelled to make room


@dataclass(frozen=True, slots=True)
class ReservationConflict:
    charger_id: str
    requested: Slot
    message: str
    conflicts: tuple[ScheduledReservation, ...]
    options: tuple[ResolutionOption, ...]


ReserveOutcome = Reserved | ReservationConflict


@dataclass(frozen=True, slots=True)
class UsageLine:
    label: str
    user_id: str | None
    id_tag: str | None
    sessions: int
    energy_wh: float
    cost: Decimal | None      # incl. VAT, rounded once; None: nothing of it costed
    currency: str | None
    cost_note: str | None     # "Add tariff to compute cost", "2 sessions not costed yet"


@dataclass(frozen=True, slots=True)
class UsageBreakdown:
    scope: Literal["everyone", "own"]
    lines: tuple[UsageLine, ...] = field(default_factory=tuple)

    @property
    def energy_wh(self) -> float:
        return sum(line.energy_wh for line in self.lines)


def qr_png(link: str, *, scale: int = 6) -> bytes:
    """The link as a QR code (PNG), for a phone to scan off the owner's screen."""
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()


class SharingService:
    def __init__(self, access: Access, *, base_url: str, mailer: InviteMailer | None = None,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes,
                 new_id: Callable[[str], str] = lambda prefix: f"{prefix}-{uuid.uuid4().hex[:16]}",
                 invite_ttl: timedelta = rules.INVITE_TTL) -> None:
        self._access, self._base_url, self._mailer = access, base_url, mailer
        self._random_bytes, self._new_id, self._ttl = random_bytes, new_id, invite_ttl

    @property
    def emails_invites(self) -> bool:
        return self._mailer is not None

    # ------------------------------------------------------------------------- overview, members

    def overview(self, who: Principal, charger_id: str) -> SharingOverview:
        ref = self._access.require(who, Permission.VIEW, charger_id)
        assert ref is not None  # noqa: S101 - a charger was named

        def may(p: Permission) -> bool:
            return decide(who.grants, p, ref).allowed

        with self._access.connection() as conn:
            return SharingOverview(
                charger_id, sharing_store.charger_name(conn, charger_id), may(Permission.MANAGE_MEMBERS),
                may(Permission.RESERVE), may(Permission.VIEW_ALL_SESSIONS), sharing_store.member_cap(conn, charger_id),
                sharing_store.count_members(conn, charger_id), tuple(sharing_store.owner_names(conn, charger_id)))

    def members(self, who: Principal, charger_id: str) -> list[Member]:
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        with self._access.connection() as conn:
            rows = sharing_store.members(conn, charger_id)
        return [Member(r.user_id, r.display_name, r.email, Role(r.role), r.since, r.user_id == who.user_id)
                for r in rows]

    def invites(self, who: Principal, charger_id: str) -> list[PendingInvite]:
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        now = self._access.now()
        with self._access.connection() as conn:
            rows = sharing_store.open_invites(conn, charger_id)
        return [PendingInvite(r.invite_id, r.email, r.created_at, r.expires_at, r.sent_count,
                              rules.invite_status(expires_at=r.expires_at, accepted_at=r.accepted_at,
                                                  revoked_at=r.revoked_at, now=now),
                              rules.expiry_text(r.expires_at, now, who.time_zone)) for r in rows]

    def set_member_cap(self, who: Principal, charger_id: str, cap: int | None) -> str:
        """Set (or clear, with None) the cap; return a sentence confirming it."""
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        try:
            cap = rules.validate_cap(cap)
        except rules.SharingRuleError as exc:
            raise SharingError(str(exc)) from exc
        with self._access.connection() as conn, conn.transaction():
            sharing_store.lock_charger(conn, charger_id)
            sharing_store.set_member_cap(conn, charger_id, cap)
            count = sharing_store.count_members(conn, charger_id)
        self._access.log(who, "set_member_cap", charger_id, detail=f"cap={cap}")
        if cap is None:
            return "No member cap: you can invite as many members as you like."
        if count > cap:
            return (f"The cap is now {cap}, below the {count} members sharing the charger. Nobody is removed, "
                    f"but nobody new can join until fewer than {cap} remain.")
        return f"The cap is now {cap} members ({rules.cap_summary(count, cap)})."

    def remove_member(self, who: Principal, charger_id: str, user_id: str) -> str:
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            role = sharing_store.role_of(conn, user_id, charger_id)
            if role == Role.OWNER.value:
                self._refused(who, "remove_member", charger_id, f"{user_id} is an owner")
                raise SharingError("Owners cannot be removed here; an owner can only hand the charger over "
                                   "through your operator.")
            if role is None or not sharing_store.remove_member(conn, user_id, charger_id):
                raise SharingError("That person is not a member of this charger (any more).")
            future = [r.reservation_id for r in sharing_store.live_reservations(conn, charger_id, now,
                                                                                now + rules.BOOKING_HORIZON * 2)
                      if r.user_id == user_id]
            cancelled = sharing_store.cancel_reservations(conn, future, now)
            name = access_store.get_user(conn, user_id).display_name
        self._access.log(who, "remove_member", charger_id, detail=f"{user_id}; {cancelled} reservation(s) cancelled")
        extra = f" and their {cancelled} upcoming reservation(s) were cancelled" if cancelled else ""
        return f"{name} no longer shares this charger{extra}."

    # ------------------------------------------------------------------------- invitations

    def invite(self, who: Principal, charger_id: str, email: str) -> SentInvite:
        """Invite ``email`` as a member. An open invitation to the same address is resent instead."""
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        try:
            email = rules.normalise_email(email)
        except rules.SharingRuleError as exc:
            raise SharingError(str(exc)) from exc
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            cap = sharing_store.lock_charger(conn, charger_id)
            existing = access_store.user_by_email(conn, email)
            if existing is not None:
                role = sharing_store.role_of(conn, existing.user_id, charger_id)
                if role is not None:
                    raise SharingError(f"{existing.display_name} ({email}) already shares this charger as {role}.")
            open_invite = sharing_store.open_invite_for(conn, charger_id, email)
            if open_invite is None:
                check = rules.check_cap_for_invite(members=sharing_store.count_members(conn, charger_id),
                                                   pending=sharing_store.count_pending(conn, charger_id, now), cap=cap)
                if not check.allowed:
                    self._refused(who, "invite", charger_id, check.message)
                    raise CapReached(check.message or "The member cap is reached.")
                token = rules.issue_token(now, self._random_bytes, ttl=self._ttl)
                invite_id = self._new_id("inv")
                sharing_store.insert_invite(conn, invite_id=invite_id, charger_id=charger_id, email=email,
                                            digest=token.digest, created_by=who.user_id, created_at=now,
                                            expires_at=token.expires_at)
                sent_count = 1
            else:
                invite_id = open_invite.invite_id
                token, sent_count = self._renew(conn, who, open_invite, cap, now)
            name = sharing_store.charger_name(conn, charger_id)
        self._access.log(who, "invite" if sent_count == 1 else "resend_invite", charger_id,
                         detail=f"{invite_id} to {email}")
        return self._deliver(who, invite_id, charger_id, email, name, token, sent_count)

    def resend(self, who: Principal, charger_id: str, invite_id: str) -> SentInvite:
        """A new token and expiry for an open invitation; the old link stops working."""
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            cap = sharing_store.lock_charger(conn, charger_id)
            row = sharing_store.invite_by_id(conn, invite_id, for_update=True)
            if row is None or row.charger_id != charger_id or row.accepted_at or row.revoked_at:
                raise SharingError("That invitation is no longer open (accepted or revoked); send a new one.")
            token, sent_count = self._renew(conn, who, row, cap, now)
        self._access.log(who, "resend_invite", charger_id, detail=f"{invite_id} to {row.email} (#{sent_count})")
        return self._deliver(who, invite_id, charger_id, row.email, row.charger_name, token, sent_count)

    def revoke(self, who: Principal, charger_id: str, invite_id: str) -> None:
        self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            row = sharing_store.invite_by_id(conn, invite_id, for_update=True)
            if row is None or row.charger_id != charger_id or not sharing_store.revoke_invite(conn, invite_id, now):
                raise SharingError("That invitation is no longer open (accepted or revoked already).")
        self._access.log(who, "revoke_invite", charger_id, detail=f"{invite_id} to {row.email}")

    def _renew(self, conn: Connection, who: Principal, row: sharing_store.InviteRow, cap: int | None,
               now: datetime) -> tuple[rules.IssuedToken, int]:
        status = rules.invite_status(expires_at=row.expires_at, accepted_at=row.accepted_at,
                                     revoked_at=row.revoked_at, now=now)
        others = sharing_store.count_pending(conn, row.charger_id, now) - (status is InviteStatus.PENDING)
        check = rules.check_cap_for_invite(members=sharing_store.count_members(conn, row.charger_id),
                                           pending=others, cap=cap)
        if not check.allowed:
            self._refused(who, "resend_invite", row.charger_id, check.message)
            raise CapReached(check.message or "The member cap is reached.")
        token = rules.issue_token(now, self._random_bytes, ttl=self._ttl)
        if not sharing_store.renew_invite(conn, row.invite_id, digest=token.digest, expires_at=token.expires_at):
            raise SharingError("That invitation is no longer open (accepted or revoked); send a new one.")
        return token, row.sent_count + 1

    def _deliver(self, who: Principal, invite_id: str, charger_id: str, email: str, charger_name: str,
                 token: rules.IssuedToken, sent_count: int) -> SentInvite:
        link = rules.invite_link(self._base_url, token.token)
        expiry = rules.expiry_text(token.expires_at, token.issued_at, who.time_zone)
        emailed, error = False, None
        if self._mailer is not None:
            try:
                self._mailer.send(InviteMail(email, who.display_name, charger_name, link, expiry))
                emailed = True
            except (smtplib.SMTPException, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        return SentInvite(invite_id, charger_id, email, link, token.expires_at, expiry, emailed, error, sent_count)

    def preview(self, who: Principal, link: InviteLink) -> InvitePreview:
        """What an invitation link offers the signed-in user, and whether accepting would work."""
        row = self._find(link)
        now = self._access.now()
        status = rules.invite_status(expires_at=row.expires_at, accepted_at=row.accepted_at,
                                     revoked_at=row.revoked_at, now=now)
        refusal = rules.refusal_for(status, expires_at=row.expires_at, owner_name=row.created_by_name,
                                    tz_name=who.time_zone)
        if refusal is None and not rules.same_email(row.email, who.email):
            refusal = rules.email_mismatch_message(invited_email=row.email, signed_in_email=who.email,
                                                   owner_name=row.created_by_name)
        return InvitePreview(row.charger_name, row.created_by_name, rules.mask_email(row.email), status, refusal,
                             rules.expiry_text(row.expires_at, now, who.time_zone))

    def accept(self, who: Principal, link: InviteLink) -> Accepted:
        """Grant the signed-in user the invited role on the charger (once, before expiry, right e-mail)."""
        charger_id = self._find(link).charger_id
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            cap = sharing_store.lock_charger(conn, charger_id)  # the cap check and the grant are one step
            row = sharing_store.invite_by_digest(conn, link_digest(link), for_update=True)
            if row is None:
                raise self._refuse_accept(who, charger_id, REPLACED)
            status = rules.invite_status(expires_at=row.expires_at, accepted_at=row.accepted_at,
                                         revoked_at=row.revoked_at, now=now)
            refusal = rules.refusal_for(status, expires_at=row.expires_at, owner_name=row.created_by_name,
                                        tz_name=who.time_zone)
            if refusal is None and not rules.same_email(row.email, who.email):
                refusal = rules.email_mismatch_message(invited_email=row.email, signed_in_email=who.email,
                                                       owner_name=row.created_by_name)
            if refusal is not None:
                raise self._refuse_accept(who, charger_id, refusal, detail=f"{row.invite_id}: {status}")
            current = sharing_store.role_of(conn, who.user_id, charger_id)
            role = Role(row.role)
            if current is None:
                if role is Role.MEMBER:
                    check = rules.check_cap_for_accept(members=sharing_store.count_members(conn, charger_id), cap=cap,
                                                       charger_name=row.charger_name, owner_name=row.created_by_name)
                    if not check.allowed:
                        raise self._refuse_accept(who, charger_id, check.message or "The member cap is reached.",
                                                  cap=True)
                    sharing_store.add_member(conn, who.user_id, charger_id, by=row.created_by)
                else:
                    access_store.grant_charger_role(conn, who.user_id, charger_id, role, by=row.created_by)
            if not sharing_store.mark_accepted(conn, row.invite_id, user_id=who.user_id, now=now):
                raise self._refuse_accept(who, charger_id, rules.refusal_for(
                    InviteStatus.ACCEPTED, expires_at=row.expires_at, owner_name=row.created_by_name) or REPLACED)
        self._access.log(who, "accept_invite", charger_id, detail=row.invite_id)
        return Accepted(charger_id, row.charger_name, Role(current) if current else role, current is not None)

    def _find(self, link: InviteLink) -> sharing_store.InviteRow:
        digest = link_digest(link)
        with self._access.connection() as conn:
            row = sharing_store.invite_by_digest(conn, digest)
        if row is None:
            raise InviteRefused(REPLACED)
        return row

    def _refuse_accept(self, who: Principal, charger_id: str, message: str, *, detail: str | None = None,
                       cap: bool = False) -> SharingError:
        self._refused(who, "accept_invite", charger_id, detail or message)
        return CapReached(message) if cap else InviteRefused(message)

    def _refused(self, who: Principal, action: str, charger_id: str, detail: str | None) -> None:
        self._access.log(who, action, charger_id, allowed=False, detail=detail)

    # ------------------------------------------------------------------------- reservations

    def schedule(self, who: Principal, charger_id: str, start: datetime, end: datetime) -> list[ScheduledReservation]:
        """The charger's live reservations overlapping ``[start, end)``, each with its user's colour."""
        ref = self._access.require(who, Permission.VIEW, charger_id)
        manage = decide(who.grants, Permission.MANAGE_MEMBERS, ref).allowed
        with self._access.connection() as conn:
            rows = sharing_store.live_reservations(conn, charger_id, start, end)
        return self._decorate(who, rows, manage)

    def _decorate(self, who: Principal, rows: list[sharing_store.ReservationRow],
                  manage: bool) -> list[ScheduledReservation]:
        colours = rules.assign_colours([r.user_id for r in rows] + [who.user_id])
        return [ScheduledReservation(r.reservation_id, r.user_id, r.user_name, r.starts_at, r.ends_at, r.note,
                                     colours[r.user_id], r.user_id == who.user_id,
                                     manage or r.user_id == who.user_id) for r in rows]

    def reserve(self, who: Principal, charger_id: str, start: datetime, end: datetime, *, note: str | None = None,
                override: bool = False) -> ReserveOutcome:
        """Book ``[start, end)``; on an overlap return the conflict and what to do instead.

        ``override`` (owners): cancel the overlapping reservations and book in one transaction.
        """
        ref = self._access.require(who, Permission.RESERVE, charger_id)
        if override:
            self._access.require(who, Permission.MANAGE_MEMBERS, charger_id)
        manage = decide(who.grants, Permission.MANAGE_MEMBERS, ref).allowed
        now = self._access.now()
        try:
            slot = Slot(rules.as_utc(start), rules.as_utc(end))
            rules.validate_request(slot, now)
        except rules.SharingRuleError as exc:
            raise SharingError(str(exc)) from exc
        note = (note or "").strip()[:200] or None
        reservation_id = self._new_id("res")
        answer: ReservationConflict | None = None
        overridden: tuple[str, ...] = ()
        with self._access.connection() as conn, conn.transaction():
            rows = self._window(conn, charger_id, now)
            conflicts = [r.reservation_id for r in rows if slot.overlaps(Slot(r.starts_at, r.ends_at))]
            if conflicts and not override:
                answer = self._conflict(who, conn, charger_id, slot, rows, manage, now)
            else:
                overridden = tuple(conflicts)
                sharing_store.cancel_reservations(conn, overridden, now)
                try:
                    sharing_store.insert_reservation(conn, reservation_id=reservation_id, charger_id=charger_id,
                                                     user_id=who.user_id, starts_at=slot.start, ends_at=slot.end,
                                                     note=note, now=now)
                except sharing_store.ReservationOverlapError:
                    # Someone booked between our read and our insert; their row is committed now.
                    answer = self._conflict(who, conn, charger_id, slot, self._window(conn, charger_id, now),
                                            manage, now)
            row = None if answer is not None else sharing_store.reservation(conn, reservation_id)
        if answer is not None:
            self._refused(who, "reserve", charger_id, f"conflict {slot.start.isoformat()}..{slot.end.isoformat()}")
            return answer
        if row is None:
            raise SharingError("The reservation was not stored; try again.")
        self._access.log(who, "reserve", charger_id, detail=f"{reservation_id} {slot.start.isoformat()}.."
                         f"{slot.end.isoformat()}" + (f"; overrode {', '.join(overridden)}" if overridden else ""))
        return Reserved(self._decorate(who, [row], manage)[0], overridden)

    @staticmethod
    def _window(conn: Connection, charger_id: str, now: datetime) -> list[sharing_store.ReservationRow]:
        return sharing_store.live_reservations(conn, charger_id, now - rules.MAX_RESERVATION,
                                               now + rules.BOOKING_HORIZON + rules.MAX_RESERVATION)

    def _conflict(self, who: Principal, conn: Connection, charger_id: str, slot: Slot,
                  rows: list[sharing_store.ReservationRow], manage: bool, now: datetime) -> ReservationConflict:
        bookings = [rules.Booking(r.reservation_id, r.user_id, r.user_name, Slot(r.starts_at, r.ends_at))
                    for r in rows]
        hits = rules.find_conflicts(slot, bookings)
        ids = {b.reservation_id for b in hits}
        decorated = tuple(s for s in self._decorate(who, rows, manage) if s.reservation_id in ids)
        if hits:
            message = rules.describe_conflicts(slot, hits, requester_id=who.user_id, tz_name=who.time_zone)
        else:
            message = "Someone booked an overlapping slot just now."
        options = rules.resolution_options(slot, bookings, requester_id=who.user_id,
                                           owner_names=sharing_store.owner_names(conn, charger_id),
                                           can_override=manage, now=now, tz_name=who.time_zone)
        return ReservationConflict(charger_id, slot, message, decorated, tuple(options))

    def cancel_reservation(self, who: Principal, charger_id: str, reservation_id: str) -> None:
        """Cancel one's own reservation; an owner may cancel anyone's."""
        ref = self._access.require(who, Permission.RESERVE, charger_id)
        now = self._access.now()
        with self._access.connection() as conn, conn.transaction():
            row = sharing_store.reservation(conn, reservation_id)
            if row is None or row.charger_id != charger_id or row.cancelled_at is not None:
                raise SharingError("That reservation no longer exists (it was cancelled already).")
            if row.user_id != who.user_id and not decide(who.grants, Permission.MANAGE_MEMBERS, ref).allowed:
                reason = "only the charger's owner may cancel someone else's reservation"
                self._refused(who, "cancel_reservation", charger_id, f"{reservation_id}: {reason}")
                raise AccessDenied(Decision(False, reason), Permission.MANAGE_MEMBERS, charger_id)
            if row.ends_at <= now:
                raise SharingError("That reservation is over; only current and future ones can be cancelled.")
            sharing_store.cancel_reservations(conn, [reservation_id], now)
        self._access.log(who, "cancel_reservation", charger_id, detail=f"{reservation_id} of {row.user_id}")

    # ------------------------------------------------------------------------- usage per user

    def usage(self, who: Principal, charger_id: str, start: datetime, end: datetime) -> UsageBreakdown:
        """kWh, sessions and cost per user of the sessions started in ``[start, end)``.

        Everyone's with ``VIEW_ALL_SESSIONS``; else (a member) only the user's own.
        """
        if self._access.check(who, Permission.VIEW_ALL_SESSIONS, charger_id).allowed:
            scope: Literal["everyone", "own"] = "everyone"
        else:
            self._access.require(who, Permission.VIEW_OWN_SESSIONS, charger_id)
            scope = "own"
        with self._access.connection() as conn:
            rows = sharing_store.usage_by_user(conn, charger_id, start, end,
                                               user_id=None if scope == "everyone" else who.user_id)
        return UsageBreakdown(scope, tuple(_usage_line(r) for r in rows))


REPLACED = ("This invitation link is no longer valid. If the owner resent the invitation, use the newest link; "
            "otherwise ask them to send a new one.")
DAMAGED = ("This invitation link is incomplete or damaged. Open the whole link from the e-mail, or scan the QR "
           "code again.")


def link_digest(link: InviteLink) -> bytes:
    """The token digest an invitation is stored under; :class:`InviteRefused` for a damaged token."""
    if isinstance(link, TokenDigest):
        return link.value
    if not rules.looks_like_token(link):
        raise InviteRefused(DAMAGED)
    return rules.token_digest(link)


def _usage_line(row: sharing_store.UsageRow) -> UsageLine:
    label = row.display_name if row.user_id is not None else rules.unassigned_tag_label(row.id_tag)
    cost: Decimal | None = None
    if row.costed_sessions and row.currency:
        cost = money(row.net_nano + row.vat_nano, row.currency)
    uncosted = row.sessions - row.costed_sessions - row.no_tariff_sessions
    notes = []
    if row.no_tariff_sessions:
        notes.append(f"{ADD_TARIFF_MESSAGE} ({row.no_tariff_sessions} session(s) without a tariff)")
    if uncosted:
        notes.append(f"{uncosted} session(s) not costed yet")
    return UsageLine(label or row.user_id or "?", row.user_id, row.id_tag, row.sessions, row.energy_wh, cost,
                     row.currency, "; ".join(notes) or None)



def from_settings(access: Access, settings: Settings, *, base_url: str | None = None) -> SharingService:
    """The service as the dashboards run it: links to this server, e-mail when SMTP is configured."""
    return SharingService(access, base_url=base_url or dashboard_base_url(settings),
                          mailer=mailer_from_settings(settings))
