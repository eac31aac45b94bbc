/* queries.c: the accounts actor's SQL (see queries.h). Strings only. */
#include "actors/accounts/queries.h"

const char *const AIN_Q_ACCOUNT_UPSERT =
    "with a as ( "
    "insert into accounts (user_id, provider, address, scopes) "
    "values ($1::bigint, $2::text, $3::text, $4::text) "
    "on conflict (user_id, provider, address) do update set "
    "scopes = coalesce(excluded.scopes, accounts.scopes), updated_at = now() "
    "returning id, token_ciphertext is not null as has_token) "
    "select a.id, a.has_token, u.terms_version from a join users u on u.id = $1::bigint ";

const char *const AIN_Q_ACCOUNT_TOKEN_SET =
    "update accounts set token_ciphertext = decode($3::text, 'hex'), token_nonce = null, "
    "token_key_version = $4::int, updated_at = now(), "
    "sync_state = case when sync_state = 'revoked' then 'new' else sync_state end "
    "where id = $1::bigint and user_id = $2::bigint "
    "returning id ";

const char *const AIN_Q_ACCOUNT_GET =
    "select provider, address, encode(token_ciphertext, 'hex'), sync_state "
    "from accounts where id = $1::bigint and user_id = $2::bigint ";

const char *const AIN_Q_ACCOUNT_REVOKED =
    "update accounts set sync_state = 'revoked', updated_at = now() "
    "where id = $1::bigint and user_id = $2::bigint "
    "returning id ";
