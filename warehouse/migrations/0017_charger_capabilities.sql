-- What each charger can take in a charging profile, asked by the bridge once per boot (OCPP 1.6
-- GetConfiguration / 2.0.1 GetVariables, ingest/capabilities.py) and shared by every bridge
-- process: a charger may reconnect to another one. One row per charger, the newest answer.
-- A value the charger did not give is null (the bridge then uses a safe default, and says so
-- in notes); raw keeps the answer as it came, or the error.
create table if not exists charger_capabilities (
    charger_id          text primary key references chargers (charger_id) on delete cascade,
    ocpp_version        text not null check (ocpp_version in ('1.6', '2.0.1')),
    firmware_version    text,                      -- as the boot before the question said
    learned_at          timestamptz not null,
    answered            boolean not null,          -- false: no answer, or an error (every value null)
    rate_units          text[] check (rate_units <@ array['A', 'W']::text[] and cardinality(rate_units) > 0),
    max_stack_level     integer check (max_stack_level >= 0),
    max_periods         integer check (max_periods >= 1),
    max_profiles        integer check (max_profiles >= 0),  -- 1.6 MaxChargingProfilesInstalled
    phases              integer check (phases between 0 and 3),  -- AC phases; 0 = DC (2.0.1 SupplyPhases)
    connectors          integer check (connectors >= 0),
    smart_charging      boolean,                   -- 1.6 SmartCharging profile; 2.0.1 Available and Enabled
    notes               text[] not null default '{}',
    raw                 jsonb not null,
    bridge_id           text not null
);

-- The last charge-point-wide profile (ChargePointMaxProfile / ChargingStationMaxProfile) each
-- charger accepted: such profiles live in the charger's flash, so the bridge writes them at most
-- once per interval per charger (a lower limit always goes at once). limit_value null: cleared.
create table if not exists charger_max_profile_writes (
    charger_id          text primary key references chargers (charger_id) on delete cascade,
    written_at          timestamptz not null,
    limit_value         double precision check (limit_value >= 0),
    rate_unit           text check (rate_unit in ('A', 'W')),
    command_id          text not null
);
