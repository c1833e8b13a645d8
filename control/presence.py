"""Chargers that stop talking: when one counts as offline, and what it may still draw. Pure.

A charger is *offline* when nothing came from it (a meter sample, a status, a heartbeat, a
command result) for longer than its timeout: the site's ``[control] offline_timeout_s``, else
:data:`OFFLINE_FACTOR` x its heartbeat interval (from its boot, else the platform's default).
The bridge's "disconnected" is not a message from the charger and does not reset the clock; a
socket that drops and comes back within the timeout changes nothing.

An offline connector leaves the allocation: it gets no share and no commands (they would only
wait in the bridge's queue). What it may still draw is *reserved* on every circuit it draws
through: the limit it last received (a charger that only lost its connection keeps charging
under its installed profile), lowered to the site's ``offline_fallback_a`` when one is set (the
current the charger falls back to on its own when it loses its CSMS; 0 when it stops charging).
Without a limit ever sent, its hardware maximum (or the fallback). Everything above the
reservation goes to the others.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

DEFAULT_HEARTBEAT: Final = timedelta(seconds=60)
OFFLINE_FACTOR: Final = 3.0
OFFLINE_REASON: Final = "Charger offline: share released"


def offline_timeout(configured_s: float | None, heartbeat_s: float | None,
                    default_heartbeat: timedelta = DEFAULT_HEARTBEAT, factor: float = OFFLINE_FACTOR) -> timedelta:
    """The silence after which a charger counts as offline."""
    if configured_s is not None:
        return timedelta(seconds=configured_s)
    heartbeat = timedelta(seconds=heartbeat_s) if heartbeat_s else default_heartbeat
    return heartbeat * factor


def is_offline(last_heard: datetime | None, timeout: timedelta, now: datetime) -> bool:
    """Silent for longer than ``timeout``. Never heard of (no message since this state began): not
    offline, since there is nothing to time from."""
    return last_heard is not None and now - last_heard > timeout


def reserved_current_a(last_limit_a: float | None, hardware_max_a: float, fallback_a: float | None) -> float:
    """What an offline connector may still draw per phase (see the module docstring)."""
    installed = hardware_max_a if last_limit_a is None else last_limit_a
    return installed if fallback_a is None else min(installed, fallback_a)


def offline_reason(reserved_a: float) -> str:
    """The audit reason when a charger goes offline."""
    if reserved_a <= 0:
        return OFFLINE_REASON
    return f"{OFFLINE_REASON} ({reserved_a:g} A kept for the limit it may still apply)"
