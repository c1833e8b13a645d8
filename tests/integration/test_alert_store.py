"""warehouse.alert_store against the real PostgreSQL/TimescaleDB: the dataflow's writes, a user's
acknowledgement that a re-emitted alert does not undo, the transition log and the console's reads."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from control import contract as c
from control.alerts import AlertBook, AlertChange, AlertConfig
from warehouse import alert_store as store
from warehouse.queries import NotFoundError
from warehouse.tsdb_writer import TimescaleWriter

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CFG = AlertConfig(hold_down=timedelta(minutes=5))
OPEN, ACK, RESOLVED = c.AlertState.OPEN, c.AlertState.ACKNOWLEDGED, c.AlertState.RESOLVED


@pytest.fixture()
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture()
def writer(pg_dsn: str) -> Iterator[store.AlertWriter]:
    w = store.AlertWriter(pg_dsn)
    yield w
    w.close()


def _charger() -> str:
    return f"CP-{secrets.token_hex(3)}"


def _fault(book: AlertBook, charger: str, now: datetime, site: str | None = None) -> AlertChange:
    return book.raise_(f"fault|{charger}|1|status|GroundFailure", kind="fault", severity=c.Severity.ERROR, ts=now,
                       now=now, message=f"Charger {charger} connector 1 reported fault GroundFailure",
                       charger_id=charger, site_id=site, connector_id=1, hold_down=CFG.hold_down)


def _states(conn: psycopg.Connection[Any], alert_id: str) -> list[tuple[str | None, str, str]]:
    return [(t.from_state, t.to_state, t.actor) for t in store.transitions(conn, alert_id)]


def test_an_acknowledgement_survives_a_re_emitted_alert_and_every_transition_is_stored(
        conn: psycopg.Connection[Any], writer: store.AlertWriter, pg_dsn: str) -> None:
    charger, book = _charger(), AlertBook()
    opened = _fault(book, charger, T0)
    assert writer.write([opened]) == 1
    row = store.get_alert(conn, opened.alert.alert_id)
    assert (row.state, row.count, row.connector_id, row.first_seen) == (OPEN, 1, 1, T0)
    assert row.dedupe_key == f"fault|{charger}|1|status|GroundFailure"

    acked = store.acknowledge(conn, row.alert_id, "support-ann", "looking into it", now=T0 + M)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at) == (ACK, "support-ann", T0 + M)

    repeat = _fault(book, charger, T0 + 2 * M)  # the pipeline knows nothing of the acknowledgement
    assert repeat.alert.state is OPEN and repeat.alert.count == 2
    assert writer.write([repeat]) == 0
    row = store.get_alert(conn, opened.alert.alert_id)
    assert (row.state, row.count, row.ts, row.last_seen, row.first_seen) == (ACK, 2, T0 + 2 * M, T0 + 2 * M, T0)

    # The generic writer (load management's path) keeps the acknowledgement too.
    with TimescaleWriter(pg_dsn) as generic:
        generic.write([c.Alert(opened.alert.alert_id, "fault", c.Severity.ERROR, T0 + 3 * M, "again",
                               charger_id=charger, count=3)])
    assert store.get_alert(conn, opened.alert.alert_id).state is ACK

    cleared = book.clear(opened.dedupe_key, ts=T0 + 4 * M, now=T0 + 4 * M)
    assert cleared is not None
    assert writer.write([cleared]) == 1
    row = store.get_alert(conn, opened.alert.alert_id)
    assert (row.state, row.resolved_by, row.resolved_at) == (RESOLVED, "pipeline", T0 + 4 * M)
    assert _states(conn, row.alert_id) == [(None, "open", "pipeline"), ("open", "acknowledged", "support-ann"),
                                           ("acknowledged", "resolved", "pipeline")]
    notes = [t.note for t in store.transitions(conn, row.alert_id)]
    assert notes[1] == "looking into it"

    # Replaying the whole batch after a crash stores nothing new.
    assert writer.write([opened, repeat, cleared]) == 0
    assert len(store.transitions(conn, row.alert_id)) == 3
    assert store.get_alert(conn, row.alert_id).state is RESOLVED

    # Flapping: the condition back within the hold-down reopens the same alert.
    again = _fault(book, charger, T0 + 6 * M)
    assert again.alert.alert_id == opened.alert.alert_id
    assert writer.write([again]) == 1
    row = store.get_alert(conn, row.alert_id)
    assert (row.state, row.count, row.acknowledged_by, row.resolved_at) == (OPEN, 3, None, None)
    assert _states(conn, row.alert_id)[-1] == ("resolved", "open", "pipeline")
    latency = store.transitions(conn, row.alert_id)[0].latency_s
    assert latency > 0  # recorded now, for an event of 2026-06-01: a number, not a timing assertion


def test_a_user_resolves_with_a_note_and_cannot_act_on_what_is_resolved(
        conn: psycopg.Connection[Any], writer: store.AlertWriter) -> None:
    charger, book = _charger(), AlertBook()
    opened = _fault(book, charger, T0)
    writer.write([opened])
    done = store.resolve(conn, opened.alert.alert_id, "support-bob", "replaced the RCD", now=T0 + M)
    assert (done.state, done.resolved_by) == (RESOLVED, "support-bob")
    assert _states(conn, done.alert_id) == [(None, "open", "pipeline"), ("open", "resolved", "support-bob")]
    with pytest.raises(store.AlertStateError):
        store.acknowledge(conn, done.alert_id, "support-bob", None, now=T0 + 2 * M)
    with pytest.raises(store.AlertStateError):
        store.resolve(conn, done.alert_id, "pipeline", None, now=T0 + 2 * M)
    with pytest.raises(NotFoundError):
        store.acknowledge(conn, "al-does-not-exist", "support-bob", None, now=T0)
    # Acknowledging twice changes nothing the second time.
    other = _fault(AlertBook(), _charger(), T0)
    writer.write([other])
    store.acknowledge(conn, other.alert.alert_id, "u1", None, now=T0 + M)
    store.acknowledge(conn, other.alert.alert_id, "u2", None, now=T0 + 2 * M)
    assert store.get_alert(conn, other.alert.alert_id).acknowledged_by == "u1"
    assert len(store.transitions(conn, other.alert.alert_id)) == 2


def test_list_alerts_filters_and_scopes_by_charger(conn: psycopg.Connection[Any], writer: store.AlertWriter) -> None:
    site = f"site-{secrets.token_hex(3)}"
    mine, theirs = _charger(), _charger()
    conn.execute("insert into chargers (charger_id, site_id, vendor, model) values (%s, %s, 'Acme', 'X1'),"
                 " (%s, null, 'Acme', 'Z9')", (mine, site, theirs))
    book = AlertBook()
    a = _fault(book, mine, T0, site)
    b = _fault(book, theirs, T0 + M)
    spike = book.raise_(f"error_spike|site:{site}", kind="error_spike", severity=c.Severity.ERROR, ts=T0 + 2 * M,
                        now=T0 + 2 * M, message="spike", charger_id=None, site_id=site, connector_id=None,
                        hold_down=CFG.hold_down)
    info = AlertBook().raise_(f"waiting|{mine}|1", kind="waiting_for_vehicle", severity=c.Severity.INFO,
                              ts=T0 + 3 * M, now=T0 + 3 * M, message="waiting", charger_id=mine, site_id=site,
                              connector_id=1, hold_down=CFG.hold_down)
    writer.write([a, b, spike, info])
    store.acknowledge(conn, a.alert.alert_id, "u", None, now=T0 + 4 * M)

    def ids(**kw: Any) -> set[str]:
        return {r.alert_id for r in store.list_alerts(conn, **kw)}

    everything = {x.alert.alert_id for x in (a, b, spike, info)}
    assert everything <= ids(charger_ids=None)
    assert ids(charger_ids=[mine]) == {a.alert.alert_id, spike.alert.alert_id, info.alert.alert_id}
    assert ids(charger_ids=[theirs]) == {b.alert.alert_id}
    assert ids(charger_ids=[]) == set()
    scope = [mine, theirs]
    assert ids(charger_ids=scope, severities=[c.Severity.INFO]) == {info.alert.alert_id}
    assert ids(charger_ids=scope, kinds=["error_spike"]) == {spike.alert.alert_id}
    assert ids(charger_ids=scope, site_ids=[site]) == {a.alert.alert_id, spike.alert.alert_id, info.alert.alert_id}
    assert ids(charger_ids=scope, models=["Z9"]) == {b.alert.alert_id}
    assert ids(charger_ids=scope, states=[ACK]) == {a.alert.alert_id}
    assert ids(charger_ids=scope, states=[OPEN], since=T0 + 2 * M) == {spike.alert.alert_id, info.alert.alert_id}
    rows = store.list_alerts(conn, charger_ids=scope)
    assert [r.ts for r in rows] == sorted((r.ts for r in rows), reverse=True)
    assert next(r for r in rows if r.alert_id == b.alert.alert_id).model == "Z9"
