"""`flowbank sql` (warehouse/sql_cli.py): one-shot queries in three formats, the interactive
prompt, and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.contract import MeterSample
from control.records import QualityFlag, SessionRecord, SessionState
from control.settings import Settings, load_settings
from warehouse import sql_cli
from warehouse.analytics import ParquetLake, lake_paths, to_arrow

T0 = datetime(2024, 5, 1, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load_settings({}, default_data_dir=tmp_path_factory.mktemp("sql") / "data")
    lake_root, db_path = lake_paths(settings)
    with ParquetLake(lake_root, views_db=db_path) as lake:
        lake.append("sessions", to_arrow("sessions", [
            SessionRecord("s1", "CP1", 1, "t1", T0, SessionState.CLOSED, 2, 7_500.0, site_id="S1",
                          ended_at=T0 + timedelta(hours=1), flags=(QualityFlag.GAP,)),
            SessionRecord("s2", "CP2", 1, "t2", T0, SessionState.OPEN, 1, 0.0, site_id=None,
                          flags=(QualityFlag.NO_ENERGY_DATA,))]))
        lake.append("meter_samples", to_arrow("meter_samples", [
            MeterSample("CP1", 1, T0 + timedelta(minutes=i), power_w=7_000.0 + i) for i in range(300)]))
    return settings


def run(settings: Settings, *argv: str, stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowbank sql")
    sql_cli.add_arguments(parser)
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return sql_cli.run(settings, parser.parse_args(list(argv)))


def test_one_query_prints_an_aligned_table(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "select session_id, site_id, energy_kwh, flags, started_at from sessions "
                         "order by session_id") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "session_id | site_id | energy_kwh | flags            | started_at",
        "-----------+---------+------------+------------------+--------------------",
        "s1         | S1      |        7.5 | [gap]            | 2024-05-01 08:00:00",
        "s2         | NULL    |        0.0 | [no_energy_data] | 2024-05-01 08:00:00",
        "(2 rows)",
    ]


def test_csv_and_json_formats(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    query = "select session_id, excluded, flags, ended_at from sessions order by session_id"
    assert run(settings, query, "--format", "csv") == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["session_id", "excluded", "flags", "ended_at"], ["s1", "False", "[gap]", "2024-05-01 09:00:00"],
                    ["s2", "True", "[no_energy_data]", ""]]
    assert run(settings, query, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"session_id": "s1", "excluded": False, "flags": ["gap"], "ended_at": "2024-05-01T09:00:00"},
        {"session_id": "s2", "excluded": True, "flags": ["no_energy_data"], "ended_at": None}]
    assert run(settings, "select 1 as a where false", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_long_results_are_cut_in_the_table_format_only(settings: Settings,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "select ts from meter_samples") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + 200 + 1 and out[-1] == "(200 rows; more rows not shown, use --max-rows 0)"
    assert run(settings, "select ts from meter_samples", "--max-rows", "0") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(300 rows)"
    assert run(settings, "select ts from meter_samples", "--format", "csv") == 0
    assert len(capsys.readouterr().out.splitlines()) == 301
    assert run(settings, "select ts from meter_samples", "--format", "json", "--max-rows", "5") == 0
    assert len(json.loads(capsys.readouterr().out)) == 5


def test_several_statements_print_several_results(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "select 1 as a; select 2 as b") == 0
    assert capsys.readouterr().out == "a\n-\n1\n(1 row)\n\nb\n-\n2\n(1 row)\n"


@pytest.mark.parametrize(("query", "message"), [
    ("selec 1", "error: Parser Error: syntax error at or near \"selec\""),
    ("select * from sesions", "error: Catalog Error: Table with name sesions does not exist! Did you mean"),
    ("select 1/0::int + 'x'", "error: Conversion Error"),
    ("insert into sessions (session_id) values ('x')", "error: flowbank sql is read-only: INSERT statements"),
    ("select 1; drop view sessions", "error: flowbank sql is read-only: DROP statements"),
    ("copy (select 1) to '/tmp/flowbank-sql-test.csv'", "error: flowbank sql is read-only: COPY statements"),
    ("select * from read_csv('/etc/passwd')", "error: Permission Error"),
])
def test_errors_are_one_readable_line(settings: Settings, capsys: pytest.CaptureFixture[str], query: str,
                                      message: str) -> None:
    assert run(settings, query) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran: the statements are all checked first
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_the_prompt_runs_statements_and_dot_commands(settings: Settings, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    script = "\n".join([  # noqa: S608 - statements typed at the prompt, not a query built from input
        ".tables",
        ".schema sessions_per_site",
        "select count(*) as n",
        "  from sessions;",
        "select * from nope;",
        "select 41 + 1 as answer",
        "",
        ".schema nope",
        ".frobnicate",
        ".quit",
        "select 'never run';",
    ]) + "\n"
    assert run(settings, stdin=script, monkeypatch=monkeypatch) == 0
    captured = capsys.readouterr()
    assert "daily_energy" in captured.out and "Energy of clean sessions per charger per UTC day" in captured.out
    assert "clean_sessions     BIGINT   Of those, not excluded." in captured.out
    assert "n\n-\n2\n(1 row)\n" in captured.out and "answer\n------\n    42\n(1 row)\n" in captured.out
    assert "never run" not in captured.out
    errors = captured.err.splitlines()
    assert errors[0].startswith("error: Catalog Error: Table with name nope does not exist!")
    assert errors[1:] == ["error: no view named 'nope' (see .tables)",
                          "error: unknown command '.frobnicate' (try .help)"]


def test_the_prompt_runs_a_last_statement_without_semicolon_at_end_of_input(
        settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(settings, stdin="select 7 as x", monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out == "x\n-\n7\n(1 row)\n"


def test_a_fresh_data_dir_gets_its_views_on_first_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({}, default_data_dir=tmp_path / "fresh")
    assert run(settings, "select count(*) as sessions from sessions") == 0
    assert capsys.readouterr().out.splitlines()[2].strip() == "0"
    assert (tmp_path / "fresh" / "analytics.duckdb").exists()


def test_an_unwritable_data_dir_without_views_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = load_settings({}, default_data_dir=blocker / "data")
    assert run(settings, "select 1") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create the views database") and err.count("\n") == 1
