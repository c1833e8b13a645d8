"""Installer mode's service: issuing and redeeming one-time codes, the device profile and live diagnostics.

Support and operators issue codes (``Permission.TROUBLESHOOT`` platform-wide: exactly the back
office). A user holding ``Permission.INSTALL`` (installers, operators) enters installer mode by
redeeming a code; the mode lasts :data:`control.installer.SESSION_LENGTH` from the redemption
and covers the code's site (or every site). The device profile and diagnostics need both the
permission on the charger and an open installer session covering its site. Every issue and
redemption (successful or not) and every refused profile view is in the access log; granted reads
are not (the diagnostics refresh every 2 s), as everywhere in :mod:`dashboards.access`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from control.access import Decision, Permission
from control.installer import (
    CODE_LENGTH,
    SESSION_LENGTH,
    InstallerCodeError,
    InstallerSession,
    check_format,
    code_hash,
    new_code,
    validity,
)
from dashboards.access import Access, AccessDenied, Principal
from warehouse import fleet_store
from warehouse.fleet_store import FleetRow, LiveConnector

SAMPLE_WINDOW: Final = timedelta(hours=1)  # voltage/temperature older than this are "not reported"

_REDEEM_REFUSALS: Final = {
    "unknown": "That code is not valid. Check it with the person who issued it.",
    "used": "That code has already been used; ask support for a new one.",
    "expired": "That code has expired; ask support for a new one.",
}


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str                  # shown once to the issuer; only its SHA-256 is stored
    site_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    charger: FleetRow
    serial_number: str | None
    firmware_version: str | None
    ocpp_version: str | None
    last_boot_at: datetime | None
    connectors: list[LiveConnector]


class InstallerService:
    def __init__(self, access: Access, *, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._access, self._random = access, random_bytes

    def may_issue(self, who: Principal) -> bool:
        return self._access.check(who, Permission.TROUBLESHOOT).allowed

    def issue_code(self, who: Principal, *, site_id: str | None = None, valid_hours: float = 24.0) -> IssuedCode:
        """A new one-time code (support and operators only)."""
        self._access.require(who, Permission.TROUBLESHOOT)
        span = validity(valid_hours)
        now = self._access.now()
        code = new_code(self._random(CODE_LENGTH))
        with self._access.connection() as conn:
            if site_id is not None and not fleet_store.site_chargers(conn, site_id):
                raise InstallerCodeError(f"There is no location {site_id!r} with chargers.")
            fleet_store.insert_installer_code(conn, code_sha256=code_hash(code), site_id=site_id, issued_by=who.user_id,
                                              issued_at=now, expires_at=now + span)
        self._access.log(who, "issue_installer_code", None, allowed=True,
                         detail=f"site {site_id or 'any'}, expires {(now + span).isoformat()}")
        return IssuedCode(code, site_id, now + span)

    def redeem(self, who: Principal, typed: str) -> InstallerSession:
        """Enter installer mode with a code; raises :class:`InstallerCodeError` with a readable reason."""
        self._access.require(who, Permission.INSTALL)
        try:
            code = check_format(typed)
        except InstallerCodeError as exc:
            self._access.log(who, "enter_installer_mode", None, allowed=False, detail=str(exc))
            raise
        now = self._access.now()
        with self._access.connection() as conn:
            outcome = fleet_store.redeem_installer_code(conn, code_sha256=code_hash(code), user_id=who.user_id, now=now)
        if not outcome.redeemed:
            reason = _REDEEM_REFUSALS[outcome.reason]
            self._access.log(who, "enter_installer_mode", None, allowed=False, detail=reason)
            raise InstallerCodeError(reason)
        self._access.log(who, "enter_installer_mode", None, allowed=True, detail=f"site {outcome.site_id or 'any'}")
        return InstallerSession(who.user_id, now, outcome.site_id)

    def session(self, who: Principal) -> InstallerSession | None:
        """The user's open installer session, if any (None after it ended)."""
        self._access.require(who, Permission.INSTALL)
        now = self._access.now()
        with self._access.connection() as conn:
            found = fleet_store.latest_redemption(conn, who.user_id, now - SESSION_LENGTH)
        if found is None:
            return None
        started = InstallerSession(who.user_id, found[0], found[1])
        return started if started.active(now) else None

    def device_profile(self, who: Principal, charger_id: str) -> DeviceProfile:
        """Serial, firmware, vendor/model (from BootNotification) and each connector's live diagnostics."""
        ref = self._access.require(who, Permission.INSTALL, charger_id)
        site_id = ref.site_id if ref is not None else None
        open_session = self.session(who)
        if open_session is None or not open_session.covers(site_id):
            reason = ("installer mode is not active: enter a one-time code" if open_session is None else
                      f"your installer code is for location {open_session.site_id}, not this charger's")
            self._access.log(who, "device_profile", charger_id, allowed=False, detail=reason)
            raise AccessDenied(Decision(False, reason), Permission.INSTALL, charger_id)
        now = self._access.now()
        with self._access.connection() as conn:
            rows = fleet_store.fleet_rows(conn, [charger_id], day=now.date())
            boot = fleet_store.boot_profile(conn, charger_id)
            connectors = fleet_store.live_connectors(conn, charger_id, samples_since=now - SAMPLE_WINDOW)
        if not rows or boot is None:
            raise AccessDenied(Decision(False, f"you have no access to charger {charger_id}"), Permission.INSTALL,
                               charger_id)
        return DeviceProfile(rows[0], *boot, connectors)
