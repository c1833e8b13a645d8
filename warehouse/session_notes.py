"""Notes on sessions (migration 0014). Who may see or add them is decided above (dashboards)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection

MAX_NOTE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SessionNote:
    note_id: int
    session_id: str
    user_id: str | None
    author: str | None
    created_at: datetime
    body: str


def add_note(conn: Connection, session_id: str, user_id: str, body: str, *, now: datetime) -> SessionNote:
    text = body.strip()
    if not text:
        raise ValueError("a note needs some text")
    if len(text) > MAX_NOTE_CHARS:
        raise ValueError(f"a note is at most {MAX_NOTE_CHARS} characters (this one has {len(text)})")
    row = conn.execute("insert into session_notes (session_id, user_id, created_at, body) values (%s, %s, %s, %s)"
                       " returning note_id", (session_id, user_id, now, text)).fetchone()
    if row is None:
        raise RuntimeError("insert ... returning gave no row")
    return SessionNote(int(row[0]), session_id, user_id, None, now, text)


def notes_for(conn: Connection, session_id: str) -> list[SessionNote]:
    rows = conn.execute(
        "select n.note_id, n.session_id, n.user_id, u.display_name, n.created_at, n.body from session_notes n"
        " left join users u on u.user_id = n.user_id where n.session_id = %s order by n.created_at, n.note_id",
        (session_id,)).fetchall()
    return [SessionNote(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
