-- Notes people add to a session ("reimbursed", "charged the van for the trip to Lyon").
-- Raw session rows stay untouched; notes live beside them.
create table if not exists session_notes (
    note_id             bigint generated always as identity primary key,
    session_id          text not null,
    user_id             text references users (user_id) on delete set null,
    created_at          timestamptz not null,
    body                text not null check (length(body) between 1 and 2000)
);
create index if not exists session_notes_session on session_notes (session_id, created_at);
