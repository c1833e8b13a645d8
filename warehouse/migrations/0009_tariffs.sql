-- Tariffs and costs (the history/analytics issue): effective-dated energy tariffs (flat or
-- time-of-use, with currency and VAT) assigned per charger or per site, the fleet's vehicles
-- (OCPP id_tag -> vehicle name and cost centre), and the computed cost of each session per UTC
-- day (warehouse/tariff_store.py writes them; the pure model is control/tariffs.py).
-- Users, memberships, organisations and chargers.cost_centre are 0008_access.sql's.

-- ------------------------------------------------------------------ tariffs
create table if not exists tariffs (
    tariff_id           text primary key check (tariff_id <> ''),
    name                text not null,
    currency            text not null check (currency ~ '^[A-Z]{3}$'),   -- ISO 4217
    timezone            text not null default 'UTC',                      -- windows are local time here
    updated_at          timestamptz not null default now(),
    updated_by          text
);

-- The prices in force from effective_from (UTC) until the next version of the same tariff.
-- Prices are net (VAT excluded), per kWh, at most 6 decimals.
create table if not exists tariff_versions (
    tariff_id           text not null references tariffs (tariff_id) on delete cascade,
    effective_from      timestamptz not null,
    base_price_per_kwh  numeric(14, 6) not null check (base_price_per_kwh >= 0),
    vat_rate            numeric(6, 4) not null check (vat_rate >= 0 and vat_rate < 1),  -- 0.19 for 19 %
    base_label          text not null default 'standard',
    primary key (tariff_id, effective_from)
);

-- Time-of-use windows of a version: the first window (by position) containing an instant sets
-- its price; weekdays are those of the window's local start date (mon..sun).
create table if not exists tariff_windows (
    tariff_id           text not null,
    effective_from      timestamptz not null,
    position            integer not null check (position >= 0),
    label               text not null,
    weekdays            text[] not null check (weekdays <@ '{mon,tue,wed,thu,fri,sat,sun}'::text[]
                                               and cardinality(weekdays) > 0),
    start_local         time not null,
    end_local           time not null,                 -- <= start_local: crosses midnight
    price_per_kwh       numeric(14, 6) not null check (price_per_kwh >= 0),
    primary key (tariff_id, effective_from, position),
    foreign key (tariff_id, effective_from) references tariff_versions (tariff_id, effective_from) on delete cascade
);

-- Which tariff prices a charger: its own assignment, else its site's. Not dated: price changes
-- are versions of the tariff.
create table if not exists tariff_assignments (
    scope_kind          text not null check (scope_kind in ('charger', 'site')),
    scope_id            text not null,
    tariff_id           text not null references tariffs (tariff_id) on delete cascade,
    updated_at          timestamptz not null default now(),
    updated_by          text,
    primary key (scope_kind, scope_id)
);

-- ------------------------------------------------------------------ fleet vehicles
-- A vehicle is known by the id_tag (RFID card, app token) it charges with; its cost centre wins
-- over the charger's (chargers.cost_centre) when reports allocate a session.
create table if not exists vehicles (
    id_tag              text primary key check (id_tag <> ''),
    vehicle_id          text not null,
    name                text not null,
    cost_centre         text,
    org_id              text,
    updated_at          timestamptz not null default now()
);
create index if not exists vehicles_cost_centre on vehicles (cost_centre);

-- ------------------------------------------------------------------ computed costs
-- One row per session and UTC day it drew energy on: the energy priced that day and its amount,
-- in integer nano-units of the currency (1e-9), exact sums everywhere (SQL, Python, DuckDB).
-- A session (or month) is rounded once, half up to the currency's minor unit, from the sum of its
-- rows. tariff_id null = no tariff (status no_tariff, amounts null: "Add tariff to compute cost").
create table if not exists session_costs (
    session_id          text not null,
    day                 date not null,
    charger_id          text not null,
    site_id             text,
    user_id             text,                     -- whose token started it (user_tokens), at costing time
    cost_centre         text,                     -- the vehicle's, else the charger's, at costing time
    session_revision    bigint not null,          -- the session revision that was costed
    cost_revision       bigint not null,          -- the costing run (microseconds since the epoch): newest wins
    tariff_id           text,
    currency            text,
    status              text not null check (status in ('costed', 'partial', 'no_tariff')),
    energy_wh           double precision not null,  -- from the meter curve, that day
    costed_energy_wh    double precision not null,  -- of which priced (before a tariff's first version: not)
    net_nano            bigint,                     -- net amount, 1e-9 currency units
    vat_nano            bigint,                     -- VAT on it, 1e-9 currency units
    computed_at         timestamptz not null default now(),
    primary key (session_id, day),
    check ((tariff_id is null) = (status = 'no_tariff')),
    check ((net_nano is null) = (tariff_id is null) and (vat_nano is null) = (tariff_id is null))
);
create index if not exists session_costs_day_charger on session_costs (day, charger_id);

-- ------------------------------------------------------------------ scheduled reports
-- A recurring report of a user (scope: the chargers they are a member of) or an organisation
-- (the chargers at its sites), written to out_dir/<schedule_id>/ after each period ends
-- (`flowbank report scheduled run`, from cron or a systemd timer).
create table if not exists report_schedules (
    schedule_id         text primary key check (schedule_id <> '' and schedule_id !~ '[/\\]'),
    kind                text not null check (kind in ('owner', 'fleet', 'cost-sharing', 'reimbursement')),
    owner_kind          text not null check (owner_kind in ('user', 'org')),
    owner_id            text not null,
    every               text not null check (every in ('month', 'week')),
    formats             text[] not null default '{pdf,csv}' check (formats <@ '{pdf,csv}'::text[]),
    group_by            text[] not null default '{}',
    out_dir             text not null,
    email               text,                       -- not sent yet: delivery is to the folder
    last_period_start   date,                       -- the newest period written
    created_at          timestamptz not null default now(),
    check (kind <> 'reimbursement' or owner_kind = 'user')
);
