"""Who hears of an alert, on which channel, and how a failed delivery is retried. Pure.

Standard library only, no IO, no clock reads (``now`` and the jitter are parameters).

- **Events** (:class:`AlertEventKind`): the warehouse records one event per alert insert, state
  change or severity rise. ``opened``, ``reopened``, ``escalated`` and ``resolved`` notify;
  ``acknowledged`` does not (it is support's own action; owners learn of the resolution). A count
  increment (the same condition flapping) is no event at all: suppression happens upstream.
- **Recipients**: the owners and members of the alert's charger, the fleet managers of its site's
  organisation and every support user; the warehouse finds them, :func:`plan_fanout` decides.
  A user reached by several roles gets one notification.
- **Preferences** (:class:`Preferences`), per user: a severity threshold, quiet hours in the
  user's time zone, and per-charger overrides (mute, a threshold of its own, a subset of
  channels). Each channel may raise the threshold for itself (push only for critical, say).
  Without a threshold of their own, users get the default of the role that reached them
  (:data:`ROLE_DEFAULT_THRESHOLD`): owners and members hear everything about their chargers,
  "charging completed" (info) included; fleet managers from warning; support from error, so a
  platform's every completed session does not land in support's inbox.
- **What goes where** (:func:`plan_fanout`): an event under the threshold, or on a muted charger,
  makes nothing. Otherwise the user's notification centre always gets it and each enabled
  channel at or under its threshold gets a delivery. During quiet hours a delivery is *skipped*
  (recorded, not sent; the centre still has it) unless the severity is at least the user's
  ``quiet_bypass`` (``critical`` by default: a critical alert wakes people; ``None`` lets nothing
  through). Skipped deliveries are not sent later: a "charging completed" at 07:00 for a
  session finished at 02:00 helps nobody.
- **Retries** (:class:`RetryPolicy`, :func:`after_failure`): exponential backoff with injected
  jitter, capped; a permanent failure (HTTP 4xx except 408/425/429, a refused recipient) or an
  exhausted budget (attempts or age) gives up, and the delivery is shown as failed.
- **Webhook signatures** (:func:`sign_webhook`, :func:`verify_webhook`): HMAC-SHA256 over
  ``"{timestamp}.{body}"`` with the user's secret, as in ``docs/notifications.md``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from control.access import Role
from control.contract import Severity


class NotifyPolicyError(ValueError):
    """A preference or channel the policy refuses; the message names the bad value."""


SEVERITY_RANK: Final[Mapping[Severity, int]] = {s: i for i, s in enumerate(
    (Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL))}


def at_least(severity: Severity, threshold: Severity) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


class AlertEventKind(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    TEST = "test"  # a user's "send test notification"


NOTIFYING_EVENTS: Final = frozenset({AlertEventKind.OPENED, AlertEventKind.REOPENED, AlertEventKind.ESCALATED,
                                     AlertEventKind.RESOLVED})


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    PUSH = "push"  # an Apprise URL (ntfy, Pushover, Telegram, ...)


ROLE_DEFAULT_THRESHOLD: Final[Mapping[Role, Severity]] = {
    Role.OWNER: Severity.INFO, Role.MEMBER: Severity.INFO, Role.FLEET_MANAGER: Severity.WARNING,
    Role.SUPPORT: Severity.ERROR,
}
RECIPIENT_ROLES: Final = frozenset(ROLE_DEFAULT_THRESHOLD)


def parse_severity(name: str, raw: str | None) -> Severity | None:
    if raw is None:
        return None
    try:
        return Severity(raw)
    except ValueError:
        raise NotifyPolicyError(f"{name}: expected one of {', '.join(Severity)}, got {raw!r}") from None


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise NotifyPolicyError(f"timezone: unknown time zone {name!r}") from None


# --------------------------------------------------------------------------- preferences


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: int
    kind: ChannelKind
    target: str  # webhook URL, e-mail address or Apprise URL
    enabled: bool = True
    min_severity: Severity | None = None  # stricter than the user's threshold for this channel only


@dataclass(frozen=True, slots=True)
class ChargerOverride:
    charger_id: str
    muted: bool = False
    min_severity: Severity | None = None  # replaces the user's threshold on this charger
    channel_ids: frozenset[int] | None = None  # only these channels for this charger (None = all)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily local-time window; ``start > end`` crosses midnight (22:00-07:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise NotifyPolicyError("quiet hours: local wall-clock times without a zone")
        if self.start == self.end:
            raise NotifyPolicyError("quiet hours: start and end must differ")

    def contains(self, now: datetime, zone: ZoneInfo) -> bool:
        local = now.astimezone(zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: str
    timezone: str = "UTC"
    min_severity: Severity | None = None  # None: the default of the role (ROLE_DEFAULT_THRESHOLD)
    quiet_hours: QuietHours | None = None
    quiet_bypass: Severity | None = Severity.CRITICAL
    channels: tuple[Channel, ...] = ()
    overrides: Mapping[str, ChargerOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        zone_of(self.timezone)


def validate_target(kind: ChannelKind, target: str) -> str:
    """The channel's target, stripped; :class:`NotifyPolicyError` when it cannot work."""
    value = target.strip()
    if kind is ChannelKind.WEBHOOK:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise NotifyPolicyError(f"webhook: expected an http(s) URL, got {target!r}")
    elif kind is ChannelKind.EMAIL:
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in value):
            raise NotifyPolicyError(f"email: not an e-mail address: {target!r}")
    elif "://" not in value:
        raise NotifyPolicyError(f"push: expected an Apprise URL such as ntfy://topic, got {target!r}")
    return value


# --------------------------------------------------------------------------- fan-out


@dataclass(frozen=True, slots=True)
class AlertEvent:
    event_id: int
    event: AlertEventKind
    alert_id: str
    alert_kind: str
    severity: Severity
    state: str
    message: str
    charger_id: str | None
    site_id: str | None
    alert_ts: datetime
    count: int = 1


@dataclass(frozen=True, slots=True)
class Recipient:
    """A user the warehouse found for an event, with the roles that reached them."""

    preferences: Preferences
    roles: frozenset[Role]


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    channel_id: int
    kind: ChannelKind
    skipped_reason: str | None = None  # recorded but not sent (quiet hours)


@dataclass(frozen=True, slots=True)
class PlannedNotification:
    user_id: str
    roles: frozenset[Role]
    title: str
    body: str
    deliveries: tuple[PlannedDelivery, ...]


def render(event: AlertEvent) -> tuple[str, str]:
    """(title, body) as every channel shows them."""
    where = f"charger {event.charger_id}" if event.charger_id else (f"site {event.site_id}" if event.site_id else "")
    verb = {AlertEventKind.RESOLVED: "resolved", AlertEventKind.REOPENED: "again",
            AlertEventKind.ESCALATED: "escalated", AlertEventKind.ACKNOWLEDGED: "acknowledged"}.get(event.event)
    kind = event.alert_kind.replace("_", " ")
    title = f"[{event.severity.upper()}] {kind}" + (f" ({verb})" if verb else "") + (f" - {where}" if where else "")
    lines = [event.message, "", f"Alert {event.alert_id}: {event.state}, seen {event.count} time(s),"
             f" first at {event.alert_ts.astimezone(UTC).isoformat()}"]
    return title, "\n".join(lines)


def _threshold(prefs: Preferences, override: ChargerOverride | None, roles: frozenset[Role]) -> Severity:
    if override is not None and override.min_severity is not None:
        return override.min_severity
    if prefs.min_severity is not None:
        return prefs.min_severity
    # The most permissive of the roles that reached the user for this alert.
    return min((ROLE_DEFAULT_THRESHOLD[r] for r in roles & RECIPIENT_ROLES), key=SEVERITY_RANK.__getitem__)


def plan_for(event: AlertEvent, recipient: Recipient, now: datetime) -> PlannedNotification | None:
    """What one recipient gets for one event, or ``None`` (filtered out)."""
    prefs = recipient.preferences
    if event.event not in NOTIFYING_EVENTS or not recipient.roles & RECIPIENT_ROLES:
        return None
    override = prefs.overrides.get(event.charger_id) if event.charger_id else None
    if override is not None and override.muted:
        return None
    if not at_least(event.severity, _threshold(prefs, override, recipient.roles)):
        return None
    quiet = prefs.quiet_hours is not None and prefs.quiet_hours.contains(now, zone_of(prefs.timezone))
    bypass = prefs.quiet_bypass is not None and at_least(event.severity, prefs.quiet_bypass)
    deliveries = []
    for channel in prefs.channels:
        if not channel.enabled:
            continue
        if override is not None and override.channel_ids is not None and channel.channel_id not in override.channel_ids:
            continue
        if channel.min_severity is not None and not at_least(event.severity, channel.min_severity):
            continue
        skipped = "quiet hours" if quiet and not bypass else None
        deliveries.append(PlannedDelivery(channel.channel_id, channel.kind, skipped))
    title, body = render(event)
    return PlannedNotification(prefs.user_id, recipient.roles, title, body, tuple(deliveries))


def plan_fanout(event: AlertEvent, recipients: Iterable[Recipient], now: datetime) -> list[PlannedNotification]:
    """Every notification one event makes, one per user (roles merged), in user order."""
    merged: dict[str, Recipient] = {}
    for r in recipients:
        seen = merged.get(r.preferences.user_id)
        merged[r.preferences.user_id] = r if seen is None else Recipient(seen.preferences, seen.roles | r.roles)
    planned = (plan_for(event, merged[user_id], now) for user_id in sorted(merged))
    return [p for p in planned if p is not None]


def plan_test(prefs: Preferences) -> PlannedNotification:
    """A test notification: every enabled channel, regardless of thresholds and quiet hours."""
    deliveries = tuple(PlannedDelivery(c.channel_id, c.kind) for c in prefs.channels if c.enabled)
    return PlannedNotification(prefs.user_id, frozenset(), "[TEST] FlowBankOS test notification",
                               "This is a test notification: this channel works.", deliveries)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base_s * factor**(n-1)``, capped at ``cap_s``, times ``1 ± jitter_ratio``.

    The defaults try 10 times over about two hours (15 s, 30 s, 1 min, 2 min, 4 min, 8 min, 16 min,
    32 min, 1 h) and give up on a delivery older than 24 h whatever its count.
    """

    max_attempts: int = 10
    base_s: float = 15.0
    factor: float = 2.0
    cap_s: float = 3600.0
    jitter_ratio: float = 0.2
    max_age_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.factor < 1 or self.cap_s < self.base_s:
            raise NotifyPolicyError(f"retry policy: inconsistent values {self!r}")
        if not 0 <= self.jitter_ratio < 1 or self.max_age_s <= 0:
            raise NotifyPolicyError(f"retry policy: inconsistent values {self!r}")

    def delay_s(self, attempts_done: int, jitter: float) -> float:
        """The wait after the ``attempts_done``-th failed attempt; ``jitter`` is uniform in [0, 1)."""
        if not 0 <= jitter < 1:
            raise NotifyPolicyError(f"jitter must be in [0, 1), got {jitter}")
        raw = min(self.cap_s, self.base_s * self.factor ** max(0, attempts_done - 1))
        return raw * (1 + self.jitter_ratio * (2 * jitter - 1))

    def schedule_s(self) -> list[float]:
        """The waits without jitter, for documentation and tests."""
        return [min(self.cap_s, self.base_s * self.factor ** (n - 1)) for n in range(1, self.max_attempts)]


@dataclass(frozen=True, slots=True)
class Retry:
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def after_failure(policy: RetryPolicy, *, attempts_done: int, created_at: datetime, now: datetime,
                  permanent: bool, jitter: float) -> Retry | GiveUp:
    """What follows a failed attempt (``attempts_done`` counts it)."""
    if permanent:
        return GiveUp("permanent error")
    if attempts_done >= policy.max_attempts:
        return GiveUp(f"gave up after {attempts_done} attempts")
    next_at = now + timedelta(seconds=policy.delay_s(attempts_done, jitter))
    if (next_at - created_at).total_seconds() > policy.max_age_s:
        return GiveUp(f"gave up: older than {policy.max_age_s:.0f} s")
    return Retry(next_at)


def http_status_is_permanent(status: int) -> bool:
    """A receiver's 4xx says "do not send this again", except timeouts and rate limits."""
    return 400 <= status < 500 and status not in (408, 425, 429)


# --------------------------------------------------------------------------- webhook signatures

SIGNATURE_HEADER: Final = "X-FlowBank-Signature"
TIMESTAMP_HEADER: Final = "X-FlowBank-Timestamp"
DELIVERY_HEADER: Final = "X-FlowBank-Delivery"
EVENT_HEADER: Final = "X-FlowBank-Event"


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``b"{timestamp}." + body``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, now_unix: float,
                   tolerance_s: float = 300.0) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent (replays refused)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER.lower()])
        signature = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs(now_unix - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature, sign_webhook(secret, timestamp, body))


def redact_target(kind: ChannelKind, target: str) -> str:
    """A channel's target fit for a status page: no token of a push URL, no webhook query."""
    if kind is ChannelKind.EMAIL:
        return target
    scheme, sep, rest = target.partition("://")
    if not sep:
        return "****"
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if kind is ChannelKind.WEBHOOK:
        return f"{scheme}://{host}/..." if "/" in rest.strip("/") or "?" in rest else f"{scheme}://{host}"
    return f"{scheme}://****"

