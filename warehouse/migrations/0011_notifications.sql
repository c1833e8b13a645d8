-- Alert delivery (issue 6): each user's notification preferences and channels, the notification
-- centre, and the delivery outbox. The pure policy is control/notify_policy.py; the SQL is
-- warehouse/notification_store.py; `flowbank notify` (pipelines/notifier.py) does the work.
--
-- The path of an alert: a trigger on `alerts` appends an `alert_events` row for every insert,
-- state change and severity rise (count increments make none), in the pipeline's own
-- transaction, so no change can be missed whatever the commit order. The trigger has no check
-- that could fail the pipeline's write: an unknown state is recorded and ignored later. The
-- notifier claims unprocessed events (FOR UPDATE SKIP LOCKED), writes the notifications and
-- outbox rows and stamps the events in one transaction; unique keys make a repeated fan-out a
-- no-op. The outbox is the source of truth for delivery: a row is claimed (FOR UPDATE SKIP
-- LOCKED) and updated in the transaction that sends it, so a notifier killed mid-send leaves the
-- row pending for the next one (at least once).

-- ------------------------------------------------------------------ preferences
create table if not exists notification_preferences (
    user_id             text primary key references users (user_id) on delete cascade,
    timezone            text not null default 'UTC',       -- for quiet hours
    -- null: the default of the role that reached the user (control.notify_policy.ROLE_DEFAULT_THRESHOLD)
    min_severity        text check (min_severity in ('info', 'warning', 'error', 'critical')),
    quiet_start         time,                               -- local wall-clock; both or neither
    quiet_end           time,
    quiet_bypass        text default 'critical'             -- null: nothing breaks quiet hours
                        check (quiet_bypass in ('info', 'warning', 'error', 'critical')),
    updated_at          timestamptz not null default now(),
    check ((quiet_start is null) = (quiet_end is null)),
    check (quiet_start is null or quiet_start <> quiet_end)
);

create table if not exists notification_channels (
    channel_id          bigint generated always as identity primary key,
    user_id             text not null references users (user_id) on delete cascade,
    kind                text not null check (kind in ('webhook', 'email', 'push')),
    target              text not null,                      -- webhook URL, e-mail address, Apprise URL
    secret              text,                               -- webhook HMAC key (required for webhooks)
    label               text,
    enabled             boolean not null default true,
    min_severity        text check (min_severity in ('info', 'warning', 'error', 'critical')),
    created_at          timestamptz not null default now(),
    check (kind <> 'webhook' or coalesce(secret, '') <> ''),
    unique (user_id, kind, target)
);

create table if not exists notification_charger_overrides (
    user_id             text not null references users (user_id) on delete cascade,
    charger_id          text not null,
    muted               boolean not null default false,
    min_severity        text check (min_severity in ('info', 'warning', 'error', 'critical')),
    channel_ids         bigint[],                           -- null: all the user's channels
    updated_at          timestamptz not null default now(),
    primary key (user_id, charger_id)
);

-- ------------------------------------------------------------------ alert events
create table if not exists alert_events (
    event_id            bigint generated always as identity primary key,
    alert_id            text not null,
    event               text not null,  -- opened, reopened, escalated, acknowledged, resolved (or a new state)
    kind                text not null,
    severity            text not null,
    state               text not null,
    message             text not null,
    charger_id          text,
    site_id             text,
    alert_ts            timestamptz not null,
    count               integer not null,
    occurred_at         timestamptz not null default clock_timestamp(),
    fanned_out_at       timestamptz                        -- null until the notifier handled it
);
create index if not exists alert_events_pending on alert_events (event_id) where fanned_out_at is null;
create index if not exists alert_events_alert on alert_events (alert_id, event_id);

create or replace function flowbank_alert_event() returns trigger language plpgsql as $$
declare
    what text;
    ranks constant text[] := array['info', 'warning', 'error', 'critical'];
begin
    if tg_op = 'INSERT' then
        what := 'opened';
    elsif new.state is distinct from old.state then
        what := case new.state when 'open' then 'reopened' else new.state end;
    elsif coalesce(array_position(ranks, new.severity), 0) > coalesce(array_position(ranks, old.severity), 0) then
        what := 'escalated';
    else
        return null;  -- a count increment or a replayed row: nothing to tell anyone
    end if;
    insert into alert_events (alert_id, event, kind, severity, state, message, charger_id, site_id, alert_ts, count)
    values (new.alert_id, what, new.kind, new.severity, new.state, new.message, new.charger_id, new.site_id,
            new.ts, new.count);
    perform pg_notify('flowbank_alert_events', new.alert_id);
    return null;
end
$$;

drop trigger if exists alerts_notify on alerts;
create trigger alerts_notify after insert or update on alerts
    for each row execute function flowbank_alert_event();

-- ------------------------------------------------------------------ notification centre
create table if not exists notifications (
    notification_id     bigint generated always as identity primary key,
    user_id             text not null references users (user_id) on delete cascade,
    event_id            bigint references alert_events (event_id) on delete set null,  -- null: a test
    event               text not null,
    alert_id            text,
    charger_id          text,
    site_id             text,
    severity            text not null,
    title               text not null,
    body                text not null,
    roles               text[] not null default '{}',      -- why this user heard of it
    created_at          timestamptz not null,
    read_at             timestamptz
);
create unique index if not exists notifications_user_event on notifications (user_id, event_id);
create index if not exists notifications_user_unread on notifications (user_id, created_at desc) where read_at is null;
create index if not exists notifications_user_created on notifications (user_id, created_at desc);

-- ------------------------------------------------------------------ delivery outbox
create table if not exists notification_outbox (
    outbox_id           bigint generated always as identity primary key,
    notification_id     bigint not null references notifications (notification_id) on delete cascade,
    user_id             text not null,
    channel_id          bigint not null references notification_channels (channel_id) on delete cascade,
    kind                text not null check (kind in ('webhook', 'email', 'push')),
    state               text not null default 'pending' check (state in ('pending', 'sent', 'failed', 'skipped')),
    attempts            integer not null default 0,
    next_attempt_at     timestamptz not null,
    last_error          text,
    last_attempt_at     timestamptz,
    sent_at             timestamptz,
    created_at          timestamptz not null,
    unique (notification_id, channel_id)
);
create index if not exists notification_outbox_due on notification_outbox (next_attempt_at) where state = 'pending';
create index if not exists notification_outbox_user on notification_outbox (user_id, created_at desc);
