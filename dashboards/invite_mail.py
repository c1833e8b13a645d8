"""Sending an invitation link by e-mail, through the SMTP server of the notifications
(``FLOWBANK_SMTP_*`` in :class:`control.settings.Settings`).

Without an SMTP host there is no mailer (:func:`mailer_from_settings` returns None) and the page
shows the link and its QR code to pass on by hand. A send that fails never loses the invitation:
the service returns the link with the error, and the owner can copy it or resend.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from control.settings import Settings


@dataclass(frozen=True, slots=True)
class InviteMail:
    to: str
    inviter_name: str
    charger_name: str
    link: str
    expires_text: str       # "expires in 7 days (3 Dec 2026 12:00)"


class InviteMailer(Protocol):
    def send(self, mail: InviteMail) -> None:
        """Deliver ``mail`` or raise ``OSError``/``smtplib.SMTPException`` saying why not."""


def message_of(mail: InviteMail, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = f"{mail.inviter_name} invited you to share {mail.charger_name} on FlowBankOS"
    msg.set_content(
        f"{mail.inviter_name} invited you to use the charger {mail.charger_name} on FlowBankOS.\n\n"
        f"Open this link and sign in with this e-mail address ({mail.to}) to accept:\n\n{mail.link}\n\n"
        f"The invitation {mail.expires_text} and works once. If you did not expect it, ignore this e-mail.\n")
    return msg


class SmtpInviteMailer:
    def __init__(self, settings: Settings, *, timeout_s: float = 15.0) -> None:
        if not settings.smtp_host:
            raise ValueError("no SMTP host is configured (FLOWBANK_SMTP_HOST)")
        self._settings, self._timeout_s = settings, timeout_s

    def send(self, mail: InviteMail) -> None:
        s = self._settings
        assert s.smtp_host is not None  # noqa: S101 - checked in __init__
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self._timeout_s) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password.reveal())
            smtp.send_message(message_of(mail, s.smtp_from))


def mailer_from_settings(settings: Settings) -> InviteMailer | None:
    return SmtpInviteMailer(settings) if settings.smtp_host else None


def dashboard_base_url(settings: Settings) -> str:
    """Where people reach the dashboards, for the links sent to them.

    ``FLOWBANK_DASHBOARD_PUBLIC_URL`` when set (behind a proxy: the proxy's address, path prefix
    included). Otherwise ``http://<dashboard_host>:<dashboard_port>``, with ``localhost`` standing
    in for a wildcard bind address (``0.0.0.0``, ``::``), which is no address to send anyone.
    """
    if settings.dashboard_public_url:
        return settings.dashboard_public_url.rstrip("/")
    host = settings.dashboard_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - recognising the wildcard, not binding to it
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.dashboard_port}"
