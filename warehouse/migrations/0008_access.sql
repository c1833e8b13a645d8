-- People and what they may see: users, organisations, roles at three scopes (charger,
-- organisation, platform), invitations, reservations on shared chargers, installer codes, and
-- the access log. The policy itself is control/access.py; dashboards/access.py enforces it.
create extension if not exists btree_gist;   -- the reservations' no-overlap constraint

create table if not exists organisations (
    org_id              text primary key check (org_id <> ''),
    name                text not null,
    created_at          timestamptz not null default now()
);

-- Where chargers are: a site belongs to an organisation (a fleet) or to nobody (a home).
alter table sites add column if not exists org_id text references organisations (org_id) on delete set null;
alter table sites add column if not exists address text;
alter table sites add column if not exists latitude double precision check (latitude between -90 and 90);
alter table sites add column if not exists longitude double precision check (longitude between -180 and 180);

alter table chargers add column if not exists cost_centre text;
alter table chargers add column if not exists member_cap integer check (member_cap is null or member_cap >= 0);

create table if not exists users (
    user_id             text primary key check (user_id <> ''),
    email               text not null,
    display_name        text not null,
    oidc_issuer         text,                 -- who vouched for the sign-in (st.user "iss")
    oidc_subject        text,                 -- and the stable id it gave ("sub")
    time_zone           text not null default 'UTC',
    created_at          timestamptz not null default now(),
    last_login_at       timestamptz,
    disabled            boolean not null default false
);
create unique index if not exists users_email on users (lower(email));
create unique index if not exists users_oidc on users (oidc_issuer, oidc_subject) where oidc_subject is not null;

create table if not exists memberships (
    user_id             text not null references users (user_id) on delete cascade,
    charger_id          text not null references chargers (charger_id) on delete cascade,
    role                text not null check (role in ('owner', 'member')),
    created_at          timestamptz not null default now(),
    created_by          text,
    primary key (user_id, charger_id)
);
create index if not exists memberships_charger on memberships (charger_id);

create table if not exists org_memberships (
    user_id             text not null references users (user_id) on delete cascade,
    org_id              text not null references organisations (org_id) on delete cascade,
    role                text not null check (role in ('fleet_manager')),
    created_at          timestamptz not null default now(),
    primary key (user_id, org_id)
);

create table if not exists user_roles (
    user_id             text not null references users (user_id) on delete cascade,
    role                text not null check (role in ('support', 'installer', 'operator')),
    created_at          timestamptz not null default now(),
    primary key (user_id, role)
);

-- Which user an OCPP id tag (RFID card, app token) belongs to: sessions -> people.
create table if not exists user_tokens (
    id_tag              text primary key,
    user_id             text not null references users (user_id) on delete cascade,
    label               text,
    created_at          timestamptz not null default now()
);
create index if not exists user_tokens_user on user_tokens (user_id);

-- An owner invites by e-mail link or QR; only the token's SHA-256 is stored.
create table if not exists invites (
    invite_id           text primary key,
    charger_id          text not null references chargers (charger_id) on delete cascade,
    email               text not null,
    role                text not null default 'member' check (role in ('member', 'owner')),
    token_sha256        bytea not null unique,
    created_by          text not null references users (user_id) on delete cascade,
    created_at          timestamptz not null,
    expires_at          timestamptz not null,
    sent_count          integer not null default 1,
    accepted_at         timestamptz,
    accepted_by         text references users (user_id) on delete set null,
    revoked_at          timestamptz,
    check (expires_at > created_at)
);
create index if not exists invites_charger on invites (charger_id) where accepted_at is null and revoked_at is null;

create table if not exists reservations (
    reservation_id      text primary key,
    charger_id          text not null references chargers (charger_id) on delete cascade,
    user_id             text not null references users (user_id) on delete cascade,
    starts_at           timestamptz not null,
    ends_at             timestamptz not null,
    note                text,
    created_at          timestamptz not null,
    cancelled_at        timestamptz,
    check (ends_at > starts_at),
    -- Two live reservations of one charger never overlap, whatever races the application loses.
    constraint reservations_no_overlap exclude using gist (
        charger_id with =, tstzrange(starts_at, ends_at, '[)') with &&
    ) where (cancelled_at is null)
);
create index if not exists reservations_user on reservations (user_id, starts_at);

-- Installer mode is entered with a one-time code issued by support or an operator.
create table if not exists installer_codes (
    code_sha256         bytea primary key,
    site_id             text,                  -- null = any site
    issued_by           text not null references users (user_id) on delete cascade,
    issued_at           timestamptz not null,
    expires_at          timestamptz not null,
    used_at             timestamptz,
    used_by             text references users (user_id) on delete set null,
    check (expires_at > issued_at)
);

-- What a device model can do, for constraint banners and the V2G readiness badge.
create table if not exists device_models (
    vendor              text not null,
    model               text not null,
    max_current_a       double precision check (max_current_a > 0),
    phases              integer check (phases in (1, 3)),
    bidirectional       text not null default 'not_supported'
                        check (bidirectional in ('ready', 'not_supported', 'coming_soon')),
    notes               text,
    primary key (vendor, model)
);

-- Every action a person took or was refused, and sign-ins: the access log.
create table if not exists access_log (
    ts                  timestamptz not null,
    user_id             text,
    action              text not null,
    charger_id          text,
    allowed             boolean not null,
    detail              text
);
create index if not exists access_log_user_ts on access_log (user_id, ts desc);
create index if not exists access_log_charger_ts on access_log (charger_id, ts desc);
