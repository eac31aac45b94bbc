/* session.c: the session actor (see session.h): users and sessions in PostgreSQL, and the
 * tokens that stand for them.
 *
 * A session row holds only the SHA-256 of its current refresh token's jti. A refresh verifies
 * the token (signature, expiry), finds the session by (sid, sub), compares the hashes in
 * constant time and swaps in a new one with a compare-and-set UPDATE, so of two refreshes with
 * the same token exactly one wins. A token that is correctly signed but not the current one is a
 * reuse (stolen, or replayed after rotation): the session is revoked and every token of it is
 * refused from then on. Sessions keep their id across rotations (the access token names it), so
 * sessions.replaced_by stays unused.
 *
 * It does not verify access tokens (the edge does, with no hop) and cannot recall one already
 * issued: after a logout an access token lives on until it expires (AINBOX_ACCESS_TTL_S), except
 * on GET /api/v1/session, which checks the session (SESSION_GET {session}).
 */
#include "actors/session/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/session/input.h"
#include "actors/session/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/crypto.h"
#include "runtime/jwt.h"
#include "runtime/pg.h"

#define S_EMAIL_MAX   254
#define S_TEXT_MAX    1024 /* name, picture URL */
#define S_UA_MAX      256
#define S_IP_MAX      64
#define S_VERSION_MAX 64
#define S_HEX_LEN     (AIN_CRYPTO_SHA256_LEN * 2)

typedef struct {
    ain_metric_t *opened, *refreshed, *refused, *reused, *revoked, *invalid, *db_errors;
    ain_metric_t *pg_ready;
} s_metrics_t;

typedef struct {
    ain_actor_t *actor;
    ain_log_t *log;
    ain_pg_t *pg;   /* NULL: not configured (development only) */
    ain_jwt_t *jwt; /* NULL: not configured (development only) */
    int64_t access_ttl_s, refresh_ttl_s;
    s_metrics_t m;
} s_state_t;

/* One request waiting on the database. */
typedef struct {
    s_state_t *st;
    ain_request_t *req;
    uint64_t user, session;
    char jti[AIN_CRYPTO_TOKEN_LEN + 1]; /* the refresh token's new jti */
    char hash[S_HEX_LEN + 1];           /* its hash */
    char old_hash[S_HEX_LEN + 1];       /* REFRESH: the presented token's hash */
    char role[8];
} s_call_t;

/* ------------------------------------------------------------ helpers */

/* Answers `req` with `status` and {code, message}. */
static void s_refuse(s_state_t *st, ain_request_t *req, ain_status_t status, const char *code,
                     const char *message)
{
    ain_request_refuse(req, status, code, message);
    ain_metric_inc(status == AIN_STATUS_INVALID ? st->m.invalid : st->m.refused);
}

/* Hex SHA-256 of `jti` into out; 0 or -1. */
static int s_hash(const char *jti, char out[S_HEX_LEN + 1])
{
    uint8_t h[AIN_CRYPTO_SHA256_LEN];
    if (ain_crypto_token_hash(jti, strlen(jti), h) < 0)
        return -1;
    return ain_crypto_hex_encode(h, sizeof h, out, S_HEX_LEN + 1);
}

/* A fresh jti and its hash for call `c`; 0 or -1. */
static int s_new_refresh(s_call_t *c)
{
    if (ain_crypto_token_new(c->jti) < 0)
        return -1;
    return s_hash(c->jti, c->hash);
}

static s_call_t *s_call_new(s_state_t *st, ain_request_t *req)
{
    s_call_t *c = AIN_NEW(s_call_t);
    c->st = st;
    c->req = req;
    return c;
}

/* Queues `sql` for `c`; on a full queue answers BUSY and frees c. */
static void s_query(s_call_t *c, const char *sql, int n, const char *const *params, ain_pg_fn *fn)
{
    if (ain_pg_query(c->st->pg, ain_request_envelope(c->req)->deadline_ms, sql, n, params, fn, c) ==
        0)
        return;
    ain_request_fail(c->req, AIN_STATUS_BUSY, "too many database queries waiting");
    free(c);
}

/* True (having answered) if the outcome failed. */
static bool s_db_failed(s_call_t *c, const ain_pg_outcome_t *o)
{
    if (o->result)
        return false;
    ain_metric_inc(c->st->m.db_errors);
    ain_warn(c->st->log, "database: %s", o->error ? o->error : "failed");
    ain_request_fail(c->req, o->sqlstate && o->sqlstate[0] ? AIN_STATUS_ERROR : AIN_STATUS_AGAIN,
                     "the session store did not answer");
    return true;
}

static ain_jwt_role_t s_role(const char *role)
{
    return strcmp(role, "admin") == 0 ? AIN_JWT_ROLE_ADMIN : AIN_JWT_ROLE_USER;
}

/* Mints both tokens for c (user, session, role, jti) and answers. */
static void s_answer_tokens(s_call_t *c)
{
    s_state_t *st = c->st;
    ain_jwt_claims_t access, refresh;
    char a[AIN_JWT_MAX_LEN + 1], r[AIN_JWT_MAX_LEN + 1];
    int64_t now = (int64_t)time(NULL);
    ain_jwt_role_t role = s_role(c->role);
    if (ain_jwt_claims_init(&access, AIN_JWT_ACCESS, c->user, c->session, role, now,
                            st->access_ttl_s) < 0 ||
        ain_jwt_claims_init(&refresh, AIN_JWT_REFRESH, c->user, c->session, role, now,
                            st->refresh_ttl_s) < 0) {
        ain_request_fail(c->req, AIN_STATUS_ERROR, "cannot make tokens");
        return;
    }
    snprintf(refresh.jti, sizeof refresh.jti, "%s", c->jti);
    if (ain_jwt_sign(st->jwt, &access, a, sizeof a) < 0 ||
        ain_jwt_sign(st->jwt, &refresh, r, sizeof r) < 0) {
        ain_request_fail(c->req, AIN_STATUS_ERROR, "cannot sign tokens");
        return;
    }
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 7);
    ain_mp_pack_kv_u64(pk, "user", c->user);
    ain_mp_pack_kv_u64(pk, "session", c->session);
    ain_mp_pack_kv_str(pk, "role", role == AIN_JWT_ROLE_ADMIN ? "admin" : "user");
    ain_mp_pack_kv_str(pk, "access", a);
    ain_mp_pack_kv_str(pk, "refresh", r);
    ain_mp_pack_kv_i64(pk, "access_ttl_s", st->access_ttl_s);
    ain_mp_pack_kv_i64(pk, "refresh_ttl_s", st->refresh_ttl_s);
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
    ain_crypto_wipe(r, sizeof r);
}

/* True (having answered) if sessions are not configured here. */
static bool s_unconfigured(s_state_t *st, ain_request_t *req)
{
    if (st->pg && st->jwt)
        return false;
    ain_request_fail(req, AIN_STATUS_UNAVAILABLE,
                     "sessions are not configured here (DATABASE_URL, JWT_*_SECRET)");
    return true;
}

static void s_u64(uint64_t v, char *out, size_t size)
{
    snprintf(out, size, "%llu", (unsigned long long)v);
}

/* ------------------------------------------------------------ SESSION_OPEN */

static void s_opened(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (!s_db_failed(c, o)) {
        if (PQntuples(o->result) != 1) {
            ain_request_fail(c->req, AIN_STATUS_ERROR, "the session was not stored");
        } else {
            c->user = strtoull(PQgetvalue(o->result, 0, 0), NULL, 10);
            c->session = strtoull(PQgetvalue(o->result, 0, 1), NULL, 10);
            snprintf(c->role, sizeof c->role, "%s", PQgetvalue(o->result, 0, 2));
            ain_metric_inc(c->st->m.opened);
            ain_info(c->st->log, "opened session %llu for user %llu",
                     (unsigned long long)c->session, (unsigned long long)c->user);
            s_answer_tokens(c);
        }
    }
    free(c);
}

static int s_open(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (env->user != 0) {
        s_refuse(st, req, AIN_STATUS_DENIED, "FORBIDDEN", "opening a session is for the edge only");
        return 0;
    }
    if (s_unconfigured(st, req))
        return 0;
    char email[S_EMAIL_MAX + 1], name[S_TEXT_MAX], picture[S_TEXT_MAX], ua[S_UA_MAX], ip[S_IP_MAX];
    ain_body_t body;
    bool ok = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
              body.root->type == MSGPACK_OBJECT_MAP &&
              ain_mp_get_text(body.root, "email", email, sizeof email) == 1 &&
              ain_session_email_norm(email) &&
              ain_mp_get_text(body.root, "name", name, sizeof name) >= 0 &&
              ain_mp_get_text(body.root, "picture", picture, sizeof picture) >= 0 &&
              ain_mp_get_text(body.root, "user_agent", ua, sizeof ua) >= 0 &&
              ain_mp_get_text(body.root, "ip", ip, sizeof ip) >= 0;
    ain_body_release(&body);
    if (!ok) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST",
                 "body must be {email: address, name?, picture?, user_agent?, ip?}");
        return 0;
    }
    s_call_t *c = s_call_new(st, req);
    if (s_new_refresh(c) < 0) {
        ain_request_fail(req, AIN_STATUS_ERROR, "no randomness for a token");
        free(c);
        return 0;
    }
    char ttl[24];
    s_u64((uint64_t)st->refresh_ttl_s, ttl, sizeof ttl);
    const char *params[] = {email,   name[0] ? name : NULL, picture[0] ? picture : NULL,
                            c->hash, ua[0] ? ua : NULL,     ip[0] ? ip : NULL,
                            ttl};
    s_query(c, AIN_Q_SESSION_OPEN, 7, params, s_opened);
    return 0;
}

/* ------------------------------------------------------------ SESSION_REFRESH */

static void s_reuse_revoked(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (!s_db_failed(c, o)) {
        ain_metric_inc(c->st->m.reused);
        ain_warn(c->st->log,
                 "a stale refresh token of session %llu (user %llu) was presented: "
                 "session revoked",
                 (unsigned long long)c->session, (unsigned long long)c->user);
        s_refuse(c->st, c->req, AIN_STATUS_UNAUTHENTICATED, "REFRESH_TOKEN_REUSED",
                 "this refresh token was already used; the session is revoked");
    }
    free(c);
}

static void s_revoke_reuse(s_call_t *c)
{
    char sid[24], uid[24];
    s_u64(c->session, sid, sizeof sid);
    s_u64(c->user, uid, sizeof uid);
    const char *params[] = {sid, uid};
    s_query(c, AIN_Q_SESSION_REVOKE, 2, params, s_reuse_revoked);
}

static void s_rotated(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (s_db_failed(c, o)) {
        free(c);
        return;
    }
    if (PQntuples(o->result) != 1) { /* another refresh with the same token won */
        s_revoke_reuse(c);
        return;
    }
    ain_metric_inc(c->st->m.refreshed);
    s_answer_tokens(c);
    free(c);
}

static void s_found(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    s_state_t *st = c->st;
    (void)pg;
    if (s_db_failed(c, o)) {
        free(c);
        return;
    }
    const PGresult *r = o->result;
    const char *code = NULL, *message = NULL;
    if (PQntuples(r) != 1) {
        code = "SESSION_NOT_FOUND", message = "no such session";
    } else if (PQgetvalue(r, 0, 1)[0] == 't') {
        code = "SESSION_REVOKED", message = "the session was revoked; sign in again";
    } else if (PQgetvalue(r, 0, 2)[0] == 't') {
        code = "SESSION_EXPIRED", message = "the session expired; sign in again";
    }
    if (code) {
        s_refuse(st, c->req, AIN_STATUS_UNAUTHENTICATED, code, message);
        free(c);
        return;
    }
    const char *stored = PQgetvalue(r, 0, 0);
    bool match =
        PQgetlength(r, 0, 0) == S_HEX_LEN && ain_crypto_equal(stored, c->old_hash, S_HEX_LEN);
    snprintf(c->role, sizeof c->role, "%s", PQgetvalue(r, 0, 3));
    if (!match) {
        s_revoke_reuse(c);
        return;
    }
    if (s_new_refresh(c) < 0) {
        ain_request_fail(c->req, AIN_STATUS_ERROR, "no randomness for a token");
        free(c);
        return;
    }
    char sid[24], uid[24], ttl[24];
    s_u64(c->session, sid, sizeof sid);
    s_u64(c->user, uid, sizeof uid);
    s_u64((uint64_t)st->refresh_ttl_s, ttl, sizeof ttl);
    const char *params[] = {sid, uid, c->hash, ttl, c->old_hash};
    s_query(c, AIN_Q_SESSION_ROTATE, 5, params, s_rotated);
}

/* Verifies the refresh token in the body into *claims; answers and returns -1 if it is not
 * one. */
static int s_refresh_claims(s_state_t *st, ain_request_t *req, ain_jwt_claims_t *claims)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    char token[AIN_JWT_MAX_LEN + 1];
    ain_body_t body;
    int got = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        got = ain_mp_get_text(body.root, "refresh", token, sizeof token);
    ain_body_release(&body);
    if (got != 1) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "body must be {refresh: token}");
        return -1;
    }
    int rc =
        ain_jwt_verify(st->jwt, token, strlen(token), AIN_JWT_REFRESH, (int64_t)time(NULL), claims);
    if (rc != AIN_JWT_OK) {
        char message[96];
        snprintf(message, sizeof message, "refresh token refused: %s", ain_jwt_strerror(rc));
        s_refuse(st, req, AIN_STATUS_UNAUTHENTICATED,
                 rc == AIN_JWT_E_EXPIRED ? "REFRESH_TOKEN_EXPIRED" : "INVALID_REFRESH_TOKEN",
                 message);
        return -1;
    }
    return 0;
}

static int s_refresh(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    if (ain_request_envelope(req)->user != 0) {
        s_refuse(st, req, AIN_STATUS_DENIED, "FORBIDDEN", "refreshing is for the edge only");
        return 0;
    }
    if (s_unconfigured(st, req))
        return 0;
    ain_jwt_claims_t claims;
    if (s_refresh_claims(st, req, &claims) < 0)
        return 0;
    s_call_t *c = s_call_new(st, req);
    c->user = claims.user;
    c->session = claims.session;
    if (s_hash(claims.jti, c->old_hash) < 0) {
        ain_request_fail(req, AIN_STATUS_ERROR, "cannot hash the token");
        free(c);
        return 0;
    }
    char sid[24], uid[24];
    s_u64(c->session, sid, sizeof sid);
    s_u64(c->user, uid, sizeof uid);
    const char *params[] = {sid, uid};
    s_query(c, AIN_Q_SESSION_FIND, 2, params, s_found);
    return 0;
}

/* ------------------------------------------------------------ SESSION_REVOKE */

static void s_revoked(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (!s_db_failed(c, o)) {
        bool done = PQntuples(o->result) == 1;
        if (done) {
            ain_metric_inc(c->st->m.revoked);
            ain_info(c->st->log, "revoked session %llu of user %llu",
                     (unsigned long long)c->session, (unsigned long long)c->user);
        }
        msgpack_packer *pk = ain_actor_body(c->st->actor);
        msgpack_pack_map(pk, 1);
        ain_mp_pack_str(pk, "revoked");
        if (done)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        ain_request_reply_packed(c->req, AIN_STATUS_OK);
    }
    free(c);
}

/* {session} for the envelope user, or {refresh} (a valid refresh token) from the edge. */
static int s_revoke(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req))
        return 0;
    uint64_t user = env->user, session = 0;
    if (user == 0) {
        ain_jwt_claims_t claims;
        if (s_refresh_claims(st, req, &claims) < 0)
            return 0;
        user = claims.user;
        session = claims.session;
    } else {
        ain_body_t body;
        int got = -1;
        if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
            got = ain_mp_get_u64(body.root, "session", &session);
        ain_body_release(&body);
        if (got != 1 || session == 0) {
            s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "body must be {session: id}");
            return 0;
        }
    }
    s_call_t *c = s_call_new(st, req);
    c->user = user;
    c->session = session;
    char sid[24], uid[24];
    s_u64(session, sid, sizeof sid);
    s_u64(user, uid, sizeof uid);
    const char *params[] = {sid, uid};
    s_query(c, AIN_Q_SESSION_REVOKE, 2, params, s_revoked);
    return 0;
}

/* ------------------------------------------------------------ SESSION_GET */

static void s_pack_text(msgpack_packer *pk, const char *key, const PGresult *r, int col)
{
    ain_mp_pack_str(pk, key);
    if (PQgetisnull(r, 0, col)) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = (size_t)PQgetlength(r, 0, col);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, PQgetvalue(r, 0, col), n);
}

static void s_pack_bool(msgpack_packer *pk, const char *key, const PGresult *r, int col)
{
    ain_mp_pack_str(pk, key);
    if (PQgetvalue(r, 0, col)[0] == 't')
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void s_got(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (s_db_failed(c, o)) {
        free(c);
        return;
    }
    const PGresult *r = o->result;
    if (PQntuples(r) != 1) {
        s_refuse(c->st, c->req, AIN_STATUS_NOT_FOUND, "USER_NOT_FOUND", "no such user");
    } else if (PQgetvalue(r, 0, 8)[0] != 't') {
        s_refuse(c->st, c->req, AIN_STATUS_UNAUTHENTICATED, "SESSION_REVOKED",
                 "the session was revoked or expired; sign in again");
    } else {
        msgpack_packer *pk = ain_actor_body(c->st->actor);
        msgpack_pack_map(pk, 8);
        ain_mp_pack_kv_u64(pk, "id", strtoull(PQgetvalue(r, 0, 0), NULL, 10));
        s_pack_text(pk, "email", r, 1);
        s_pack_text(pk, "name", r, 2);
        s_pack_text(pk, "picture", r, 3);
        s_pack_text(pk, "terms_version", r, 4);
        ain_mp_pack_str(pk, "terms_accepted_ms");
        if (PQgetisnull(r, 0, 5))
            msgpack_pack_nil(pk);
        else
            msgpack_pack_int64(pk, strtoll(PQgetvalue(r, 0, 5), NULL, 10));
        s_pack_bool(pk, "google", r, 6);
        s_pack_bool(pk, "microsoft", r, 7);
        ain_request_reply_packed(c->req, AIN_STATUS_OK);
    }
    free(c);
}

/* True (having answered) unless the envelope names a user. */
static bool s_no_user(s_state_t *st, ain_request_t *req)
{
    if (ain_request_envelope(req)->user != 0)
        return false;
    s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "the envelope names no user");
    return true;
}

static int s_get(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req) || s_no_user(st, req))
        return 0;
    uint64_t session = 0;
    ain_body_t body;
    int got = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        got = ain_mp_get_u64(body.root, "session", &session);
    ain_body_release(&body);
    if (got < 0) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "body must be {session?: id}");
        return 0;
    }
    s_call_t *c = s_call_new(st, req);
    c->user = env->user;
    char uid[24], sid[24];
    s_u64(env->user, uid, sizeof uid);
    s_u64(session, sid, sizeof sid);
    const char *params[] = {uid, sid};
    s_query(c, AIN_Q_SESSION_GET, 2, params, s_got);
    return 0;
}

/* ------------------------------------------------------------ TERMS_ACCEPT */

static void s_accepted(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    (void)pg;
    if (!s_db_failed(c, o)) {
        if (PQntuples(o->result) != 1) {
            s_refuse(c->st, c->req, AIN_STATUS_NOT_FOUND, "USER_NOT_FOUND", "no such user");
        } else {
            msgpack_packer *pk = ain_actor_body(c->st->actor);
            msgpack_pack_map(pk, 2);
            ain_mp_pack_kv_str(pk, "version", c->hash); /* the version, kept in c->hash */
            ain_mp_pack_kv_i64(pk, "accepted_ms", strtoll(PQgetvalue(o->result, 0, 0), NULL, 10));
            ain_request_reply_packed(c->req, AIN_STATUS_OK);
        }
    }
    free(c);
}

static int s_terms_accept(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req) || s_no_user(st, req))
        return 0;
    char version[S_VERSION_MAX + 1];
    ain_body_t body;
    int got = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        got = ain_mp_get_text(body.root, "version", version, sizeof version);
    ain_body_release(&body);
    if (got != 1 || !version[0]) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST",
                 "body must be {version: text of 1..64 characters}");
        return 0;
    }
    s_call_t *c = s_call_new(st, req);
    c->user = env->user;
    _Static_assert(sizeof c->hash > S_VERSION_MAX, "the version fits");
    snprintf(c->hash, sizeof c->hash, "%s", version);
    char uid[24];
    s_u64(env->user, uid, sizeof uid);
    const char *params[] = {uid, version};
    s_query(c, AIN_Q_TERMS_ACCEPT, 2, params, s_accepted);
    return 0;
}

/* ------------------------------------------------------------ start, stop */

static void s_tick(ain_actor_t *actor, void *arg)
{
    s_state_t *st = arg;
    (void)actor;
    ain_metric_set(st->m.pg_ready, st->pg ? ain_pg_ready(st->pg) : 0);
}

static void s_metrics_init(s_metrics_t *m, ain_metrics_t *reg)
{
    m->opened = ain_metrics_counter(reg, "session.opened");
    m->refreshed = ain_metrics_counter(reg, "session.refreshed");
    m->refused = ain_metrics_counter(reg, "session.refused");
    m->reused = ain_metrics_counter(reg, "session.refresh_reused");
    m->revoked = ain_metrics_counter(reg, "session.revoked");
    m->invalid = ain_metrics_counter(reg, "session.invalid");
    m->db_errors = ain_metrics_counter(reg, "session.db_errors");
    m->pg_ready = ain_metrics_gauge(reg, "session.pg.ready_connections");
}

/* Production refuses to start without the token secrets or the database; development warns
 * and answers UNAVAILABLE, so a bundle without them (most tests) still runs. */
static int s_start(ain_actor_t *actor)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    s_state_t *st = AIN_NEW(s_state_t);
    st->actor = actor;
    st->log = ain_actor_log(actor);
    st->access_ttl_s = ain_config_int(cfg, AIN_CFG_AINBOX_ACCESS_TTL_S);
    st->refresh_ttl_s = ain_config_int(cfg, AIN_CFG_AINBOX_REFRESH_TTL_S);
    s_metrics_init(&st->m, ain_actor_metrics(actor));
    char *error = NULL;
    st->jwt = ain_jwt_from_config(cfg, &error);
    const char *db = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    if (!st->jwt || !db) {
        int rc = ain_actor_unconfigured(actor, !st->jwt ? (error ? error : "tokens not configured")
                                                        : "DATABASE_URL is not set");
        free(error);
        if (rc < 0) {
            ain_jwt_destroy(&st->jwt);
            free(st);
            return -1;
        }
    }
    if (db && st->jwt)
        st->pg = ain_pg_new(actor, db, (int)ain_config_int(cfg, AIN_CFG_AINBOX_PG_POOL));
    ain_actor_set_state(actor, st);
    ain_actor_timer(actor, 1000, true, s_tick, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    ain_pg_destroy(&st->pg); /* fails what waits: the callbacks answer and free */
    ain_jwt_destroy(&st->jwt);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_SESSION_OPEN, s_open},         {AIN_MSG_SESSION_REFRESH, s_refresh},
    {AIN_MSG_SESSION_REVOKE, s_revoke},     {AIN_MSG_SESSION_GET, s_get},
    {AIN_MSG_TERMS_ACCEPT, s_terms_accept}, {0, NULL},
};

const ain_actor_def_t ain_session_actor = {
    .service = "session",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Requests wait on the database without holding the thread. */
    .credit = 256,
};
