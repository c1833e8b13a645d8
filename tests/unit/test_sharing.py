"""The sharing rules (control/sharing.py): tokens, expiry, the member cap, reservation conflicts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from control import sharing as rules
from control.sharing import Booking, InviteStatus, Resolution, Slot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _bytes(seed: int) -> rules.IssuedToken:
    return rules.issue_token(NOW, lambda n: bytes([seed]) * n)


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def booking(rid: str, user: str, start: datetime, end: datetime) -> Booking:
    return Booking(rid, user, user.title(), Slot(start, end))


# --------------------------------------------------------------------------- tokens


def test_a_token_is_random_url_safe_and_only_its_digest_is_kept() -> None:
    token = _bytes(7)
    assert rules.looks_like_token(token.token)
    assert token.digest == hashlib.sha256(token.token.encode()).digest()
    assert token.token.encode() not in token.digest
    assert _bytes(8).token != token.token
    assert token.issued_at == NOW and token.expires_at == NOW + timedelta(days=7)


def test_the_ttl_is_configurable_and_must_be_positive() -> None:
    assert rules.issue_token(NOW, bytes, ttl=timedelta(hours=1)).expires_at == NOW + timedelta(hours=1)
    with pytest.raises(ValueError, match="valid for some time"):
        rules.issue_token(NOW, bytes, ttl=timedelta(0))
    with pytest.raises(ValueError, match="bytes"):
        rules.issue_token(NOW, lambda n: b"short")


def test_truncated_or_foreign_tokens_are_recognised() -> None:
    token = _bytes(1).token
    assert not rules.looks_like_token(token[:-1])
    assert not rules.looks_like_token(token + "x")
    assert not rules.looks_like_token("../../etc/passwd" + "a" * 27)
    assert not rules.looks_like_token(None)


def test_the_link_points_at_the_invite_page() -> None:
    assert rules.invite_link("http://host:8501/", "abc-_") == "http://host:8501/invite?token=abc-_"


def test_status_accepted_beats_revoked_beats_expired() -> None:
    late = NOW + timedelta(days=8)
    assert rules.invite_status(expires_at=NOW, accepted_at=None, revoked_at=None, now=NOW) is InviteStatus.EXPIRED
    assert rules.invite_status(expires_at=late, accepted_at=None, revoked_at=None, now=NOW) is InviteStatus.PENDING
    assert rules.invite_status(expires_at=NOW, accepted_at=None, revoked_at=NOW, now=late) is InviteStatus.REVOKED
    assert rules.invite_status(expires_at=NOW, accepted_at=NOW, revoked_at=NOW, now=late) is InviteStatus.ACCEPTED


def test_an_expired_invitation_names_the_date_and_who_to_ask() -> None:
    text = rules.refusal_for(InviteStatus.EXPIRED, expires_at=at(23, 30, day=19), owner_name="Olivia Owner",
                             tz_name="Europe/Amsterdam")
    assert text == "This invitation expired on 20 Nov 2026; ask Olivia Owner to resend it."  # local date
    assert rules.refusal_for(InviteStatus.PENDING, expires_at=NOW, owner_name="O") is None


def test_expiry_text_counts_down() -> None:
    assert rules.expiry_text(NOW + timedelta(days=7), NOW) == "expires in 7 days (3 Dec 2026 12:00)"
    assert rules.expiry_text(NOW + timedelta(hours=5), NOW).startswith("expires in 5 hours")
    assert rules.expiry_text(NOW + timedelta(seconds=30), NOW).startswith("expires in 1 minutes")
    assert rules.expiry_text(NOW, NOW) == "expired on 26 Nov 2026"


def test_e_mails_match_case_insensitively_and_a_mismatch_masks_the_invited_address() -> None:
    assert rules.same_email(" Max@Example.COM", "max@example.com")
    assert not rules.same_email("max@example.com", "maxi@example.com")
    text = rules.email_mismatch_message(invited_email="max@example.com", signed_in_email="eve@evil.test",
                                        owner_name="Olivia")
    assert "m***@example.com" in text and "max@" not in text and "eve@evil.test" in text


@pytest.mark.parametrize("raw", ["", "max", "max@", "@example.com", "max@example", "a b@example.com"])
def test_bad_addresses_are_refused(raw: str) -> None:
    with pytest.raises(rules.SharingRuleError):
        rules.normalise_email(raw)


def test_a_good_address_is_kept_as_typed_without_spaces() -> None:
    assert rules.normalise_email("  Max.Member@Example.com ") == "Max.Member@Example.com"


# --------------------------------------------------------------------------- member cap


def test_the_cap_at_invite_time_counts_pending_invitations() -> None:
    assert rules.check_cap_for_invite(members=10, pending=10, cap=None).allowed
    assert rules.check_cap_for_invite(members=2, pending=1, cap=4).allowed
    full = rules.check_cap_for_invite(members=4, pending=0, cap=4)
    assert not full.allowed
    assert full.message == "You have 4 of 4 members. Remove a member or raise the cap."
    pending = rules.check_cap_for_invite(members=3, pending=1, cap=4)
    assert not pending.allowed and "1 pending invitation" in (pending.message or "")


def test_the_cap_at_accept_time_counts_members_only_and_says_whom_to_ask() -> None:
    assert rules.check_cap_for_accept(members=3, cap=4, charger_name="Bay 1", owner_name="Olivia").allowed
    refused = rules.check_cap_for_accept(members=4, cap=4, charger_name="Bay 1", owner_name="Olivia")
    assert not refused.allowed
    assert "Bay 1 already has 4 of 4 members" in (refused.message or "")
    assert "Ask Olivia" in (refused.message or "")


@pytest.mark.parametrize("cap", [-1, 101, True, 2.5])
def test_a_cap_is_a_small_whole_number(cap: object) -> None:
    with pytest.raises(rules.SharingRuleError):
        rules.validate_cap(cap)  # type: ignore[arg-type]


def test_cap_summary() -> None:
    assert rules.cap_summary(1, None) == "1 member (no cap)"
    assert rules.cap_summary(3, 4) == "3 of 4 members"


# --------------------------------------------------------------------------- reservations


def test_slots_are_half_open() -> None:
    assert not Slot(at(10), at(12)).overlaps(Slot(at(12), at(13)))
    assert Slot(at(10), at(12)).overlaps(Slot(at(11, 59), at(13)))
    with pytest.raises(rules.SharingRuleError, match="end after"):
        Slot(at(12), at(12))
    with pytest.raises(ValueError, match="timezone-aware"):
        Slot(datetime(2026, 11, 26, 10), datetime(2026, 11, 26, 11))  # noqa: DTZ001


@pytest.mark.parametrize(("start", "end", "why"), [
    (at(13), at(13, 10), "at least 15 minutes"),
    (at(13), at(13, day=27) + timedelta(minutes=1), "at most 24 hours"),
    (at(10), at(13), "already started"),
    (NOW + timedelta(days=61), NOW + timedelta(days=61, hours=1), "60 days ahead"),
])
def test_requests_nobody_should_book_are_refused(start: datetime, end: datetime, why: str) -> None:
    with pytest.raises(rules.SharingRuleError, match=why):
        rules.validate_request(Slot(start, end), NOW)


def test_starting_just_now_is_allowed() -> None:
    rules.validate_request(Slot(NOW - timedelta(minutes=2), NOW + timedelta(hours=1)), NOW)


EXISTING = [
    booking("r1", "max", at(14), at(16)),
    booking("r2", "olivia", at(16), at(17)),
    booking("r3", "max", at(19), at(20)),
]


def test_conflicts_are_the_overlapping_bookings_earliest_first() -> None:
    hits = rules.find_conflicts(Slot(at(15), at(16, 30)), EXISTING)
    assert [b.reservation_id for b in hits] == ["r1", "r2"]
    assert rules.find_conflicts(Slot(at(17), at(19)), EXISTING) == []


def test_the_next_free_slot_skips_back_to_back_bookings() -> None:
    assert rules.next_free_slot(timedelta(hours=2), at(15), EXISTING) == Slot(at(17), at(19))
    assert rules.next_free_slot(timedelta(hours=3), at(15), EXISTING) == Slot(at(20), at(23))
    assert rules.next_free_slot(timedelta(hours=1), at(12), EXISTING) == Slot(at(12), at(13))


def test_options_for_a_member_move_shorten_start_later_and_ask_the_owner() -> None:
    requested = Slot(at(13), at(15))  # overlaps Max's 14:00-16:00
    options = rules.resolution_options(requested, EXISTING, requester_id="eve", owner_names=["Olivia Owner"],
                                       can_override=False, now=NOW)
    labels = {o.kind: o.label for o in options}
    assert labels[Resolution.MOVE] == "Move to the next free slot 17:00–19:00"
    assert labels[Resolution.SHORTEN] == "Shorten to end at 14:00"
    assert labels[Resolution.ASK_OWNER] == "Ask Olivia Owner to override"
    assert Resolution.OVERRIDE not in labels
    assert Resolution.START_LATER not in labels  # the conflict runs past the requested end
    by_kind = {o.kind: o for o in options}
    assert by_kind[Resolution.SHORTEN].slot == Slot(at(13), at(14))
    for option in options:  # every offered slot is free
        if option.slot is not None:
            assert rules.find_conflicts(option.slot, EXISTING) == []


def test_options_for_the_owner_include_the_override() -> None:
    requested = Slot(at(18), at(20, 30))  # overlaps Max's 19:00-20:00
    options = rules.resolution_options(requested, EXISTING, requester_id="olivia", owner_names=["Olivia"],
                                       can_override=True, now=NOW)
    kinds = [o.kind for o in options]
    assert kinds == [Resolution.MOVE, Resolution.SHORTEN, Resolution.START_LATER, Resolution.OVERRIDE]
    assert options[-1].label == "Override: cancel Max's reservation and book 18:00–20:30"
    assert options[-1].slot == requested


def test_start_later_keeps_the_end() -> None:
    options = rules.resolution_options(Slot(at(15), at(18, 30)), EXISTING, requester_id="eve", owner_names=[],
                                       can_override=False, now=NOW)
    later = next(o for o in options if o.kind is Resolution.START_LATER)
    assert later.slot == Slot(at(17), at(18, 30))
    assert later.label == "Start later: 17:00–18:30"
    assert all(o.kind is not Resolution.ASK_OWNER for o in options)  # no owner to ask


def test_no_conflict_no_options_and_a_clash_with_oneself_asks_nobody() -> None:
    assert rules.resolution_options(Slot(at(17), at(18)), EXISTING, requester_id="eve", owner_names=["O"],
                                    can_override=False, now=NOW) == []
    own = rules.resolution_options(Slot(at(19), at(19, 30)), EXISTING, requester_id="max", owner_names=["O"],
                                   can_override=False, now=NOW)
    assert own and all(o.kind is not Resolution.ASK_OWNER for o in own)


def test_conflicts_are_described_in_plain_words_and_other_days_are_named() -> None:
    requested = Slot(at(15), at(16, 30))
    hits = rules.find_conflicts(requested, EXISTING)
    assert rules.describe_conflicts(requested, hits, requester_id="olivia") == (
        "That time overlaps Max's reservation 14:00–16:00 and your own reservation 16:00–17:00.")
    assert rules.fmt_span(Slot(at(9, day=27), at(10, day=27)), on_day_of=NOW) == "Fri 27 Nov 09:00–10:00"
    assert rules.fmt_span(Slot(at(23), at(1, day=27))) == "Thu 26 Nov 23:00–Fri 27 Nov 01:00"
    assert rules.fmt_span(Slot(at(22), at(0, day=27))) == "22:00–00:00"


def test_times_are_shown_in_the_readers_zone() -> None:
    assert rules.fmt_span(Slot(at(14), at(16)), "Europe/Amsterdam") == "15:00–17:00"
    assert rules.fmt_span(Slot(at(14), at(16)), "No/Such_Zone") == "14:00–16:00"


# --------------------------------------------------------------------------- colours, labels


def test_colours_are_stable_distinct_and_independent_of_order() -> None:
    users = [f"u-{i}" for i in range(6)]
    colours = rules.assign_colours(users)
    assert len(set(colours.values())) == 6
    assert rules.assign_colours(reversed(users)) == colours
    many = rules.assign_colours([f"x{i}" for i in range(15)])
    assert set(many.values()) == set(rules.PALETTE)  # the palette is used up before repeating


def test_a_users_colour_does_not_depend_on_who_else_is_on_the_schedule_unless_taken() -> None:
    alone = rules.assign_colours(["u-3"])["u-3"]
    preferred_taker = next(u for u in (f"z{i}" for i in range(1000))
                           if rules.assign_colours([u])[u] != alone)
    assert rules.assign_colours(["u-3", preferred_taker])["u-3"] == alone


def test_unassigned_tags_are_named() -> None:
    assert rules.unassigned_tag_label("RFID-77") == "Unassigned tag RFID-77"
    assert rules.unassigned_tag_label(None) == "Started without an id tag"
