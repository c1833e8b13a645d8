-- Operational time series. Hypertables partitioned on the event time (UTC).
create table if not exists meter_samples (
    ts                  timestamptz not null,
    charger_id          text not null,
    connector_id        integer not null,
    context             text not null,
    transaction_id      text,
    energy_wh           double precision,
    power_w             double precision,
    current_a           double precision,
    current_l1_a        double precision,
    current_l2_a        double precision,
    current_l3_a        double precision,
    current_offered_a   double precision,
    voltage_v           double precision,
    soc_pct             double precision,
    temperature_c       double precision,
    quirks              text[] not null default '{}',
    received_at         timestamptz not null default now()
);
select create_hypertable('meter_samples', by_range('ts', interval '1 day'), if_not_exists => true);
-- Replays of the same reading are ignored: one row per charger, connector, instant and context.
create unique index if not exists meter_samples_natural_key
    on meter_samples (charger_id, connector_id, ts, context);

create table if not exists status_events (
    ts                  timestamptz not null,
    charger_id          text not null,
    connector_id        integer not null,
    status              text not null,
    error_code          text,
    vendor_error_code   text,
    info                text,
    received_at         timestamptz not null default now()
);
select create_hypertable('status_events', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists status_events_natural_key
    on status_events (charger_id, connector_id, ts, status);

create table if not exists connection_events (
    ts                  timestamptz not null,
    charger_id          text not null,
    kind                text not null,
    ocpp_version        text,
    reason              text,
    bridge_id           text
);
select create_hypertable('connection_events', by_range('ts', interval '7 days'), if_not_exists => true);

create table if not exists dead_letters (
    id                  bigint generated always as identity,
    ts                  timestamptz not null,
    source              text not null,
    reason              text not null,
    raw                 text not null,
    charger_id          text,
    topic               text,
    received_at         timestamptz not null default now(),
    primary key (id)
);
create index if not exists dead_letters_ts on dead_letters (ts desc);
