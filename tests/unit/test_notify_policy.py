"""control.notify_policy: who gets what, quiet hours, retries, webhook signatures (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from control.access import Role
from control.contract import Severity
from control.notify_policy import (
    AlertEvent,
    AlertEventKind,
    Channel,
    ChannelKind,
    ChargerOverride,
    GiveUp,
    NotifyPolicyError,
    Preferences,
    QuietHours,
    Recipient,
    Retry,
    RetryPolicy,
    after_failure,
    http_status_is_permanent,
    plan_fanout,
    plan_test,
    redact_target,
    sign_webhook,
    validate_target,
    verify_webhook,
)

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOOK = Channel(1, ChannelKind.WEBHOOK, "https://example.test/hook")
MAIL = Channel(2, ChannelKind.EMAIL, "owner@example.test")
PUSH = Channel(3, ChannelKind.PUSH, "ntfy://topic", min_severity=Severity.CRITICAL)


def event(severity: Severity = Severity.ERROR, kind: AlertEventKind = AlertEventKind.OPENED,
          charger_id: str | None = "CP1") -> AlertEvent:
    return AlertEvent(7, kind, "a-1", "charger_offline", severity, "open", "CP1 is offline", charger_id, "S1",
                      NOON - timedelta(minutes=5))


def prefs(user_id: str = "u1", **kwargs: object) -> Preferences:
    base: dict[str, object] = {"channels": (HOOK, MAIL, PUSH)}
    base.update(kwargs)
    return Preferences(user_id, **base)  # type: ignore[arg-type]


def recipient(p: Preferences, *roles: Role) -> Recipient:
    return Recipient(p, frozenset(roles or (Role.OWNER,)))


def channels_of(planned: list, user_id: str = "u1") -> dict[int, str | None]:  # type: ignore[type-arg]
    [n] = [p for p in planned if p.user_id == user_id]
    return {d.channel_id: d.skipped_reason for d in n.deliveries}


def test_threshold_and_channel_minimum() -> None:
    planned = plan_fanout(event(Severity.ERROR), [recipient(prefs())], NOON)
    assert channels_of(planned) == {1: None, 2: None}  # push only takes critical
    assert channels_of(plan_fanout(event(Severity.CRITICAL), [recipient(prefs())], NOON)) == {1: None, 2: None,
                                                                                               3: None}
    assert plan_fanout(event(Severity.WARNING), [recipient(prefs(min_severity=Severity.ERROR))], NOON) == []
    assert plan_fanout(event(Severity.INFO), [recipient(prefs(min_severity=Severity.INFO))], NOON) != []


@pytest.mark.parametrize(("roles", "lowest"), [
    ({Role.OWNER}, Severity.INFO),  # "charging completed" reaches the owner
    ({Role.MEMBER}, Severity.INFO),
    ({Role.FLEET_MANAGER}, Severity.WARNING),
    ({Role.SUPPORT}, Severity.ERROR),
    ({Role.SUPPORT, Role.OWNER}, Severity.INFO),  # the most permissive role for this charger wins
])
def test_role_defaults_without_a_threshold_of_ones_own(roles: set[Role], lowest: Severity) -> None:
    order = [Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL]
    got = [s for s in order if plan_fanout(event(s), [Recipient(prefs(), frozenset(roles))], NOON)]
    assert got == order[order.index(lowest):]
    # A threshold of one's own replaces the role default, both ways.
    mine = [s for s in order if plan_fanout(event(s), [Recipient(prefs(min_severity=Severity.WARNING),
                                                                  frozenset(roles))], NOON)]
    assert mine == order[1:]


def test_centre_only_without_channels_and_disabled_channels_are_not_used() -> None:
    p = prefs(channels=(Channel(1, ChannelKind.WEBHOOK, "https://x.test/h", enabled=False),))
    [n] = plan_fanout(event(), [recipient(p)], NOON)
    assert n.deliveries == ()
    assert "charger offline" in n.title and "CP1" in n.title and n.body.startswith("CP1 is offline")


def test_one_notification_per_user_with_merged_roles_and_sorted_users() -> None:
    a, b = prefs("b-user"), prefs("a-user")
    planned = plan_fanout(event(), [recipient(a, Role.OWNER), recipient(b, Role.SUPPORT),
                                    recipient(a, Role.FLEET_MANAGER)], NOON)
    assert [p.user_id for p in planned] == ["a-user", "b-user"]
    assert planned[1].roles == {Role.OWNER, Role.FLEET_MANAGER}


def test_roles_that_do_not_receive_alerts() -> None:
    assert plan_fanout(event(), [recipient(prefs(), Role.INSTALLER)], NOON) == []


@pytest.mark.parametrize("kind", [AlertEventKind.OPENED, AlertEventKind.REOPENED, AlertEventKind.ESCALATED,
                                  AlertEventKind.RESOLVED])
def test_notifying_events(kind: AlertEventKind) -> None:
    assert plan_fanout(event(kind=kind), [recipient(prefs())], NOON)


def test_acknowledgement_notifies_nobody() -> None:
    assert plan_fanout(event(kind=AlertEventKind.ACKNOWLEDGED), [recipient(prefs())], NOON) == []


def test_charger_override_mute_threshold_and_channel_subset() -> None:
    muted = prefs(overrides={"CP1": ChargerOverride("CP1", muted=True)})
    assert plan_fanout(event(Severity.CRITICAL), [recipient(muted)], NOON) == []
    assert plan_fanout(event(Severity.CRITICAL, charger_id="CP2"), [recipient(muted)], NOON) != []
    stricter = prefs(overrides={"CP1": ChargerOverride("CP1", min_severity=Severity.CRITICAL)})
    assert plan_fanout(event(Severity.ERROR), [recipient(stricter)], NOON) == []
    looser = prefs(min_severity=Severity.CRITICAL,
                   overrides={"CP1": ChargerOverride("CP1", min_severity=Severity.INFO)})
    assert plan_fanout(event(Severity.INFO), [recipient(looser)], NOON) != []
    only_mail = prefs(overrides={"CP1": ChargerOverride("CP1", channel_ids=frozenset({2}))})
    assert channels_of(plan_fanout(event(), [recipient(only_mail)], NOON)) == {2: None}


def test_quiet_hours_skip_channels_but_keep_the_centre_and_critical_bypasses() -> None:
    # 22:00-07:00 in Berlin; 23:30 local on 1 June 2026 (CEST, UTC+2) is 21:30 UTC.
    night = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)
    p = prefs(timezone="Europe/Berlin", quiet_hours=QuietHours(time(22), time(7)))
    assert channels_of(plan_fanout(event(Severity.ERROR), [recipient(p)], night)) == {1: "quiet hours",
                                                                                       2: "quiet hours"}
    assert channels_of(plan_fanout(event(Severity.CRITICAL), [recipient(p)], night)) == {1: None, 2: None, 3: None}
    assert channels_of(plan_fanout(event(Severity.ERROR), [recipient(p)], NOON)) == {1: None, 2: None}
    strict = prefs(timezone="Europe/Berlin", quiet_hours=QuietHours(time(22), time(7)), quiet_bypass=None)
    assert set(channels_of(plan_fanout(event(Severity.CRITICAL), [recipient(strict)], night)).values()) == {
        "quiet hours"}


@pytest.mark.parametrize(("start", "end", "local", "inside"), [
    (time(22), time(7), time(23, 59), True),
    (time(22), time(7), time(0, 0), True),
    (time(22), time(7), time(6, 59), True),
    (time(22), time(7), time(7, 0), False),
    (time(22), time(7), time(21, 59), False),
    (time(13), time(14), time(13, 30), True),
    (time(13), time(14), time(14, 0), False),
])
def test_quiet_hours_window(start: time, end: time, local: time, inside: bool) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    at = datetime(2026, 1, 15, local.hour, local.minute, tzinfo=zone).astimezone(UTC)
    assert QuietHours(start, end).contains(at, zone) is inside


def test_bad_preferences_are_refused() -> None:
    with pytest.raises(NotifyPolicyError):
        QuietHours(time(7), time(7))
    with pytest.raises(NotifyPolicyError, match="time zone"):
        Preferences("u", timezone="Mars/Olympus")
    with pytest.raises(NotifyPolicyError):
        validate_target(ChannelKind.WEBHOOK, "ftp://x.test/")
    with pytest.raises(NotifyPolicyError):
        validate_target(ChannelKind.EMAIL, "not an address")
    with pytest.raises(NotifyPolicyError):
        validate_target(ChannelKind.PUSH, "just-a-topic")
    assert validate_target(ChannelKind.EMAIL, " a@b.test ") == "a@b.test"


def test_test_notification_ignores_thresholds_and_quiet_hours() -> None:
    p = prefs(min_severity=Severity.CRITICAL, quiet_hours=QuietHours(time(0), time(23, 59)), quiet_bypass=None)
    planned = plan_test(p)
    assert [d.channel_id for d in planned.deliveries] == [1, 2, 3]
    assert all(d.skipped_reason is None for d in planned.deliveries)


# --------------------------------------------------------------------------- retries


def test_backoff_schedule_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=10, factor=2, cap_s=60, jitter_ratio=0.0)
    assert policy.schedule_s() == [10, 20, 40, 60, 60]
    assert [policy.delay_s(n, 0.5) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_default_schedule_is_the_documented_one() -> None:
    # docs/notifications.md shows this table.
    assert RetryPolicy().schedule_s() == [15, 30, 60, 120, 240, 480, 960, 1920, 3600]


def test_jitter_stays_within_its_ratio() -> None:
    policy = RetryPolicy(base_s=100, jitter_ratio=0.2)
    assert policy.delay_s(1, 0.0) == pytest.approx(80)
    assert policy.delay_s(1, 0.5) == pytest.approx(100)
    assert policy.delay_s(1, 0.999999) == pytest.approx(120, rel=1e-5)
    with pytest.raises(NotifyPolicyError):
        policy.delay_s(1, 1.0)


def test_after_failure_retries_then_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=10, jitter_ratio=0.0)
    first = after_failure(policy, attempts_done=1, created_at=NOON, now=NOON, permanent=False, jitter=0.3)
    assert first == Retry(NOON + timedelta(seconds=10))
    second = after_failure(policy, attempts_done=2, created_at=NOON, now=NOON + timedelta(seconds=10),
                           permanent=False, jitter=0.3)
    assert second == Retry(NOON + timedelta(seconds=30))
    third = after_failure(policy, attempts_done=3, created_at=NOON, now=NOON, permanent=False, jitter=0.3)
    assert isinstance(third, GiveUp) and "3 attempts" in third.reason
    assert isinstance(after_failure(policy, attempts_done=1, created_at=NOON, now=NOON, permanent=True, jitter=0),
                      GiveUp)


def test_after_failure_gives_up_past_the_maximum_age() -> None:
    policy = RetryPolicy(max_attempts=100, base_s=60, jitter_ratio=0.0, max_age_s=3600)
    late = after_failure(policy, attempts_done=2, created_at=NOON, now=NOON + timedelta(minutes=59),
                         permanent=False, jitter=0)
    assert isinstance(late, GiveUp) and "older" in late.reason


def test_inconsistent_retry_policy_is_refused() -> None:
    with pytest.raises(NotifyPolicyError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(NotifyPolicyError):
        RetryPolicy(base_s=100, cap_s=10)


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (401, True), (404, True), (410, True),
                                                   (408, False), (429, False), (500, False), (503, False)])
def test_http_status_classification(status: int, permanent: bool) -> None:
    assert http_status_is_permanent(status) is permanent


# --------------------------------------------------------------------------- signatures and display


def test_webhook_signature_round_trip_and_tampering() -> None:
    body = b'{"event":"opened"}'
    sig = sign_webhook("s3cret", 1_780_000_000, body)
    headers = {"X-FlowBank-Timestamp": "1780000000", "X-FlowBank-Signature": sig}
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_webhook("s3cret", headers, body, now_unix=1_780_000_010)
    assert not verify_webhook("other", headers, body, now_unix=1_780_000_010)
    assert not verify_webhook("s3cret", headers, body + b" ", now_unix=1_780_000_010)
    assert not verify_webhook("s3cret", headers, body, now_unix=1_780_000_000 + 301)  # a replay
    assert not verify_webhook("s3cret", {"X-FlowBank-Signature": sig}, body, now_unix=1_780_000_000)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_webhook("s3cret", lower, body, now_unix=1_780_000_000)


def test_known_signature_vector() -> None:
    # printf '1700000000.{}' | openssl dgst -sha256 -hmac key
    assert sign_webhook("key", 1_700_000_000, b"{}") == (
        "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae")


def test_redacted_targets_hide_tokens() -> None:
    assert redact_target(ChannelKind.PUSH, "tgram://123456:ABCDEF/987") == "tgram://****"
    assert redact_target(ChannelKind.WEBHOOK, "https://hooks.example.test/T0/B0/secret") == (
        "https://hooks.example.test/...")
    assert redact_target(ChannelKind.EMAIL, "a@b.test") == "a@b.test"

