-- Load management (the control issue): what operators and owners configure (sites with their
-- circuit trees and rules, charging modes, operator limits), what comes in from meters (building
-- load) and what the dataflow decides and checks (the audit log of decisions, setpoint compliance).
-- Configuration rows carry updated_at: the dataflow polls for changes and re-decides at once.

-- ------------------------------------------------------------------ configuration
create table if not exists sites (
    site_id             text primary key check (site_id <> '' and site_id !~ '[/+#]'),
    name                text not null,
    timezone            text not null default 'UTC',
    config              jsonb not null,                       -- control.site.site_from_mapping shape
    rules               jsonb not null default '[]'::jsonb,   -- control.rules, in order (first match wins)
    enabled             boolean not null default true,
    updated_at          timestamptz not null default now(),
    updated_by          text
);

create table if not exists connector_modes (
    charger_id          text not null,
    connector_id        integer not null check (connector_id >= 0),
    mode                text not null check (mode in ('standard', 'eco', 'boost')),
    updated_at          timestamptz not null default now(),
    updated_by          text,
    primary key (charger_id, connector_id)
);

-- Every accepted or refused mode request (Boost needs a confirmation; its use is recorded).
create table if not exists mode_changes (
    ts                  timestamptz not null,
    charger_id          text not null,
    connector_id        integer not null,
    old_mode            text,
    new_mode            text not null,
    accepted            boolean not null,
    confirmed           boolean not null default false,
    requested_by        text,
    message             text not null
);
create index if not exists mode_changes_charger_ts on mode_changes (charger_id, ts desc);

create table if not exists operator_limits (
    limit_id            text primary key,
    site_id             text not null,
    charger_id          text,                                 -- null = the whole site
    limit_a             double precision not null check (limit_a >= 0),
    starts_at           timestamptz not null,
    ends_at             timestamptz,                          -- null = until cleared
    source              text not null,                        -- "operator-api", "ocpp", "dashboard", ...
    reason              text,
    created_by          text,
    updated_at          timestamptz not null default now(),
    check (ends_at is null or ends_at > starts_at)
);
create index if not exists operator_limits_site on operator_limits (site_id, ends_at);

-- ------------------------------------------------------------------ inputs
create table if not exists building_loads (
    ts                  timestamptz not null,
    site_id             text not null,
    circuit_id          text,
    power_w             double precision not null,
    current_l1_a        double precision,
    current_l2_a        double precision,
    current_l3_a        double precision,
    source              text
);
select create_hypertable('building_loads', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists building_loads_natural_key
    on building_loads (site_id, coalesce(circuit_id, ''), coalesce(source, ''), ts);

-- ------------------------------------------------------------------ decisions and their checks
-- One row per connector whose limit a decision changed (or paused), with the reason a person
-- reads, the rule that matched, and every input with its age: the audit log.
create table if not exists control_decisions (
    ts                  timestamptz not null,
    decision_id         text not null,
    site_id             text not null,
    charger_id          text not null,
    connector_id        integer not null,
    old_limit_a         double precision,
    new_limit_a         double precision not null,
    paused              boolean not null default false,
    reason              text not null,
    binding             text,                                  -- the constraint that bound: site, circuit:X, hardware, rule:...
    site_state          text not null,                         -- normal / safe_fallback / ...
    inputs              jsonb not null default '{}'::jsonb,    -- {"name": {"value": ..., "age_s": ...}}
    command_id          text
);
select create_hypertable('control_decisions', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists control_decisions_natural_key
    on control_decisions (decision_id, charger_id, connector_id, ts);
create index if not exists control_decisions_site_ts on control_decisions (site_id, ts desc);

-- After a setpoint, the charger's measured current in the following samples against the limit.
create table if not exists setpoint_compliance (
    ts                  timestamptz not null,                  -- when the verdict was reached
    decision_id         text not null,
    site_id             text not null,
    charger_id          text not null,
    connector_id        integer not null,
    limit_a             double precision not null,
    measured_a          double precision,
    verdict             text not null check (verdict in ('compliant', 'late', 'violated', 'rejected')),
    reaction_s          double precision,                      -- setpoint sent -> first compliant sample
    command_id          text
);
select create_hypertable('setpoint_compliance', by_range('ts', interval '7 days'), if_not_exists => true);
create unique index if not exists setpoint_compliance_natural_key
    on setpoint_compliance (decision_id, charger_id, connector_id, ts);

-- The audit log as people read it: each decision with its command's outcome.
create or replace view control_audit as
select d.ts, d.site_id, d.charger_id, d.connector_id, d.old_limit_a, d.new_limit_a, d.paused, d.reason,
       d.binding, d.site_state, d.inputs, d.decision_id, d.command_id,
       r.outcome as command_outcome, r.status as command_status, r.ts as command_result_at
from control_decisions d
left join lateral (
    select outcome, status, ts from command_results r
    where r.command_id = d.command_id order by ts limit 1
) r on true;

-- Compliance per charger model (installers and fleet managers compare hardware).
create or replace view setpoint_compliance_by_model as
select coalesce(c.vendor, '?') as vendor, coalesce(c.model, '?') as model,
       count(*) as checks,
       count(*) filter (where s.verdict = 'compliant') as compliant,
       count(*) filter (where s.verdict = 'late') as late,
       count(*) filter (where s.verdict = 'violated') as violated,
       count(*) filter (where s.verdict = 'rejected') as rejected,
       percentile_cont(0.5) within group (order by s.reaction_s) as reaction_p50_s
from setpoint_compliance s
left join chargers c using (charger_id)
group by 1, 2;
