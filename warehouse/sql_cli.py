"""``flowbank sql``: ask the analytics lake a question in SQL, read-only.

``flowbank sql "select ..."`` runs the statement(s) and prints the result as a table (or
``--format csv|json``); ``flowbank sql`` alone opens a prompt where a statement ends with ``;``
(or an empty line) and ``.tables``, ``.schema NAME``, ``.help`` and ``.quit`` work. Errors are
printed as one line, never as a traceback. Only reading statements run (SELECT, EXPLAIN,
PRAGMA, CALL); the connection is read-only and may read no file outside the lake.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, TextIO

import duckdb

from control.settings import Settings
from warehouse.analytics import lake_paths
from warehouse.analytics_views import AnalyticsReader, ViewsDatabaseError, ensure_views_db, view_columns

ALLOWED: Final = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL"})
_FETCH: Final = 10_000


class _Refused(Exception):
    """A statement this read-only tool will not run."""


ReadOnlyRefused = _Refused


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", help="SQL to run; without it an interactive prompt opens")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument("--max-rows", type=int, default=None,
                        help="rows to print (default: 200 for table, all for csv/json; 0 = all)")


def one_line(exc: BaseException) -> str:
    """DuckDB's multi-line message (with the LINE/caret excerpt) as one readable line."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__


def _text(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v, "NULL") for v in value) + "]"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _print_table(names: list[str], rows: list[tuple[Any, ...]], truncated: bool, out: TextIO) -> None:
    cells = [[_text(v, "NULL") for v in row] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in rows)
               and not all(r[i] is None for r in rows) for i in range(len(names))]

    def line(values: Sequence[str]) -> str:
        return " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    out.write(line(names).rstrip() + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row).rstrip() + "\n")
    count = f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
    out.write(f"({count}; more rows not shown, use --max-rows 0)\n" if truncated else f"({count})\n")


def _print_result(con: duckdb.DuckDBPyConnection, fmt: str, max_rows: int, out: TextIO) -> None:
    names = [d[0] for d in con.description or []]
    if fmt == "table":
        rows = con.fetchmany(max_rows + 1) if max_rows else con.fetchall()
        truncated = bool(max_rows) and len(rows) > max_rows
        _print_table(names, rows[:max_rows] if truncated else rows, truncated, out)
        return
    printed = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
    else:
        out.write("[")
    while not max_rows or printed < max_rows:
        chunk = con.fetchmany(min(_FETCH, max_rows - printed) if max_rows else _FETCH)
        if not chunk:
            break
        for row in chunk:
            if fmt == "csv":
                writer.writerow([_text(v, "") for v in row])
            else:
                out.write(("," if printed else "") + "\n" + json.dumps(dict(zip(names, row, strict=True)),
                                                                        default=_json_value, ensure_ascii=False))
            printed += 1
    if fmt == "json":
        out.write("\n]\n" if printed else "]\n")


def read_only_statements(con: duckdb.DuckDBPyConnection, text: str) -> list[Any]:
    """The statements of ``text``, all checked before any runs; raises ReadOnlyRefused."""
    statements = con.extract_statements(text)
    for statement in statements:
        if statement.type.name not in ALLOWED:
            raise _Refused(f"flowbank sql is read-only: {statement.type.name} statements are not allowed")
    return list(statements)


def query_last(con: duckdb.DuckDBPyConnection, text: str, *,
               max_rows: int) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run ``text`` read-only; the last result's column names, up to ``max_rows`` rows, truncated?"""
    names: list[str] = []
    rows: list[tuple[Any, ...]] = []
    truncated = False
    for statement in read_only_statements(con, text):
        con.execute(statement.query)
        if con.description:
            names = [d[0] for d in con.description]
            rows = con.fetchmany(max_rows + 1)
            truncated = len(rows) > max_rows
            rows = rows[:max_rows]
    return names, rows, truncated


def run_sql(con: duckdb.DuckDBPyConnection, text: str, *, fmt: str, max_rows: int, out: TextIO) -> None:
    """Run every statement in ``text`` and print each result; raises duckdb.Error or _Refused."""
    statements = read_only_statements(con, text)
    for index, statement in enumerate(statements):
        if index:
            out.write("\n")
        con.execute(statement.query)
        if con.description:
            _print_result(con, fmt, max_rows, out)


def _dot_command(con: duckdb.DuckDBPyConnection, line: str, out: TextIO) -> bool:
    """Handle a ``.command``; False means quit."""
    command, _, argument = line.partition(" ")
    argument = argument.strip().rstrip(";")
    if command in (".quit", ".exit", ".q"):
        return False
    if command == ".tables":
        rows = con.execute("SELECT view_name, coalesce(comment, '') FROM duckdb_views() "
                           "WHERE database_name = current_database() AND NOT internal "
                           "AND NOT starts_with(view_name, '_') ORDER BY view_name").fetchall()
        width = max((len(r[0]) for r in rows), default=0)
        out.writelines(f"{name.ljust(width)}  {comment}\n" for name, comment in rows)
    elif command == ".schema":
        columns = view_columns(con)
        if not argument:
            raise _Refused("usage: .schema NAME (see .tables)")
        if argument not in columns:
            raise _Refused(f"no view named {argument!r} (see .tables)")
        width = max(len(c[0]) for c in columns[argument])
        type_width = max(len(c[1]) for c in columns[argument])
        out.writelines(f"{name.ljust(width)}  {type_.ljust(type_width)}  {comment or ''}".rstrip() + "\n"
                       for name, type_, comment in columns[argument])
    elif command == ".help":
        out.write(".tables          list the views\n.schema NAME     columns, types and meaning\n"
                  ".quit            leave (or Ctrl-D)\nA statement ends with ';' or an empty line. "
                  "Timestamps are UTC.\n")
    else:
        raise _Refused(f"unknown command {command!r} (try .help)")
    return True


def _read(stdin: TextIO, prompt: str, tty: bool) -> str | None:
    if tty:
        try:
            return input(prompt) + "\n"
        except EOFError:
            return None
    line = stdin.readline()
    return line or None


def interactive(reader: AnalyticsReader, *, fmt: str, max_rows: int,
                stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """The prompt. Each statement gets a fresh cursor: the pipeline may have replaced the views
    file since (after a compaction), and the reader then reopens it."""
    tty = stdin.isatty()
    if tty:
        import readline  # noqa: F401 - line editing and history for input()

        out.write("FlowBankOS analytics (read-only; timestamps are UTC). .help for help, .quit to leave.\n")
    buffer: list[str] = []
    while True:
        try:
            line = _read(stdin, "sql> " if not buffer else " ...> ", tty)
        except KeyboardInterrupt:
            out.write("\n")
            buffer = []
            continue
        if line is None:
            break
        stripped = line.strip()
        if not buffer and stripped.startswith("."):
            try:
                if not _dot_command(reader.cursor(), stripped, out):
                    return 0
            except (duckdb.Error, ViewsDatabaseError, _Refused) as exc:
                err.write(f"error: {one_line(exc)}\n")
            continue
        if stripped:
            buffer.append(line)
        if buffer and (not stripped or stripped.endswith(";")):
            _run_reporting("".join(buffer), reader, fmt=fmt, max_rows=max_rows, out=out, err=err)
            buffer = []
    if buffer:
        _run_reporting("".join(buffer), reader, fmt=fmt, max_rows=max_rows, out=out, err=err)
    return 0


def _run_reporting(text: str, reader: AnalyticsReader, *, fmt: str, max_rows: int,
                   out: TextIO, err: TextIO) -> bool:
    con: duckdb.DuckDBPyConnection | None = None
    try:
        con = reader.cursor()
        run_sql(con, text, fmt=fmt, max_rows=max_rows, out=out)
    except (duckdb.Error, ViewsDatabaseError, _Refused) as exc:
        err.write(f"error: {one_line(exc)}\n")
        return False
    except KeyboardInterrupt:
        if con is not None:
            con.interrupt()
        err.write("error: interrupted\n")
        return False
    finally:
        if con is not None:
            con.close()
    return True


def run(settings: Settings, args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    lake_root, db_path = lake_paths(settings)
    max_rows = args.max_rows if args.max_rows is not None else (200 if args.format == "table" else 0)
    if max_rows < 0:
        err.write("error: --max-rows must be >= 0\n")
        return 2
    try:
        ensure_views_db(lake_root, db_path)
    except (OSError, duckdb.Error) as exc:
        if not db_path.exists():  # a reader without write access keeps the pipeline's file
            err.write(f"error: cannot create the views database {db_path}: {one_line(exc)}\n")
            return 1
    reader = AnalyticsReader(db_path)
    try:
        reader.cursor().close()  # fail early, with one line, when the file cannot be opened
    except ViewsDatabaseError as exc:
        err.write(f"error: {exc}\n")
        return 1
    try:
        if args.query is None:
            return interactive(reader, fmt=args.format, max_rows=max_rows, stdin=sys.stdin, out=out, err=err)
        return 0 if _run_reporting(args.query, reader, fmt=args.format, max_rows=max_rows, out=out, err=err) else 1
    except BrokenPipeError:  # `flowbank sql ... | head`
        return 0
    finally:
        reader.close()
