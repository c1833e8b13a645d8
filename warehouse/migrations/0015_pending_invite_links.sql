-- An invitation link opened by someone not signed in yet, remembered across the sign-in redirect
-- (which starts a new Streamlit session and drops the link's ?token=). The browser keeps only a
-- random nonce in a session cookie; the row keeps the nonce's SHA-256 and the invitation token's
-- SHA-256 (as invites.token_sha256), never either secret. Rows live minutes: they are deleted
-- once used, and expired ones are swept whenever a new one is written.
create table if not exists pending_invite_links (
    nonce_sha256        bytea primary key,
    token_sha256        bytea not null,
    created_at          timestamptz not null,
    expires_at          timestamptz not null,
    check (expires_at > created_at)
);
create index if not exists pending_invite_links_expiry on pending_invite_links (expires_at);
