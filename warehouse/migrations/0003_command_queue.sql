-- Commands for chargers, shared by every bridge process. Each bridge subscribes to all commands
-- and inserts them here (the first insert wins); the bridge that holds the charger's connection
-- claims them atomically and in order; a periodic sweep on any bridge claims the ones that
-- expired unclaimed. A row is finished exactly once (finished_at), which is what makes "exactly
-- one CommandResult per command" hold across processes.
create table if not exists command_queue (
    command_id          text primary key,
    seq                 bigint generated always as identity,   -- arrival order (tie-break)
    charger_id          text not null,
    kind                text not null,
    payload             jsonb not null,                       -- the command's contract envelope
    issued_at           timestamptz not null,
    expires_at          timestamptz not null,
    received_at         timestamptz not null default now(),
    claimed_by          text,
    claimed_at          timestamptz,
    outcome             text,
    status              text,
    detail              text,
    finished_at         timestamptz
);
create index if not exists command_queue_waiting
    on command_queue (charger_id, issued_at, seq) where claimed_by is null;
create index if not exists command_queue_expiring
    on command_queue (expires_at) where claimed_by is null;
create index if not exists command_queue_in_flight
    on command_queue (claimed_at) where claimed_by is not null and finished_at is null;

-- Which bridge holds which charger right now (best effort: a crashed bridge leaves rows behind
-- until it restarts under the same bridge id). Used to tell OFFLINE from EXPIRED.
create table if not exists charger_presence (
    charger_id          text primary key,
    bridge_id           text not null,
    connected_at        timestamptz not null
);
