-- Fleet departure planning: when a vehicle on a connector must leave, and with how much. The
-- dataflow raises the connector to the "deadline at risk" priority class when its current share
-- would not deliver the energy in time.
create table if not exists departures (
    charger_id          text not null,
    connector_id        integer not null check (connector_id >= 0),
    departure_at        timestamptz not null,
    target_soc_pct      double precision check (target_soc_pct > 0 and target_soc_pct <= 100),
    battery_wh          double precision check (battery_wh > 0),
    energy_wh           double precision check (energy_wh > 0),   -- or: this much energy (when SoC is unknown)
    set_by              text,
    updated_at          timestamptz not null default now(),
    primary key (charger_id, connector_id),
    check ((target_soc_pct is not null and battery_wh is not null) or energy_wh is not null)
);
