"""``flowbank chargers``: the registry of chargers allowed to connect, and their passwords.

    flowbank chargers add CP-001 [--site S] [--name N] [--password P | --password-stdin]
    flowbank chargers list
    flowbank chargers remove CP-001
    flowbank chargers enable|disable CP-001
    flowbank chargers set-password CP-001 [--password P | --password-stdin]

Without a password, ``add`` and ``set-password`` generate a strong one and print it once: it is
stored only as a scrypt hash. Configure it in the charger as its Basic-auth password
(1.6: ``AuthorizationKey``; 2.0.1: ``BasicAuthPassword``), with the charger id as the user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC
from typing import TextIO

import psycopg

from control.settings import Settings
from warehouse import registry

Conn = psycopg.Connection[tuple[object, ...]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``chargers`` actions to the ``chargers`` sub-command's parser."""
    actions = parser.add_subparsers(dest="chargers_action", metavar="ACTION", required=True)

    def password_options(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--password", help="use this password (visible in the shell history; prefer stdin)")
        group.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    p = actions.add_parser("add", help="register a charger and set its Basic-auth password")
    p.add_argument("charger_id", help="the charge point id (the last part of the OCPP URL)")
    p.add_argument("--site", help="site id")
    p.add_argument("--name", help="display name")
    password_options(p)
    p = actions.add_parser("list", help="list registered chargers")
    p = actions.add_parser("remove", help="delete a charger from the registry")
    p.add_argument("charger_id")
    for name, text in (("enable", "allow a charger to connect"), ("disable", "refuse a charger's connections")):
        p = actions.add_parser(name, help=text)
        p.add_argument("charger_id")
    p = actions.add_parser("set-password", help="replace a charger's password")
    p.add_argument("charger_id")
    password_options(p)


def _password(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> tuple[str, bool]:
    """(password, generated?)"""
    if args.password_stdin:
        given = stdin.readline().rstrip("\r\n")
    elif args.password is not None:
        given = args.password
    else:
        return registry.generate_password(), True
    registry.check_password_rules(given)
    if len(given) < registry.OCPP_PASSWORD_MIN:
        out.write(f"warning: OCPP asks for at least {registry.OCPP_PASSWORD_MIN} characters\n")
    return given, False


def _show_password(charger_id: str, password: str, out: TextIO) -> None:
    out.write(f"password for {charger_id}: {password}\n")
    out.write("  (shown only now; set it in the charger as the Basic-auth password, user = the charger id)\n")


def _cmd_add(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    password, generated = _password(args, stdin, out)
    registry.add_charger(conn, args.charger_id, password_hash=registry.hash_password(password),
                         site_id=args.site, display_name=args.name)
    out.write(f"added charger {args.charger_id}\n")
    if generated:
        _show_password(args.charger_id, password, out)


def _cmd_set_password(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    password, generated = _password(args, stdin, out)
    registry.set_password(conn, args.charger_id, registry.hash_password(password))
    out.write(f"password of {args.charger_id} replaced\n")
    if generated:
        _show_password(args.charger_id, password, out)


def _cmd_list(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    rows = registry.list_chargers(conn)
    if not rows:
        out.write("no chargers registered (add one with: flowbank chargers add CHARGER_ID)\n")
        return
    table = [("CHARGER", "SITE", "VENDOR / MODEL / FIRMWARE", "OCPP", "LAST BOOT (UTC)", "ENABLED")]
    for r in rows:
        hardware = " / ".join(x or "-" for x in (r.vendor, r.model, r.firmware_version))
        boot = r.last_boot_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if r.last_boot_at else "never"
        enabled = ("yes" if r.enabled else "no") + ("" if r.has_password else " (no password)")
        if r.auto_registered:
            enabled += " (auto-registered)"
        table.append((r.charger_id, r.site_id or "-", hardware, r.ocpp_version or "-", boot, enabled))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def _cmd_remove(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    registry.remove_charger(conn, args.charger_id)
    out.write(f"removed charger {args.charger_id}\n")


def _cmd_enable(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    registry.set_enabled(conn, args.charger_id, True)
    out.write(f"charger {args.charger_id} enabled\n")


def _cmd_disable(conn: Conn, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    registry.set_enabled(conn, args.charger_id, False)
    out.write(f"charger {args.charger_id} disabled (it can no longer connect)\n")


_ACTIONS: dict[str, Callable[[Conn, argparse.Namespace, TextIO, TextIO], None]] = {
    "add": _cmd_add,
    "list": _cmd_list,
    "remove": _cmd_remove,
    "enable": _cmd_enable,
    "disable": _cmd_disable,
    "set-password": _cmd_set_password,
}


def run(settings: Settings, args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
        stdin: TextIO | None = None) -> int:
    """Run one ``flowbank chargers`` action; 0 on success, 1 with a one-line error otherwise."""
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    try:
        with psycopg.connect(settings.pg_dsn.reveal(), autocommit=True, connect_timeout=10) as conn:
            _ACTIONS[args.chargers_action](conn, args, out, stdin)
    except (registry.RegistryError, registry.PasswordError) as exc:
        err.write(f"flowbank chargers: {exc}\n")
        return 1
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.write(f"flowbank chargers: cannot reach PostgreSQL at {settings.pg_dsn_display}: {first_line}\n")
        return 1
    except psycopg.errors.UndefinedTable:
        err.write("flowbank chargers: the database has no chargers table yet; run `flowbank services` first\n")
        return 1
    return 0
