/* queries.h: the sync actor's SQL. It reads accounts and messages, and writes only the
 * sync_* columns of accounts and its own sync_seen (deploy/migrations/0006_sync.sql); mail
 * itself is written through MAIL_APPLY. */
#ifndef AIN_ACTORS_SYNC_QUERIES_H
#define AIN_ACTORS_SYNC_QUERIES_H

/* $1 account, $2 user, $3 holder, $4 lease ms -> provider, address, sync_cursor, sync_full,
 * sync_state, got (the lease), lease_left_ms, watch_due. No row: no such account of this user. The
 * condition is in the UPDATE itself so that two takers at once cannot both win. */
#define AIN__Q_TAKE                                                                                \
    "with u as (update accounts c set sync_lease_holder = $3, "                                    \
    "  sync_lease_until = now() + make_interval(secs => $4::bigint / 1000.0) "                     \
    "  where c.id = $1 and c.user_id = $2 and (c.sync_lease_holder is null "                       \
    "    or c.sync_lease_until < now() or c.sync_lease_holder = $3) returning c.id) "              \
    "select a.provider, a.address, a.sync_cursor, a.sync_full::text, a.sync_state, "               \
    "  exists (select 1 from u), "                                                                 \
    "  coalesce((extract(epoch from a.sync_lease_until - now()) * 1000)::bigint, 0), "             \
    "  coalesce(a.sync_watch_until < now() + interval '1 day', true) "                             \
    "from accounts a where a.id = $1 and a.user_id = $2"

/* $1 account, $2 holder, $3 sync_full (json text or NULL), $4 cursor (NULL keeps), $5 state,
 * $6 watch end in epoch ms (NULL keeps). */
#define AIN__Q_SAVE                                                                                \
    "update accounts set sync_full = $3::jsonb, sync_cursor = coalesce($4, sync_cursor), "         \
    "  sync_watch_until = coalesce(to_timestamp($6::bigint / 1000.0), sync_watch_until), "         \
    "  sync_state = case when sync_state = 'revoked' then sync_state else $5 end, "                \
    "  last_synced_at = now(), sync_lease_holder = null, sync_lease_until = null "                 \
    "where id = $1 and sync_lease_holder = $2"

/* $1 account, $2 holder. */
#define AIN__Q_RELEASE                                                                             \
    "update accounts set sync_lease_holder = null, sync_lease_until = null "                       \
    "where id = $1 and sync_lease_holder = $2"

/* $1 account, $2 generation, $3 text[] of provider ids seen by a full sync. */
#define AIN__Q_SEEN                                                                                \
    "insert into sync_seen (account_id, gen, provider_id) "                                        \
    "select $1, $2, unnest($3::text[]) on conflict do nothing"

/* $1 account, $2 text[] -> provider_id of those already stored with a body. */
#define AIN__Q_HAVE_BODY                                                                           \
    "select m.provider_id from messages m join bodies b on b.message_id = m.id "                   \
    "where m.account_id = $1 and m.provider_id = any($2::text[])"

/* $1 account, $2 generation -> up to 500 stored messages the full sync did not see. */
#define AIN__Q_UNSEEN                                                                              \
    "select m.provider_id from messages m where m.account_id = $1 and not exists ("                \
    "  select 1 from sync_seen s where s.account_id = $1 and s.gen = $2 "                          \
    "  and s.provider_id = m.provider_id) limit 500"

/* $1 account. */
#define AIN__Q_SEEN_CLEAR "delete from sync_seen where account_id = $1"

/* $1 address -> id, user_id of its live Gmail accounts (at most 16). Live: not revoked, and
 * with a stored grant (an account row without one cannot be synced: nothing to ask). */
#define AIN__Q_BY_ADDRESS                                                                          \
    "select id, user_id from accounts where provider = 'gmail' and lower(address) = lower($1) "    \
    "and sync_state <> 'revoked' and token_ciphertext is not null order by id limit 16"

/* $1 seconds, $2 batch -> id, user_id of live Gmail accounts not synced for that long and not
 * being synced now, least recently synced first. */
#define AIN__Q_STALE                                                                               \
    "select id, user_id from accounts where provider = 'gmail' and sync_state <> 'revoked' "       \
    "and token_ciphertext is not null "                                                            \
    "and (last_synced_at is null or last_synced_at < now() - make_interval(secs => $1::int)) "     \
    "and (sync_lease_until is null or sync_lease_until < now()) "                                  \
    "order by last_synced_at nulls first limit $2::int"

/* $1 account, $2 user -> one row if it is this user's Gmail account. */
#define AIN__Q_OWNED "select 1 from accounts where id = $1 and user_id = $2 and provider = 'gmail'"

#endif
