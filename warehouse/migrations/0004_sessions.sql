-- What the streaming dataflow derives and stores (sessions, day energy, live state, data quality,
-- alerts) and the remaining contract time series (setpoints, command results). Every table has a
-- natural key so that warehouse/tsdb_writer.py can replay a batch without changing anything.

-- ------------------------------------------------------------------ sessions (newest revision)
create table if not exists sessions (
    session_id          text primary key,
    charger_id          text not null,
    connector_id        integer not null,
    transaction_id      text not null,
    site_id             text,
    state               text not null,
    revision            bigint not null check (revision >= 0),
    started_at          timestamptz not null,
    ended_at            timestamptz,
    energy_wh           double precision not null check (energy_wh >= 0),
    id_tag              text,
    meter_start_wh      double precision,
    meter_stop_wh       double precision,
    peak_power_w        double precision,
    avg_power_w         double precision,
    duration_s          double precision not null default 0,
    charging_s          double precision not null default 0,
    idle_s              double precision not null default 0,
    stop_reason         text,
    mode                text,
    flags               text[] not null default '{}',
    -- Keep in step with control.records.EXCLUDING_FLAGS (tests/integration/test_tsdb_writer.py
    -- checks every QualityFlag); a change there needs a new migration re-creating this column.
    excluded            boolean generated always as (
        flags && '{non_monotonic_register,implausible_power,lifetime_register_as_session,abandoned,no_energy_data}'::text[]
    ) stored,
    sample_count        integer not null default 0,
    last_sample_at      timestamptz,
    written_at          timestamptz not null default now(),  -- when this revision was stored
    check (ended_at is null or ended_at >= started_at)
);
create index if not exists sessions_charger_started on sessions (charger_id, started_at);
create index if not exists sessions_site_started on sessions (site_id, started_at);
create index if not exists sessions_started on sessions (started_at);

-- A session's energy per UTC day. All rows of a session carry the same revision: a higher one
-- replaces the whole set.
create table if not exists session_day_energy (
    session_id          text not null,
    charger_id          text not null,
    day                 date not null,
    energy_wh           double precision not null,
    revision            bigint not null,
    primary key (session_id, day)
);
create index if not exists session_day_energy_day_charger on session_day_energy (day, charger_id);

-- ------------------------------------------------------------------ live state (newest wins)
create table if not exists live_state (
    charger_id          text not null,
    connector_id        integer not null,
    status              text not null,
    updated_at          timestamptz not null,
    last_seen_at        timestamptz,
    connector_status    text,
    power_w             double precision,
    current_a           double precision,
    session_id          text,
    session_started_at  timestamptz,
    session_energy_wh   double precision,
    soc_pct             double precision,
    error_code          text,
    online              boolean not null default true,
    primary key (charger_id, connector_id)
);

-- ------------------------------------------------------------------ data quality
-- One row per expectation per validation run (Great Expectations). expectation_id is stable
-- within a suite (GX's expectation id, or a hash of type and kwargs), so a re-stored run is a no-op.
create table if not exists data_quality_results (
    run_id              text not null,
    asset               text not null,          -- table or data asset validated
    expectation_id      text not null,
    expectation_type    text not null,          -- e.g. expect_column_values_to_not_be_null
    suite               text,
    column_name         text,
    kwargs              jsonb not null default '{}',
    success             boolean not null,
    observed            jsonb,                  -- observed_value, unexpected_count, partial list...
    ran_at              timestamptz not null,
    primary key (run_id, asset, expectation_id)
);
create index if not exists data_quality_results_asset_ran on data_quality_results (asset, ran_at desc);

-- Verdicts of the quality gate on raw samples (set by the writer from SampleVerdict records),
-- and the bridge's receive stamp (contract field received_at; received_at here is storage time).
alter table meter_samples add column if not exists quality_flags text[] not null default '{}';
alter table meter_samples add column if not exists session_id text;
alter table meter_samples add column if not exists bridge_received_at timestamptz;
alter table status_events add column if not exists bridge_received_at timestamptz;

-- connection_events had no natural key: replays duplicated rows. Same instant, same kind, same
-- charger is the same event (duplicates of one ts always share a chunk, hence the tableoid test).
alter table connection_events add column if not exists heartbeat_interval_s integer;
delete from connection_events a using connection_events b
 where a.tableoid = b.tableoid and a.ctid > b.ctid
   and a.charger_id = b.charger_id and a.ts = b.ts and a.kind = b.kind;
create unique index if not exists connection_events_natural_key on connection_events (charger_id, ts, kind);

-- dead_letters had no natural key either: the writer stores a SHA-256 of the whole letter.
-- raw_bytes holds the exact UTF-8 only when raw had NUL characters (text cannot store them).
alter table dead_letters add column if not exists fingerprint bytea;
alter table dead_letters add column if not exists raw_bytes bytea;
create unique index if not exists dead_letters_fingerprint on dead_letters (fingerprint);

-- ------------------------------------------------------------------ alerts (current state)
create table if not exists alerts (
    alert_id            text primary key,
    kind                text not null,
    severity            text not null,
    ts                  timestamptz not null,
    message             text not null,
    state               text not null,
    charger_id          text,
    site_id             text,
    count               integer not null default 1,
    updated_at          timestamptz not null default now()  -- when this row last changed
);
create index if not exists alerts_state_ts on alerts (state, ts desc);
create index if not exists alerts_charger_ts on alerts (charger_id, ts desc);

-- ------------------------------------------------------------------ control time series
create table if not exists setpoints (
    ts                  timestamptz not null,
    decision_id         text not null,
    site_id             text not null,
    charger_id          text not null,
    connector_id        integer not null,
    -- The contract's limit + unit, with the unit in the column name (as in the Parquet lake):
    -- exactly one of limit_a / limit_w is set.
    limit_a             double precision,
    limit_w             double precision,
    previous_limit_a    double precision,
    previous_limit_w    double precision,
    phases              integer,
    reason              text not null,
    check ((limit_a is null) <> (limit_w is null))
);
select create_hypertable('setpoints', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists setpoints_natural_key on setpoints (charger_id, connector_id, decision_id, ts);

create table if not exists command_results (
    ts                  timestamptz not null,
    command_id          text not null,
    charger_id          text not null,
    outcome             text not null,
    status              text,
    detail              text,
    payload             jsonb not null default '{}'
);
select create_hypertable('command_results', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists command_results_natural_key on command_results (command_id, ts);
create index if not exists command_results_charger_ts on command_results (charger_id, ts desc);
