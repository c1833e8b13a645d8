"""``flowbank site|mode|limit|command|decisions``: load management from the command line.

    flowbank site apply depot-1.toml           # create or replace a site (circuits, chargers, rules)
    flowbank site list | show ID | remove ID
    flowbank mode CP-1 1 eco                   # Standard / Eco / Boost (Boost needs --confirm)
    flowbank limit set --site depot-1 --amps 40 [--charger CP-1] [--until 2026-12-01T18:00Z] [--id grid-1]
    flowbank limit end grid-1 | limit list
    flowbank command pause CP-1:1 CP-2:1       # start|stop|pause|resume|lock|unlock|release_cable|set_limit
    flowbank departure CP-1 1 --at 2026-11-27T07:00+01:00 --target-soc 80 --battery-kwh 64   # or --energy-kwh
    flowbank decisions --site depot-1 --since 2h   # the audit log

A site file is the site mapping of ``control.site.site_from_mapping`` plus an optional
``timezone`` and ``[[rules]]`` (``control.rules_config``). Errors are one readable line and exit
status 2 (bad input) or 1 (refused, failed, or some charger did not accept).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg

from control.contract import ChargingMode
from control.modes import describe
from control.settings import Settings
from control.site_config import Departure
from warehouse import control_store as store
from warehouse.command_api import Action, CommandService, Target


class CliError(Exception):
    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def add_site_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="site_action", metavar="ACTION", required=True)
    p = actions.add_parser("apply", help="create or replace a site from a TOML file")
    p.add_argument("file", type=Path)
    p.add_argument("--by", default="cli", help="who makes the change (recorded)")
    actions.add_parser("list", help="list the sites")
    p = actions.add_parser("show", help="print a site's stored configuration")
    p.add_argument("site_id")
    p = actions.add_parser("remove", help="remove a site (its chargers keep their last limits)")
    p.add_argument("site_id")


def add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("charger_id")
    parser.add_argument("connector_id", type=int, help="connector (0 = every connector of the charger)")
    parser.add_argument("mode", choices=[m.value for m in ChargingMode])
    parser.add_argument("--confirm", action="store_true", help="confirm Boost's peak-demand warning")
    parser.add_argument("--by", default="cli", help="who asks (recorded)")


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="limit_action", metavar="ACTION", required=True)
    p = actions.add_parser("set", help="cap a site or a charger until --until (or until ended)")
    p.add_argument("--site", required=True)
    p.add_argument("--charger", help="cap this charger only (default: the whole site)")
    p.add_argument("--amps", type=float, required=True)
    p.add_argument("--until", help="ISO 8601 time with offset (default: until ended)")
    p.add_argument("--id", dest="limit_id", help="the limit's id (default: a new one); the same id replaces it")
    p.add_argument("--reason")
    p.add_argument("--source", default="operator-cli")
    p.add_argument("--by", default="cli")
    p = actions.add_parser("end", help="end a limit now")
    p.add_argument("limit_id")
    actions.add_parser("list", help="limits in force and to come")


def add_command_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=[a.value for a in Action])
    parser.add_argument("targets", nargs="+", metavar="CHARGER[:CONNECTOR]")
    parser.add_argument("--limit", type=float, help="set_limit: the limit in A")
    parser.add_argument("--id-tag", help="start: the id tag to start with")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the results (default 5)")
    parser.add_argument("--by", default="cli")


def add_departure_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("charger_id")
    parser.add_argument("connector_id", type=int, help="connector (0 = whichever connector the vehicle is on)")
    parser.add_argument("--at", help="departure time, ISO 8601 with offset (e.g. 2026-11-27T07:00+01:00)")
    parser.add_argument("--target-soc", type=float, help="target state of charge, %% (with --battery-kwh)")
    parser.add_argument("--battery-kwh", type=float, help="usable battery size, kWh")
    parser.add_argument("--energy-kwh", type=float, help="or: the energy to deliver, kWh (when SoC is unknown)")
    parser.add_argument("--clear", action="store_true", help="remove the departure")
    parser.add_argument("--by", default="cli")


def add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site")
    parser.add_argument("--charger")
    parser.add_argument("--since", default="1h", help="how far back: 30m, 2h, 1d (default 1h)")
    parser.add_argument("--limit", type=int, default=50)


# --------------------------------------------------------------------------- handlers


def run(settings: Settings, command: str, args: argparse.Namespace, *, out: TextIO | None = None,
        err: TextIO | None = None, now: datetime | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    now = now or datetime.now(UTC)
    try:
        if command == "command":
            return _command(settings, args, out)
        with psycopg.connect(settings.pg_dsn.reveal(), autocommit=True, connect_timeout=10) as conn:
            return {"site": _site, "mode": _mode, "limit": _limit, "decisions": _decisions,
                    "departure": _departure}[command](conn, args, out, now)
    except CliError as exc:
        print(f"flowbank {command}: {exc}", file=err)
        return exc.status
    except store.ControlConfigError as exc:
        print(f"flowbank {command}: refused: {exc}", file=err)
        return 2
    except psycopg.OperationalError as exc:
        print(f"flowbank {command}: database unreachable: {str(exc).strip().splitlines()[0]}", file=err)
        return 1


def _site(conn: store.Connection, args: argparse.Namespace, out: TextIO, now: datetime) -> int:
    if args.site_action == "apply":
        try:
            data = tomllib.loads(args.file.read_text("utf-8"))
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CliError(f"{args.file} is not valid TOML: {exc}") from None
        rules = data.pop("rules", [])
        timezone = data.pop("timezone", "UTC")
        if not isinstance(rules, list) or not isinstance(timezone, str):
            raise CliError("'rules' must be an array of tables and 'timezone' a string")
        site_id = store.save_site(conn, data, rules=rules, timezone=timezone, updated_by=args.by)
        print(f"site {site_id} saved: {len(data.get('chargers', []))} charger(s), {len(rules)} rule(s); "
              "the pipeline applies it within a second", file=out)
        return 0
    if args.site_action == "list":
        sites = store.list_sites(conn)
        if not sites:
            print("no sites", file=out)
        for s in sites:
            state = "" if s.enabled else " (disabled)"
            print(f"{s.site_id}{state}  {s.name!r}  {s.timezone}  chargers: {', '.join(s.chargers) or '-'}  "
                  f"rules: {s.rules}  updated {s.updated_at:%Y-%m-%d %H:%M}Z by {s.updated_by or '?'}", file=out)
        return 0
    if args.site_action == "show":
        stored = store.site_mapping(conn, args.site_id)
        if stored is None:
            raise CliError(f"no site {args.site_id!r}", 1)
        import json

        print(json.dumps({"site": stored[0], "rules": stored[1]}, indent=2, sort_keys=True), file=out)
        return 0
    if not store.delete_site(conn, args.site_id):
        raise CliError(f"no site {args.site_id!r}", 1)
    print(f"site {args.site_id} removed", file=out)
    return 0


def _mode(conn: store.Connection, args: argparse.Namespace, out: TextIO, now: datetime) -> int:
    result = store.set_mode(conn, args.charger_id, args.connector_id, args.mode, requested_by=args.by, now=now,
                            confirmed=args.confirm)
    print(result.message, file=out)
    if not result.accepted:
        warning = describe(ChargingMode(args.mode)).warning
        if warning and not args.confirm:
            print(f"{warning}\nRepeat with --confirm to apply it.", file=out)
        return 1
    return 0


def _limit(conn: store.Connection, args: argparse.Namespace, out: TextIO, now: datetime) -> int:
    if args.limit_action == "set":
        until = _parse_time(args.until) if args.until else None
        limit_id = args.limit_id or f"lim-{uuid.uuid4().hex[:12]}"
        store.set_operator_limit(conn, limit_id, site_id=args.site, limit_a=args.amps, starts_at=now,
                                 source=args.source, charger_id=args.charger, ends_at=until, reason=args.reason,
                                 created_by=args.by)
        scope = f"charger {args.charger}" if args.charger else f"site {args.site}"
        print(f"limit {limit_id}: {scope} capped at {args.amps:g} A "
              f"{'until ' + until.isoformat() if until else 'until ended'}", file=out)
        return 0
    if args.limit_action == "end":
        if not store.end_operator_limit(conn, args.limit_id, now=now):
            raise CliError(f"no limit {args.limit_id!r} in force", 1)
        print(f"limit {args.limit_id} ended", file=out)
        return 0
    rows = conn.execute("select limit_id, site_id, charger_id, limit_a, starts_at, ends_at, source, reason"
                        " from operator_limits where ends_at is null or ends_at > %s order by starts_at",
                        (now,)).fetchall()
    if not rows:
        print("no limits in force", file=out)
    for lid, site, charger, amps, starts, ends, source, reason in rows:
        print(f"{lid}  {charger or 'site ' + site}  {amps:g} A  from {starts:%Y-%m-%d %H:%M}Z "
              f"{'to ' + format(ends, '%Y-%m-%d %H:%M') + 'Z' if ends else 'until ended'}  ({source})"
              f"{'  ' + reason if reason else ''}", file=out)
    return 0


def _departure(conn: store.Connection, args: argparse.Namespace, out: TextIO, now: datetime) -> int:
    where = f"{args.charger_id}/{args.connector_id}"
    if args.clear:
        if not store.clear_departure(conn, args.charger_id, args.connector_id):
            raise CliError(f"no departure set for {where}", 1)
        print(f"departure for {where} removed", file=out)
        return 0
    if not args.at:
        raise CliError("--at is required (or --clear)")
    at = _parse_time(args.at)
    if at <= now:
        raise CliError(f"the departure {at.isoformat()} is not in the future")
    departure = Departure(at, args.target_soc, None if args.battery_kwh is None else args.battery_kwh * 1000,
                          None if args.energy_kwh is None else args.energy_kwh * 1000)
    store.set_departure(conn, args.charger_id, args.connector_id, departure, set_by=args.by)
    what = f"{args.energy_kwh:g} kWh" if args.energy_kwh is not None else f"{args.target_soc:g} % SoC"
    print(f"departure for {where}: {what} by {at.isoformat()}; the vehicle gets priority while that is at risk",
          file=out)
    return 0


def _decisions(conn: store.Connection, args: argparse.Namespace, out: TextIO, now: datetime) -> int:
    since = now - _parse_duration(args.since)
    rows = conn.execute(
        """select ts, site_id, charger_id, connector_id, old_limit_a, new_limit_a, reason, binding, command_outcome
           from control_audit where ts >= %s and (%s::text is null or site_id = %s)
             and (%s::text is null or charger_id = %s)
           order by ts desc limit %s""",
        (since, args.site, args.site, args.charger, args.charger, args.limit)).fetchall()
    if not rows:
        print("no decisions in that period", file=out)
    for ts, site, charger, connector, old, new, reason, binding, outcome in reversed(rows):
        before = "-" if old is None else f"{old:g}"
        print(f"{ts:%Y-%m-%d %H:%M:%S}Z {site} {charger}/{connector} {before} -> {new:g} A  {reason} "
              f"[{binding}] {outcome or 'no result yet'}", file=out)
    return 0


def _command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    action = Action(args.action)
    targets = [_target(t) for t in args.targets]
    params: dict[str, Any] = {}
    if action is Action.SET_LIMIT:
        if args.limit is None:
            raise CliError("set_limit needs --limit (A)")
        params["limit"] = args.limit
    if args.id_tag:
        params["id_tag"] = args.id_tag
    with CommandService(settings.mqtt) as service:
        replies = service.send_many(action, targets, requested_by=args.by, params=params or None,
                                    timeout_s=args.timeout)
    for reply in replies:
        where = reply.charger_id + (f":{reply.connector_id}" if reply.connector_id is not None else "")
        print(f"{where}  {reply.message}  ({reply.elapsed_s:.1f} s)", file=out)
    return 0 if all(r.ok for r in replies) else 1


# --------------------------------------------------------------------------- parsing


def _target(text: str) -> Target:
    charger, _, connector = text.partition(":")
    if not charger:
        raise CliError(f"bad target {text!r}: expected CHARGER or CHARGER:CONNECTOR")
    if connector and not connector.isdigit():
        raise CliError(f"bad target {text!r}: the connector must be a number")
    return Target(charger, int(connector) if connector else None)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise CliError(f"{text!r} has no UTC offset (e.g. 2026-12-01T18:00Z)")
    return value.astimezone(UTC)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise CliError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d)")
    value, unit = float(match[1]), match[2]
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])

