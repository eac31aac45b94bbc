-- The sync actor's state per account, and its resync scratch table.
--
-- Owner: the sync actor (actors/sync). It writes only these sync_* columns
-- of accounts (the accounts actor owns the rest) and sync_seen.
--
-- sync_cursor (0002) holds the Gmail historyId incremental sync continues
-- from; NULL until a first full sync has completed.
-- sync_full is the progress of a full sync (backfill, or the resync after
-- history.list answered 404) while one runs: {phase, list, page, hid, done,
-- total, gen}. It lives here, not only in the job's payload, so any job of
-- the account (a push's, the poll's, a retried one) continues the same full
-- sync instead of starting another.
-- sync_lease_holder/until: one JOB_RUN at a time per account, whatever the
-- number of sync processes. A row lease rather than pg_try_advisory_lock:
-- a session lock needs the same connection for lock and unlock, which the
-- actor's asynchronous pool does not promise, and a lease frees itself when
-- its holder is kill -9'd (it expires with the job's own lease).
-- sync_watch_until: when the Gmail watch (users.watch, push notifications) ends; renewed by a
-- run that finds it ending within a day. After Gmail refused a watch, a day and an hour from
-- then: it is tried again in an hour, not at every run (a watch costs 100 units).
alter table accounts
    add column sync_watch_until  timestamptz,
    add column sync_full         jsonb,
    add column sync_lease_holder text,
    add column sync_lease_until  timestamptz;

-- The provider ids a full sync saw, by generation, so that its sweep
-- deletes exactly what the provider no longer has with bounded memory.
create table sync_seen (
    account_id  bigint not null references accounts(id) on delete cascade,
    gen         bigint not null,
    provider_id text not null,
    primary key (account_id, gen, provider_id)
);

-- The fallback poll's scan: active accounts by last sync.
create index accounts_sync_poll_idx on accounts (last_synced_at nulls first)
    where sync_state <> 'revoked' and token_ciphertext is not null;
