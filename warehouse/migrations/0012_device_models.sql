-- Device models the simulator's BootNotification reports (vendor "FlowBankSim", ingest/sim/plan.py),
-- with their hardware limits and V2G readiness, and the owners' V2G preferences (the Device & V2G
-- page: "Notify me", and the discharge settings that stay locked until every prerequisite is met).
insert into device_models (vendor, model, max_current_a, phases, bidirectional, notes) values
    ('FlowBankSim', 'SIM-AC7', 32, 1, 'not_supported', 'Simulated 7.4 kW single-phase AC wallbox'),
    ('FlowBankSim', 'SIM-AC11', 16, 3, 'not_supported', 'Simulated 11 kW three-phase AC wallbox'),
    ('FlowBankSim', 'SIM-AC22', 32, 3, 'coming_soon', 'Simulated 22 kW AC; bidirectional firmware announced'),
    ('FlowBankSim', 'SIM-DC50', 125, 3, 'ready', 'Simulated 50 kW DC, bidirectional (ISO 15118-20)')
on conflict (vendor, model) do nothing;

create table if not exists v2g_preferences (
    user_id                 text not null references users (user_id) on delete cascade,
    charger_id              text not null references chargers (charger_id) on delete cascade,
    notify                  boolean not null default false,   -- "Notify me" when V2G becomes possible
    vehicle_bidirectional   boolean not null default false,   -- the owner says the car supports V2G
    grid_approved           boolean not null default false,   -- the grid operator approved feeding in
    discharge_start         time,                              -- local time window for discharging
    discharge_end           time,
    min_soc_pct             double precision check (min_soc_pct between 0 and 100),
    price_threshold_eur_kwh double precision check (price_threshold_eur_kwh >= 0),
    updated_at              timestamptz not null default now(),
    primary key (user_id, charger_id)
);
