/* queries.c: the session actor's SQL (see queries.h). Strings only. */
#include "actors/session/queries.h"

const char *const AIN_Q_SESSION_OPEN =
    "with u as ( "
    "insert into users (email, name, picture) values ($1::text, $2::text, $3::text) "
    "on conflict (email) do update set name = coalesce(excluded.name, users.name), "
    "picture = coalesce(excluded.picture, users.picture) "
    "returning id, role), "
    "s as ( "
    "insert into sessions (user_id, refresh_hash, user_agent, ip, expires_at) "
    "select u.id, decode($4::text, 'hex'), $5::text, $6::text, "
    "now() + $7::bigint * interval '1 second' from u "
    "returning id, user_id) "
    "select s.user_id, s.id, u.role from s join u on u.id = s.user_id ";

const char *const AIN_Q_SESSION_FIND =
    "select encode(s.refresh_hash, 'hex'), s.revoked_at is not null, s.expires_at <= now(), "
    "u.role "
    "from sessions s join users u on u.id = s.user_id "
    "where s.id = $1::bigint and s.user_id = $2::bigint ";

const char *const AIN_Q_SESSION_ROTATE =
    "update sessions set refresh_hash = decode($3::text, 'hex'), "
    "expires_at = now() + $4::bigint * interval '1 second' "
    "where id = $1::bigint and user_id = $2::bigint and revoked_at is null "
    "and expires_at > now() and refresh_hash = decode($5::text, 'hex') "
    "returning id ";

const char *const AIN_Q_SESSION_REVOKE =
    "update sessions set revoked_at = now() "
    "where id = $1::bigint and user_id = $2::bigint and revoked_at is null "
    "returning id ";

const char *const AIN_Q_SESSION_GET =
    "select u.id, u.email, u.name, u.picture, u.terms_version, "
    "floor(extract(epoch from u.terms_accepted_at) * 1000)::bigint, "
    "exists (select 1 from accounts a where a.user_id = u.id and a.provider = 'gmail'), "
    "exists (select 1 from accounts a where a.user_id = u.id and a.provider = 'outlook'), "
    "$2::bigint = 0 or exists (select 1 from sessions s where s.id = $2::bigint "
    "and s.user_id = u.id and s.revoked_at is null and s.expires_at > now()) "
    "from users u where u.id = $1::bigint ";

const char *const AIN_Q_TERMS_ACCEPT =
    "update users set terms_version = $2::text, terms_accepted_at = now() "
    "where id = $1::bigint "
    "returning floor(extract(epoch from terms_accepted_at) * 1000)::bigint ";
