-- Registries the bridge needs: chargers (with hashed Basic-auth passwords), their connectors,
-- and the OCPP 1.6 transaction id sequence (ids are assigned by us and never reused).
create table if not exists chargers (
    charger_id          text primary key check (charger_id <> '' and charger_id !~ '[/+#]'),
    password_hash       text,                      -- scrypt; null = no password set
    site_id             text,
    display_name        text,
    enabled             boolean not null default true,
    auto_registered     boolean not null default false,
    vendor              text,
    model               text,
    serial_number       text,
    firmware_version    text,
    ocpp_version        text,
    heartbeat_interval_s integer,
    last_boot_at        timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

create sequence if not exists ocpp16_transaction_id_seq as integer start with 1 minvalue 1 no cycle;
