"""``flowbank chargers`` against the real registry."""

from __future__ import annotations

import argparse
import io
from dataclasses import replace

import psycopg
import pytest
from test_bridge_harness import unique

from control.settings import Secret, Settings
from ingest import chargers_cli
from warehouse.registry import verify_password

pytestmark = pytest.mark.integration


def _run(settings: Settings, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="flowbank chargers")
    chargers_cli.add_arguments(parser)
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = chargers_cli.run(settings, args, out=out, err=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_add_list_remove(test_settings: Settings, pg_dsn: str) -> None:
    cid = unique("CLI")
    code, out, err = _run(test_settings, "add", cid, "--site", "depot-7", "--name", "Bay 1")
    assert code == 0 and f"added charger {cid}" in out and not err
    password = out.split(f"password for {cid}: ")[1].split()[0]
    assert len(password) == 32
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select password_hash, site_id, display_name from chargers where charger_id = %s",
                           (cid,)).fetchone()
    assert row is not None and verify_password(password, row[0]) and row[1:] == ("depot-7", "Bay 1")
    assert password not in row[0]

    code, out, err = _run(test_settings, "add", cid)
    assert code == 1 and err == f"flowbank chargers: charger {cid} already exists\n"

    code, out, _ = _run(test_settings, "set-password", cid, "--password-stdin", stdin="my-own-password-12\n")
    assert code == 0 and "my-own-password-12" not in out
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("select password_hash from chargers where charger_id = %s", (cid,)).fetchone()
    assert row is not None and verify_password("my-own-password-12", row[0])

    code, _, err = _run(test_settings, "set-password", cid, "--password", "short")
    assert code == 1 and "8 to 40 characters" in err

    assert _run(test_settings, "disable", cid)[0] == 0
    code, out, _ = _run(test_settings, "list")
    line = next(line for line in out.splitlines() if line.startswith(cid))
    assert "depot-7" in line and "- / - / -" in line and "never" in line and line.rstrip().endswith("no")
    assert out.splitlines()[0].split()[:2] == ["CHARGER", "SITE"]

    assert _run(test_settings, "remove", cid)[0] == 0
    code, _, err = _run(test_settings, "remove", cid)
    assert code == 1 and err == f"flowbank chargers: charger {cid} does not exist\n"
    code, _, err = _run(test_settings, "add", "bad/id")
    assert code == 1 and "not a valid charger id" in err


def test_unreachable_database_is_one_readable_line(test_settings: Settings) -> None:
    settings = replace(test_settings, pg_dsn=Secret("postgresql://flowbank:s3cret@127.0.0.1:1/none"))
    code, _, err = _run(settings, "list")
    assert code == 1 and err.startswith("flowbank chargers: cannot reach PostgreSQL at ")
    assert "s3cret" not in err and err.count("\n") == 1
