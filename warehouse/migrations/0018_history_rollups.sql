-- Rollups of the clean sessions' energy and costs per charger and UTC day / month, so that the
-- analytics page sums a fleet's year from about a dozen rows per charger instead of every
-- session-day (issue 7: a 1,000-charger year took 3.5-8 s). warehouse/history_rollup.py owns them.
--
-- Never stale. Triggers on sessions, session_day_energy and session_costs write a mark for every
-- (charger, day) cell a statement may change, in the writer's own transaction. A reader refreshes
-- the marked cells of its scope, then reads, in one REPEATABLE READ snapshot taken after it holds
-- the refresh lock: the figures are those of the raw tables at that snapshot. A mark belongs to
-- its transaction (xid in the key), so writers never wait for each other or for a reader here,
-- and a reader consumes only the marks its snapshot sees (whose changes it has summed).
--
-- What a day cell counts is what warehouse.history.summarize_sql counts for a calendar-year
-- filter: rows of sessions that are not excluded and overlap the row's UTC year (started before
-- its end; ended, last sampled or started at/after its start), on the session's own charger.

create table if not exists history_rollup_marks (
    charger_id          text not null,
    day                 date not null,
    kind                char(1) not null check (kind in ('d', 's')),  -- d: the day cell; s: sessions started that day
    xid                 xid8 not null,                                -- the writing transaction
    primary key (charger_id, day, kind, xid)
);

-- One row per charger, UTC day and currency ('' = none: the energy, and costs without a tariff).
create table if not exists history_rollup_day (
    charger_id              text not null,
    day                     date not null,
    currency                text not null,
    energy_wh               double precision not null default 0,
    sessions_first_in_month integer not null default 0,  -- sessions with a day row here and none earlier this month
    sessions_first_in_year  integer not null default 0,  -- ... and none earlier this year
    cost_rows               integer not null default 0,
    net_nano                bigint,                      -- sums; null when no row has an amount
    vat_nano                bigint,
    no_tariff_first_in_month integer not null default 0, -- no_tariff cost rows, counted as the sessions above
    no_tariff_first_in_year integer not null default 0,
    primary key (charger_id, day, currency)
);

-- The day cells summed per month: sessions = distinct sessions with a day row in the month.
create table if not exists history_rollup_month (
    charger_id              text not null,
    month                   date not null,
    currency                text not null,
    energy_wh               double precision not null,
    sessions                integer not null,
    sessions_first_in_year  integer not null,
    cost_rows               integer not null,
    net_nano                bigint,
    vat_nano                bigint,
    no_tariff               integer not null,
    no_tariff_first_in_year integer not null,
    primary key (charger_id, month, currency)
);

-- Clean sessions with no cost row within 31 days of a year, by start month, for each year they overlap.
create table if not exists history_rollup_uncosted (
    charger_id          text not null,
    month               date not null,   -- the month (UTC) the sessions started in
    year                integer not null,
    sessions            integer not null,
    primary key (charger_id, month, year)
);

-- The excluded sessions are read from sessions directly (listed with their reasons): few rows.
create index if not exists sessions_excluded_started on sessions (started_at) where excluded;

-- ------------------------------------------------------------------ marks
-- Each trigger sees the statement's rows as "changed" (old rows for a delete, new for an insert,
-- both for an update: two triggers). It marks their cells and every cell of the same sessions
-- (a session's first row in a month or year decides where it is counted).

create or replace function history_rollup_mark_energy() returns trigger language plpgsql as $$
begin
    insert into history_rollup_marks (charger_id, day, kind, xid)
    select c.charger_id, c.day, 'd', pg_current_xact_id() from (
        select charger_id, day from changed
        union
        select e.charger_id, e.day from session_day_energy e where e.session_id in (select session_id from changed)
    ) c
    on conflict do nothing;
    return null;
end $$;

create or replace function history_rollup_mark_costs() returns trigger language plpgsql as $$
begin
    insert into history_rollup_marks (charger_id, day, kind, xid)
    select c.charger_id, c.day, c.kind, pg_current_xact_id() from (
        select charger_id, day, 'd' as kind from changed
        union
        select k.charger_id, k.day, 'd' from session_costs k where k.session_id in (select session_id from changed)
        union
        select s.charger_id, (s.started_at at time zone 'UTC')::date, 's' from sessions s
        where s.session_id in (select session_id from changed)
    ) c
    on conflict do nothing;
    return null;
end $$;

-- A new or deleted session: its start day and every day and cost row of it.
create or replace function history_rollup_mark_sessions() returns trigger language plpgsql as $$
begin
    insert into history_rollup_marks (charger_id, day, kind, xid)
    select c.charger_id, c.day, c.kind, pg_current_xact_id() from (
        select charger_id, (started_at at time zone 'UTC')::date as day, 's' as kind from changed
        union
        select e.charger_id, e.day, 'd' from session_day_energy e where e.session_id in (select session_id from changed)
        union
        select k.charger_id, k.day, 'd' from session_costs k where k.session_id in (select session_id from changed)
    ) c
    on conflict do nothing;
    return null;
end $$;

-- A changed session matters only when it is (no longer) excluded, moved in time or to another
-- charger, or now overlaps other years (an open session's last sample moves on every revision).
create or replace function history_rollup_mark_session_updates() returns trigger language plpgsql as $$
begin
    with moved as (
        select o.session_id, o.charger_id as old_charger, n.charger_id as new_charger,
               (o.started_at at time zone 'UTC')::date as old_day, (n.started_at at time zone 'UTC')::date as new_day
        from old_rows o join new_rows n using (session_id)
        where o.excluded is distinct from n.excluded or o.started_at <> n.started_at or o.charger_id <> n.charger_id
           or extract(year from coalesce(o.ended_at, o.last_sample_at, o.started_at) at time zone 'UTC')
              <> extract(year from coalesce(n.ended_at, n.last_sample_at, n.started_at) at time zone 'UTC')
    )
    insert into history_rollup_marks (charger_id, day, kind, xid)
    select c.charger_id, c.day, c.kind, pg_current_xact_id() from (
        select old_charger as charger_id, old_day as day, 's' as kind from moved
        union
        select new_charger, new_day, 's' from moved
        union
        select e.charger_id, e.day, 'd' from session_day_energy e where e.session_id in (select session_id from moved)
        union
        select k.charger_id, k.day, 'd' from session_costs k where k.session_id in (select session_id from moved)
    ) c
    on conflict do nothing;
    return null;
end $$;

drop trigger if exists history_rollup_energy_insert on session_day_energy;
create trigger history_rollup_energy_insert after insert on session_day_energy
    referencing new table as changed for each statement execute function history_rollup_mark_energy();
drop trigger if exists history_rollup_energy_delete on session_day_energy;
create trigger history_rollup_energy_delete after delete on session_day_energy
    referencing old table as changed for each statement execute function history_rollup_mark_energy();
drop trigger if exists history_rollup_energy_update_old on session_day_energy;
create trigger history_rollup_energy_update_old after update on session_day_energy
    referencing old table as changed for each statement execute function history_rollup_mark_energy();
drop trigger if exists history_rollup_energy_update_new on session_day_energy;
create trigger history_rollup_energy_update_new after update on session_day_energy
    referencing new table as changed for each statement execute function history_rollup_mark_energy();

drop trigger if exists history_rollup_costs_insert on session_costs;
create trigger history_rollup_costs_insert after insert on session_costs
    referencing new table as changed for each statement execute function history_rollup_mark_costs();
drop trigger if exists history_rollup_costs_delete on session_costs;
create trigger history_rollup_costs_delete after delete on session_costs
    referencing old table as changed for each statement execute function history_rollup_mark_costs();
drop trigger if exists history_rollup_costs_update_old on session_costs;
create trigger history_rollup_costs_update_old after update on session_costs
    referencing old table as changed for each statement execute function history_rollup_mark_costs();
drop trigger if exists history_rollup_costs_update_new on session_costs;
create trigger history_rollup_costs_update_new after update on session_costs
    referencing new table as changed for each statement execute function history_rollup_mark_costs();

drop trigger if exists history_rollup_sessions_insert on sessions;
create trigger history_rollup_sessions_insert after insert on sessions
    referencing new table as changed for each statement execute function history_rollup_mark_sessions();
drop trigger if exists history_rollup_sessions_delete on sessions;
create trigger history_rollup_sessions_delete after delete on sessions
    referencing old table as changed for each statement execute function history_rollup_mark_sessions();
drop trigger if exists history_rollup_sessions_update on sessions;
create trigger history_rollup_sessions_update after update on sessions
    referencing old table as old_rows new table as new_rows for each statement
    execute function history_rollup_mark_session_updates();

-- What is already stored: every cell marked (the first refresh, `flowbank maintain` or a page, sums it).
insert into history_rollup_marks (charger_id, day, kind, xid)
select charger_id, day, 'd', pg_current_xact_id() from session_day_energy
union
select charger_id, day, 'd', pg_current_xact_id() from session_costs
union
select charger_id, (started_at at time zone 'UTC')::date, 's', pg_current_xact_id() from sessions
on conflict do nothing;
