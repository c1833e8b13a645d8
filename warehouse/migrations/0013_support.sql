-- The support console (issue 6): remote troubleshooting actions and their results, diagnostic
-- files uploaded by chargers, the fault-code knowledge base, tickets (RMA path), and the
-- bridge's bounded per-charger OCPP frame log.
--
-- Writers: dashboards/support_service.py through warehouse/support_store.py (actions, guides,
-- tickets); the upload receiver ingest/upload_server.py (diagnostic_files); the bridge
-- (ocpp_frames, trimmed per charger by warehouse/support_store.record_frames).

-- ------------------------------------------------------------------ troubleshooting actions
-- One row per action a user started from the console, with the reply it got at once; the final
-- result (when it came later) is in command_results, joined by command_id.
create table if not exists support_actions (
    action_id           bigint generated always as identity primary key,
    ts                  timestamptz not null,
    user_id             text not null,
    charger_id          text not null,
    connector_id        integer,
    action              text not null,          -- warehouse.command_api.Action value
    params              jsonb not null default '{}',
    command_id          text,                   -- null: refused before anything was sent
    reply_state         text not null,          -- done | no_result_yet | not_sent
    outcome             text,                   -- accepted | rejected | failed | ...
    status              text,
    detail              text,
    payload             jsonb not null default '{}',  -- e.g. the configuration read back
    summary             text not null           -- the sentence shown to the user
);
create index if not exists support_actions_charger_ts on support_actions (charger_id, ts desc);

-- ------------------------------------------------------------------ diagnostic files
-- Files a charger uploaded (GetDiagnostics / GetLog) to the upload receiver; the bytes are kept
-- under <data_dir>/uploads/<charger_id>/, path is relative to <data_dir>/uploads.
create table if not exists diagnostic_files (
    file_id             bigint generated always as identity primary key,
    charger_id          text not null,
    file_name           text not null,
    path                text not null unique,
    size_bytes          bigint not null check (size_bytes >= 0),
    sha256              text not null,
    content_type        text,
    received_at         timestamptz not null
);
create index if not exists diagnostic_files_charger on diagnostic_files (charger_id, received_at desc);

-- ------------------------------------------------------------------ knowledge base
-- Guided steps per fault code (OCPP 1.6 ChargePointErrorCode and others); editable by support.
create table if not exists fault_guides (
    code                text primary key,
    title               text not null,
    steps               text[] not null,
    remote_fixable      boolean not null default false,
    updated_by          text not null default 'seed',
    updated_at          timestamptz not null default now()
);

insert into fault_guides (code, title, steps, remote_fixable) values
('GroundFailure', 'Ground fault (residual current) detected', array[
  'Ask the driver to unplug the vehicle and check the cable and plug for damage or moisture.',
  'Soft reset the charger; if the fault returns at once, do not try again remotely.',
  'If it trips again, mark the charger Inoperative and send an electrician to test the RCD and earthing (RMA path if the RCD module is faulty).'], false),
('OverCurrentFailure', 'The vehicle drew more current than offered', array[
  'Check the load-management limit in force for this charger (Load page) against the vehicle''s onboard charger.',
  'Soft reset the charger and ask the driver to start a new session.',
  'If it repeats with several vehicles, request diagnostics and open a ticket: the current measurement may be faulty.'], true),
('ConnectorLockFailure', 'The connector lock did not engage or release', array[
  'Unlock the connector remotely and ask the driver to re-seat the plug firmly.',
  'Check the socket for debris or a bent lock pin (photo from the driver helps).',
  'If unlocking fails repeatedly, mark the connector Inoperative and plan a site visit to replace the lock actuator.'], true),
('EVCommunicationError', 'The charger and the vehicle could not talk (control pilot)', array[
  'Ask the driver to unplug, wait 30 seconds and plug in again; some vehicles need a restart of their charging schedule.',
  'Trigger a StatusNotification to see the connector state now.',
  'If several vehicles fail on this charger, request diagnostics and check the cable (RMA path for a damaged cable).'], true),
('HighTemperature', 'The charger is too hot and limits or stops charging', array[
  'Check the site temperature and whether the enclosure is in direct sun or its vents are blocked.',
  'Lower the charger''s limit for now; it resumes once it has cooled down.',
  'If it happens in normal weather, request diagnostics and schedule a fan or thermal sensor check.'], false),
('PowerMeterFailure', 'The energy meter does not answer', array[
  'Trigger MeterValues: if no values come back, the meter is not read.',
  'Soft reset the charger; if the fault stays, hard reset it.',
  'Sessions during the fault may be missing energy: flag them for billing review and open a ticket (RMA path for the meter).'], true),
('ReaderFailure', 'The RFID reader failed', array[
  'Drivers can still start remotely from the app while the reader is down.',
  'Soft reset the charger.',
  'If the reader stays down, request diagnostics and plan a reader replacement.'], true),
('PowerSwitchFailure', 'The contactor (power switch) failed', array[
  'Mark the charger Inoperative so nobody starts a session.',
  'Request diagnostics, then hard reset once.',
  'A contactor that does not open is a safety issue: send a technician, RMA path.'], false),
('UnderVoltage', 'Supply voltage too low', array[
  'Check the site''s other chargers: if all report it, the supply or the main breaker is the cause.',
  'Ask the site to check the installation; the charger recovers by itself when the voltage is back.'], false),
('OverVoltage', 'Supply voltage too high', array[
  'Check the site''s other chargers: if all report it, contact the grid operator or electrician.',
  'The charger recovers by itself when the voltage is normal again.'], false),
('WeakSignal', 'Weak mobile or Wi-Fi signal', array[
  'Look at the charger timeline for frequent disconnects.',
  'Ask the site to check the antenna or move the router; consider a wired connection.'], false),
('InternalError', 'Internal error in the charger', array[
  'Request diagnostics so the vendor can read the logs.',
  'Soft reset, then hard reset if the fault stays.',
  'If it stays after a hard reset, open a ticket with the diagnostics for the vendor (RMA path).'], true),
('LocalListConflict', 'Local authorization list conflict', array[
  'The charger''s local list disagrees with the back office; the next list update fixes it.',
  'Soft reset the charger if drivers are refused.'], true),
('OtherError', 'Vendor-specific error', array[
  'Read the vendor error code and info on the timeline.',
  'Request diagnostics and check the vendor''s documentation for the code.'], false),
('charger_offline', 'The charger is offline', array[
  'Check the site''s internet connection and whether the charger has power.',
  'Commands wait until it reconnects; a charger that stays offline for hours needs a site visit.'], false)
on conflict (code) do nothing;

-- ------------------------------------------------------------------ tickets (RMA path)
create table if not exists support_tickets (
    ticket_id           text primary key,
    charger_id          text not null,
    title               text not null,
    status              text not null default 'open' check (status in ('open', 'waiting', 'closed')),
    created_by          text not null,
    created_at          timestamptz not null,
    updated_at          timestamptz not null,
    notes               text not null default ''
);
create index if not exists support_tickets_charger on support_tickets (charger_id, created_at desc);
create index if not exists support_tickets_status on support_tickets (status, updated_at desc);

create table if not exists support_ticket_alerts (
    ticket_id           text not null references support_tickets on delete cascade,
    alert_id            text not null,
    primary key (ticket_id, alert_id)
);

create table if not exists support_ticket_events (
    event_id            bigint generated always as identity primary key,
    ticket_id           text not null references support_tickets on delete cascade,
    ts                  timestamptz not null,
    user_id             text not null,
    from_status         text,
    to_status           text not null,
    note                text
);
create index if not exists support_ticket_events_ticket on support_ticket_events (ticket_id, event_id);

-- ------------------------------------------------------------------ OCPP frame log
-- The last frames of each charger, as the bridge saw them (in and out), for the timeline. Kept
-- bounded per charger by the writer (it deletes all but the newest N of the charger it wrote).
create table if not exists ocpp_frames (
    frame_id            bigint generated always as identity primary key,
    charger_id          text not null,
    ts                  timestamptz not null,
    direction           text not null check (direction in ('in', 'out')),
    frame               text not null,
    bridge_id           text
);
create index if not exists ocpp_frames_charger_ts on ocpp_frames (charger_id, ts desc, frame_id desc);
