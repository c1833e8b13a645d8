-- Alert lifecycle: what the alerts table needs beyond the contract's Alert, the transition log, and
-- the rule that keeps a user's acknowledgement when the pipeline re-emits a still-open alert.
--
-- Writers: the dataflow (warehouse/alert_store.AlertWriter, and warehouse/tsdb_writer for alerts
-- from other paths) upserts with "the later (ts, count, state) wins"; support users go through
-- warehouse/alert_store (acknowledge, resolve), which set the transaction-local setting
-- flowbank.alert_actor to the user's id. A pipeline write (no actor set) never turns an alert a
-- user acknowledged back to open: its count, ts and message still update. (A state written as
-- 'acknowledged' by a pipeline writer, with no user, keeps the old "later wins" rule.)

alter table alerts add column if not exists dedupe_key text;
alter table alerts add column if not exists connector_id integer;
alter table alerts add column if not exists first_seen timestamptz;      -- ts when first stored
alter table alerts add column if not exists last_seen timestamptz;       -- the latest ts stored
alter table alerts add column if not exists acknowledged_at timestamptz;
alter table alerts add column if not exists acknowledged_by text;
alter table alerts add column if not exists resolved_at timestamptz;
alter table alerts add column if not exists resolved_by text;
alter table alerts add column if not exists stored_at timestamptz;       -- first stored (latency = stored_at - ts)

update alerts set first_seen = ts where first_seen is null;
update alerts set last_seen = ts where last_seen is null;

create index if not exists alerts_dedupe_key on alerts (dedupe_key) where state <> 'resolved';
create index if not exists alerts_site_ts on alerts (site_id, ts desc);

create table if not exists alert_transitions (
    alert_id            text not null,
    ts                  timestamptz not null,   -- event time (pipeline) or the user's action time
    from_state          text,                   -- null: the alert was created
    to_state            text not null,
    actor               text not null,          -- 'pipeline' or a user id
    note                text,
    recorded_at         timestamptz not null default clock_timestamp(),
    check (to_state in ('open', 'acknowledged', 'resolved')),
    check (from_state is null or from_state in ('open', 'acknowledged', 'resolved'))
);
-- A replayed pipeline batch records nothing twice.
create unique index if not exists alert_transitions_natural_key
    on alert_transitions (alert_id, ts, coalesce(from_state, ''), to_state, actor);
create index if not exists alert_transitions_alert on alert_transitions (alert_id, recorded_at);

create or replace function alerts_lifecycle() returns trigger language plpgsql as $$
declare
    actor text := nullif(current_setting('flowbank.alert_actor', true), '');
begin
    if tg_op = 'INSERT' then
        new.first_seen := coalesce(new.first_seen, new.ts);
        new.last_seen := greatest(new.last_seen, new.ts);
        new.stored_at := coalesce(new.stored_at, clock_timestamp());
        if new.state = 'resolved' then
            new.resolved_at := coalesce(new.resolved_at, new.ts);
            new.resolved_by := coalesce(new.resolved_by, actor, 'pipeline');
        end if;
        return new;
    end if;
    new.first_seen := coalesce(old.first_seen, old.ts, new.ts);
    new.last_seen := greatest(old.last_seen, new.ts);
    new.stored_at := coalesce(old.stored_at, new.stored_at);
    if actor is null and old.state = 'acknowledged' and old.acknowledged_by is not null and new.state = 'open' then
        new.state := 'acknowledged';  -- the pipeline re-emitted it: the user's acknowledgement stands
    end if;
    if new.state = 'resolved' and old.state <> 'resolved' and actor is null then
        new.resolved_at := new.ts;
        new.resolved_by := 'pipeline';
    elsif new.state = 'open' and old.state = 'resolved' then
        new.resolved_at := null;  -- reopened
        new.resolved_by := null;
        new.acknowledged_at := null;
        new.acknowledged_by := null;
    end if;
    return new;
end $$;

drop trigger if exists alerts_lifecycle on alerts;
create trigger alerts_lifecycle before insert or update on alerts
    for each row execute function alerts_lifecycle();
