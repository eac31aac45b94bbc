/* accounts.c: the accounts actor (see accounts.h): provider sign-in completion, the accounts
 * table, and provider tokens sealed at rest.
 *
 * Sign-in (ACCOUNT_OAUTH_COMPLETE, from the edge): a pool thread (calls.c) exchanges the code
 * at the provider, reads the identity and asks the session actor to open a session for that
 * address; back on the actor's thread the account row is upserted (user, provider, address)
 * and, if the provider sent a refresh token, it is sealed with the current AINBOX_TOKEN_KEY and
 * ain_crypto_account_aad(user, provider, account id) as associated data, so the ciphertext
 * opens only in its own row. No refresh token in the answer (Google skips it when the user
 * already consented without prompt=consent) keeps the one stored.
 *
 * ACCOUNT_TOKEN (for the owner's services): opens the stored refresh token, refreshes at the
 * provider, stores a rotated refresh token (Microsoft rotates, Google does not) and answers the
 * access token. invalid_grant marks the account 'revoked': the user must sign in again.
 *
 * Never logged: codes, verifiers, tokens, secrets, addresses (ids only).
 */
#include "actors/accounts/accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/accounts/calls.h"
#include "actors/accounts/parse.h"
#include "actors/accounts/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/crypto.h"
#include "runtime/oauth.h"
#include "runtime/pg.h"
#include "runtime/provider.h"

#define S_CODE_MAX   4096
#define S_URI_MAX    AIN_PROVIDER_URL_MAX
#define S_UA_MAX     256
#define S_IP_MAX     64
#define S_QUEUE_MAX  64  /* sign-ins waiting for a pool thread */
#define S_MARGIN_MS  300 /* a job comes back this long before its request's deadline */
#define S_SEALED_MAX (AIN_ACCOUNTS_TOKEN_MAX + AIN_CRYPTO_SEAL_OVERHEAD)
#define S_AAD_MAX    128

typedef struct {
    ain_metric_t *linked, *refreshed, *rotated, *reauth, *provider_errors, *refused, *invalid;
    ain_metric_t *busy, *db_errors, *pending, *pg_ready;
} s_metrics_t;

typedef struct {
    ain_actor_t *actor;
    ain_log_t *log;
    ain_pg_t *pg;               /* NULL: not configured (development only) */
    ain_crypto_keyring_t *keys; /* NULL: not configured (development only) */
    ain__pool_t *pool;
    ain_provider_t providers[3]; /* by ain_oauth_provider_t */
    const char *terms_version;
    s_metrics_t m;
} s_state_t;

/* ------------------------------------------------------------ helpers */

static void s_refuse(s_state_t *st, ain_request_t *req, ain_status_t status, const char *code,
                     const char *message)
{
    ain_request_refuse(req, status, code, message);
    ain_metric_inc(status == AIN_STATUS_INVALID ? st->m.invalid : st->m.refused);
}

/* Answers the job's request, frees the job. */
static void s_job_refuse(ain__job_t *job, ain_status_t status, const char *code,
                         const char *message)
{
    s_refuse(job->state, job->req, status, code, message);
    ain__job_destroy(&job);
}

static void s_u64(uint64_t v, char *out, size_t size)
{
    snprintf(out, size, "%llu", (unsigned long long)v);
}

/* True (having answered) if the database or the token key is missing here. */
static bool s_unconfigured(s_state_t *st, ain_request_t *req)
{
    if (st->pg && st->keys)
        return false;
    ain_request_fail(req, AIN_STATUS_UNAVAILABLE,
                     "accounts are not configured here (DATABASE_URL, AINBOX_TOKEN_KEY)");
    return true;
}

static bool s_db_failed(ain__job_t *job, const ain_pg_outcome_t *o)
{
    if (o->result)
        return false;
    s_state_t *st = job->state;
    ain_metric_inc(st->m.db_errors);
    ain_warn(st->log, "database: %s", o->error ? o->error : "failed");
    ain_request_fail(job->req, o->sqlstate && o->sqlstate[0] ? AIN_STATUS_ERROR : AIN_STATUS_AGAIN,
                     "the account store did not answer");
    ain__job_destroy(&job);
    return true;
}

static void s_query(ain__job_t *job, const char *sql, int n, const char *const *params,
                    ain_pg_fn *fn)
{
    s_state_t *st = job->state;
    if (ain_pg_query(st->pg, job->deadline_ms, sql, n, params, fn, job) == 0)
        return;
    ain_metric_inc(st->m.busy);
    ain_request_fail(job->req, AIN_STATUS_BUSY, "too many database queries waiting");
    ain__job_destroy(&job);
}

/* A provider's refusal or failure, answered with an honest status; logged once, here. */
static void s_provider_failed(ain__job_t *job)
{
    s_state_t *st = job->state;
    ain_status_t status = AIN_STATUS_ERROR;
    const char *code = "PROVIDER_BAD_ANSWER";
    switch (job->outcome) {
    case AIN_ACCOUNTS_P_INVALID_GRANT:
        status = AIN_STATUS_INVALID, code = "INVALID_GRANT";
        break;
    case AIN_ACCOUNTS_P_UNAVAILABLE:
    case AIN_ACCOUNTS_P_UNAUTHORIZED:
        status = AIN_STATUS_AGAIN, code = "PROVIDER_UNAVAILABLE";
        break;
    case AIN_ACCOUNTS_P_TIMEOUT:
        status = AIN_STATUS_TIMEOUT, code = "PROVIDER_TIMEOUT";
        break;
    case AIN_ACCOUNTS_P_CLIENT:
        code = "PROVIDER_CLIENT_REFUSED";
        break;
    case AIN_ACCOUNTS_P_REFUSED:
        code = "PROVIDER_REFUSED";
        break;
    default:
        break;
    }
    ain_metric_inc(st->m.provider_errors);
    if (job->outcome == AIN_ACCOUNTS_P_CLIENT)
        ain_error(st->log, "%s refused our client credentials (%s): check its client id/secret",
                  job->provider->name, job->why);
    else
        ain_warn(st->log, "%s %s: %s (%s)", job->provider->name,
                 job->kind == AIN__JOB_EXCHANGE ? "sign-in" : "token refresh",
                 ain_accounts_outcome_name(job->outcome), job->why);
    char message[320];
    snprintf(message, sizeof message, "%s: %s", job->provider->name, job->why);
    s_job_refuse(job, status, code, message);
}

/* Seals job->tokens.refresh_token for (user, provider, account) and stores it; `fn` runs
 * after. */
static void s_store_token(ain__job_t *job, ain_pg_fn *fn)
{
    s_state_t *st = job->state;
    char aad[S_AAD_MAX];
    uint8_t *sealed = ain_malloc(S_SEALED_MAX);
    size_t len = 0;
    const char *plain = job->tokens.refresh_token;
    int aad_len =
        ain_crypto_account_aad(aad, sizeof aad, job->user, job->provider->account, job->account);
    if (aad_len < 0 || ain_crypto_seal(st->keys, plain, strlen(plain), aad, (size_t)aad_len, sealed,
                                       S_SEALED_MAX, &len) < 0) {
        free(sealed);
        ain_error(st->log, "cannot seal the token of account %llu",
                  (unsigned long long)job->account);
        s_job_refuse(job, AIN_STATUS_ERROR, "TOKEN_SEAL_FAILED", "cannot seal the token");
        return;
    }
    char *hex = ain_malloc(2 * len + 1);
    ain_crypto_hex_encode(sealed, len, hex, 2 * len + 1);
    free(sealed);
    char aid[24], uid[24], kid[8];
    s_u64(job->account, aid, sizeof aid);
    s_u64(job->user, uid, sizeof uid);
    snprintf(kid, sizeof kid, "%d", ain_crypto_keyring_current(st->keys));
    const char *params[] = {aid, uid, hex, kid};
    s_query(job, AIN_Q_ACCOUNT_TOKEN_SET, 4, params, fn);
    free(hex);
}

/* ------------------------------------------------------------ ACCOUNT_OAUTH_COMPLETE */

static void s_answer_complete(ain__job_t *job)
{
    s_state_t *st = job->state;
    ain_body_t body;
    if (ain_body_parse(&body, job->session, job->session_len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP) {
        ain_body_release(&body);
        s_job_refuse(job, AIN_STATUS_ERROR, "SESSION_FAILED", "malformed session answer");
        return;
    }
    const msgpack_object_map *m = &body.root->via.map;
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, m->size + 5);
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_pack_object(pk, m->ptr[i].key);
        msgpack_pack_object(pk, m->ptr[i].val);
    }
    ain_mp_pack_kv_u64(pk, "account", job->account);
    ain_mp_pack_kv_str(pk, "provider", job->provider->name);
    ain_mp_pack_kv_str(pk, "address", job->identity.email);
    ain_mp_pack_str(pk, "terms_required");
    job->terms_required ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ain_mp_pack_str(pk, "token_stored");
    job->token_stored ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ain_body_release(&body);
    ain_request_reply_packed(job->req, AIN_STATUS_OK);
    ain_metric_inc(st->m.linked);
    ain_info(st->log, "user %llu signed in with %s: account %llu%s", (unsigned long long)job->user,
             job->provider->name, (unsigned long long)job->account,
             job->token_stored ? "" : " (no refresh token: the account cannot sync)");
    ain__job_destroy(&job);
}

static void s_complete_stored(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__job_t *job = arg;
    (void)pg;
    if (s_db_failed(job, o))
        return;
    job->token_stored = PQntuples(o->result) == 1;
    s_answer_complete(job);
}

static void s_upserted(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__job_t *job = arg;
    s_state_t *st = job->state;
    (void)pg;
    if (s_db_failed(job, o))
        return;
    if (PQntuples(o->result) != 1) {
        s_job_refuse(job, AIN_STATUS_ERROR, "ACCOUNT_NOT_STORED", "the account was not stored");
        return;
    }
    job->account = strtoull(PQgetvalue(o->result, 0, 0), NULL, 10);
    job->token_stored = PQgetvalue(o->result, 0, 1)[0] == 't';
    job->terms_required =
        PQgetisnull(o->result, 0, 2) || strcmp(PQgetvalue(o->result, 0, 2), st->terms_version) != 0;
    if (job->tokens.refresh_token)
        s_store_token(job, s_complete_stored);
    else /* keep the one stored, if any */
        s_answer_complete(job);
}

static void s_exchange_done(ain__job_t *job)
{
    if (job->outcome != AIN_ACCOUNTS_P_OK) {
        s_provider_failed(job);
        return;
    }
    /* The provider said yes, SESSION_OPEN did not: relay its refusal as it gave it. */
    if (job->session_status != AIN_STATUS_OK) {
        ain_body_t body;
        char code[64] = "SESSION_FAILED", message[256];
        snprintf(message, sizeof message, "%s", job->why);
        if (ain_body_parse(&body, job->session, job->session_len) == AIN_STATUS_OK &&
            body.root->type == MSGPACK_OBJECT_MAP) {
            if (ain_mp_get_text(body.root, "code", code, sizeof code) != 1)
                snprintf(code, sizeof code, "SESSION_FAILED");
            ain_mp_get_text(body.root, "message", message, sizeof message);
        }
        ain_body_release(&body);
        ain_warn(((s_state_t *)job->state)->log, "%s sign-in: %s", job->provider->name, job->why);
        s_job_refuse(job, job->session_status, code, message);
        return;
    }
    ain_body_t body;
    uint64_t user = 0;
    if (ain_body_parse(&body, job->session, job->session_len) == AIN_STATUS_OK)
        ain_mp_get_u64(body.root, "user", &user);
    ain_body_release(&body);
    if (user == 0) {
        s_job_refuse(job, AIN_STATUS_ERROR, "SESSION_FAILED", "malformed session answer");
        return;
    }
    job->user = user;
    char uid[24];
    s_u64(user, uid, sizeof uid);
    const char *params[] = {uid, job->provider->account, job->identity.email, job->tokens.scope};
    s_query(job, AIN_Q_ACCOUNT_UPSERT, 4, params, s_upserted);
}

static int s_complete(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (env->user != 0) {
        s_refuse(st, req, AIN_STATUS_DENIED, "FORBIDDEN", "completing a sign-in is for the edge");
        return 0;
    }
    if (s_unconfigured(st, req))
        return 0;
    char provider[16], code[S_CODE_MAX], verifier[AIN_OAUTH_VERIFIER_MAX + 1], uri[S_URI_MAX];
    char ua[S_UA_MAX], ip[S_IP_MAX];
    ain_body_t body;
    bool ok = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
              body.root->type == MSGPACK_OBJECT_MAP &&
              ain_mp_get_text(body.root, "provider", provider, sizeof provider) == 1 &&
              ain_mp_get_text(body.root, "code", code, sizeof code) == 1 &&
              ain_mp_get_text(body.root, "code_verifier", verifier, sizeof verifier) == 1 &&
              ain_mp_get_text(body.root, "redirect_uri", uri, sizeof uri) == 1 &&
              ain_mp_get_text(body.root, "user_agent", ua, sizeof ua) >= 0 &&
              ain_mp_get_text(body.root, "ip", ip, sizeof ip) >= 0 &&
              ain_oauth_verifier_valid(verifier, strlen(verifier));
    ain_body_release(&body);
    ain_oauth_provider_t id = ok ? ain_provider_by_name(provider) : 0;
    if (!ok || id == 0) {
        ain_crypto_wipe(code, sizeof code);
        ain_crypto_wipe(verifier, sizeof verifier);
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST",
                 "body must be {provider: google|microsoft, code, code_verifier (RFC 7636), "
                 "redirect_uri, user_agent?, ip?}");
        return 0;
    }
    const ain_provider_t *p = &st->providers[id];
    if (!p->client_id) {
        s_refuse(st, req, AIN_STATUS_UNAVAILABLE, "PROVIDER_NOT_CONFIGURED",
                 "sign-in with this provider is not configured here");
        return 0;
    }
    if (strcmp(uri, p->redirect_uri) != 0) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST",
                 "redirect_uri is not the one configured for this provider");
        return 0;
    }
    ain__job_t *job = ain__job_new(AIN__JOB_EXCHANGE);
    job->provider = p;
    job->deadline_ms = env->deadline_ms - S_MARGIN_MS;
    job->code = ain_strdup(code);
    job->verifier = ain_strdup(verifier);
    job->redirect_uri = ain_strdup(uri);
    job->user_agent = ua[0] ? ain_strdup(ua) : NULL;
    job->ip = ip[0] ? ain_strdup(ip) : NULL;
    job->req = req;
    job->state = st;
    ain_crypto_wipe(code, sizeof code);
    ain_crypto_wipe(verifier, sizeof verifier);
    if (ain__pool_submit(st->pool, job) < 0) {
        ain_metric_inc(st->m.busy);
        s_job_refuse(job, AIN_STATUS_BUSY, "BUSY", "too many sign-ins in progress; retry");
    }
    return 0;
}

/* ------------------------------------------------------------ ACCOUNT_TOKEN */

static void s_answer_token(ain__job_t *job)
{
    s_state_t *st = job->state;
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 5);
    ain_mp_pack_kv_u64(pk, "account", job->account);
    ain_mp_pack_kv_str(pk, "provider", job->provider->account);
    ain_mp_pack_kv_str(pk, "address", job->identity.email);
    ain_mp_pack_kv_str(pk, "access_token", job->tokens.access_token);
    ain_mp_pack_kv_i64(pk, "expires_in", job->tokens.expires_in);
    ain_request_reply_packed(job->req, AIN_STATUS_OK);
    ain_metric_inc(st->m.refreshed);
    ain__job_destroy(&job);
}

static void s_token_stored(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__job_t *job = arg;
    (void)pg;
    if (s_db_failed(job, o))
        return;
    ain_metric_inc(((s_state_t *)job->state)->m.rotated);
    s_answer_token(job);
}

static void s_marked_revoked(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__job_t *job = arg;
    (void)pg;
    if (s_db_failed(job, o))
        return;
    s_state_t *st = job->state;
    ain_metric_inc(st->m.reauth);
    ain_warn(st->log, "%s refused the refresh token of account %llu (%s): reauth required",
             job->provider->name, (unsigned long long)job->account, job->why);
    s_job_refuse(job, AIN_STATUS_CONFLICT, "REAUTH_REQUIRED",
                 "the provider no longer accepts this account's token; sign in again");
}

static void s_refresh_done(ain__job_t *job)
{
    if (job->outcome == AIN_ACCOUNTS_P_INVALID_GRANT) {
        char aid[24], uid[24];
        s_u64(job->account, aid, sizeof aid);
        s_u64(job->user, uid, sizeof uid);
        const char *params[] = {aid, uid};
        s_query(job, AIN_Q_ACCOUNT_REVOKED, 2, params, s_marked_revoked);
        return;
    }
    if (job->outcome != AIN_ACCOUNTS_P_OK) {
        s_provider_failed(job);
        return;
    }
    const char *fresh = job->tokens.refresh_token;
    if (fresh && strcmp(fresh, job->refresh) != 0) /* rotated: the new one replaces the old */
        s_store_token(job, s_token_stored);
    else
        s_answer_token(job);
}

/* Opens the sealed token of the row in `r` into job->refresh; 0, or -1 having answered. */
static int s_open_token(ain__job_t *job, const PGresult *r)
{
    s_state_t *st = job->state;
    size_t hlen = (size_t)PQgetlength(r, 0, 2), len = 0;
    uint8_t *sealed = ain_malloc(hlen / 2 + 1);
    char *plain = ain_malloc(hlen / 2 + 1);
    char aad[S_AAD_MAX];
    size_t out_len = 0;
    const char *why = "bad binding";
    int aad_len =
        ain_crypto_account_aad(aad, sizeof aad, job->user, job->provider->account, job->account);
    int rc = -1;
    if (ain_crypto_hex_decode(PQgetvalue(r, 0, 2), hlen, sealed, hlen / 2, &len) < 0)
        why = "not hexadecimal";
    else if (aad_len >= 0)
        rc = ain_crypto_open(st->keys, sealed, len, aad, (size_t)aad_len, (uint8_t *)plain, len,
                             &out_len, &why);
    free(sealed);
    if (rc == 0) {
        plain[out_len] = '\0';
        job->refresh = plain;
        return 0;
    }
    free(plain);
    ain_warn(st->log, "the token of account %llu does not open: %s",
             (unsigned long long)job->account, why);
    s_job_refuse(job, AIN_STATUS_ERROR, "TOKEN_UNREADABLE",
                 "the stored token cannot be opened (wrong key or not this account's)");
    return -1;
}

static void s_got_account(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__job_t *job = arg;
    s_state_t *st = job->state;
    (void)pg;
    if (s_db_failed(job, o))
        return;
    const PGresult *r = o->result;
    if (PQntuples(r) != 1) {
        s_job_refuse(job, AIN_STATUS_NOT_FOUND, "ACCOUNT_NOT_FOUND", "no such account");
        return;
    }
    ain_oauth_provider_t id = ain_provider_by_name(PQgetvalue(r, 0, 0));
    job->provider = &st->providers[id];
    snprintf(job->identity.email, sizeof job->identity.email, "%s", PQgetvalue(r, 0, 1));
    if (PQgetisnull(r, 0, 2) || strcmp(PQgetvalue(r, 0, 3), "revoked") == 0) {
        s_job_refuse(job, AIN_STATUS_CONFLICT, "REAUTH_REQUIRED",
                     "this account has no usable token; sign in again");
        return;
    }
    if (!job->provider->client_id) {
        s_job_refuse(job, AIN_STATUS_UNAVAILABLE, "PROVIDER_NOT_CONFIGURED",
                     "this account's provider is not configured here");
        return;
    }
    if (s_open_token(job, r) < 0)
        return;
    if (ain__pool_submit(st->pool, job) < 0) {
        ain_metric_inc(st->m.busy);
        s_job_refuse(job, AIN_STATUS_BUSY, "BUSY", "too many provider calls in progress; retry");
    }
}

static int s_token(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (env->user == 0) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "the envelope names no user");
        return 0;
    }
    if (s_unconfigured(st, req))
        return 0;
    uint64_t account = 0;
    ain_body_t body;
    int got = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        got = ain_mp_get_u64(body.root, "account", &account);
    ain_body_release(&body);
    if (got != 1 || account == 0) {
        s_refuse(st, req, AIN_STATUS_INVALID, "INVALID_REQUEST", "body must be {account: id}");
        return 0;
    }
    ain__job_t *job = ain__job_new(AIN__JOB_REFRESH);
    job->deadline_ms = env->deadline_ms - S_MARGIN_MS;
    job->user = env->user;
    job->account = account;
    job->req = req;
    job->state = st;
    char aid[24], uid[24];
    s_u64(account, aid, sizeof aid);
    s_u64(env->user, uid, sizeof uid);
    const char *params[] = {aid, uid};
    s_query(job, AIN_Q_ACCOUNT_GET, 2, params, s_got_account);
    return 0;
}

/* ------------------------------------------------------------ start, stop */

static void s_done(ain__job_t *job, void *arg)
{
    (void)arg;
    if (job->kind == AIN__JOB_EXCHANGE)
        s_exchange_done(job);
    else
        s_refresh_done(job);
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    s_state_t *st = arg;
    (void)actor;
    ain_metric_set(st->m.pg_ready, st->pg ? ain_pg_ready(st->pg) : 0);
    ain_metric_set(st->m.pending, st->pool ? (int64_t)ain__pool_pending(st->pool) : 0);
}

static void s_metrics_init(s_metrics_t *m, ain_metrics_t *reg)
{
    m->linked = ain_metrics_counter(reg, "accounts.linked");
    m->refreshed = ain_metrics_counter(reg, "accounts.token_refreshed");
    m->rotated = ain_metrics_counter(reg, "accounts.token_rotated");
    m->reauth = ain_metrics_counter(reg, "accounts.reauth_required");
    m->provider_errors = ain_metrics_counter(reg, "accounts.provider_errors");
    m->refused = ain_metrics_counter(reg, "accounts.refused");
    m->invalid = ain_metrics_counter(reg, "accounts.invalid");
    m->busy = ain_metrics_counter(reg, "accounts.busy");
    m->db_errors = ain_metrics_counter(reg, "accounts.db_errors");
    m->pending = ain_metrics_gauge(reg, "accounts.calls_pending");
    m->pg_ready = ain_metrics_gauge(reg, "accounts.pg.ready_connections");
}

/* Loads both providers; -1 (logged) if a setting is malformed. */
static int s_providers(s_state_t *st, const ain_config_t *cfg)
{
    const char *why = NULL;
    for (int id = AIN_OAUTH_GOOGLE; id <= AIN_OAUTH_MICROSOFT; id++) {
        if (ain_provider_load(cfg, (ain_oauth_provider_t)id, &st->providers[id], &why) < 0) {
            ain_error(st->log, "provider settings: %s", why);
            return -1;
        }
        const ain_provider_t *p = &st->providers[id];
        if (p->client_id)
            ain_info(st->log, "%s sign-in on: token %s", p->name, p->token_url);
    }
    return 0;
}

/* Production refuses to start without the database or the token key; development warns and
 * answers UNAVAILABLE, as the session actor does. */
static int s_start(ain_actor_t *actor)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    s_state_t *st = AIN_NEW(s_state_t);
    st->actor = actor;
    st->log = ain_actor_log(actor);
    st->terms_version = ain_config_str(cfg, AIN_CFG_TERMS_VERSION);
    s_metrics_init(&st->m, ain_actor_metrics(actor));
    if (s_providers(st, cfg) < 0) {
        free(st);
        return -1;
    }
    char *error = NULL;
    st->keys = ain_crypto_keyring_from_config(cfg, &error);
    const char *db = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    if (!st->keys || !db) {
        int rc = ain_actor_unconfigured(actor, !st->keys
                                                   ? (error ? error : "AINBOX_TOKEN_KEY is not set")
                                                   : "DATABASE_URL is not set");
        free(error);
        if (rc < 0) {
            ain_crypto_keyring_destroy(&st->keys);
            free(st);
            return -1;
        }
    }
    if (db && st->keys) {
        st->pg = ain_pg_new(actor, db, (int)ain_config_int(cfg, AIN_CFG_AINBOX_PG_POOL));
        ain_pg_finish_running(st->pg); /* a rotated provider token must never be half-known */
    }
    st->pool =
        ain__pool_new(actor, (int)ain_config_int(cfg, AIN_CFG_AINBOX_OAUTH_THREADS), S_QUEUE_MAX,
                      ain_config_int(cfg, AIN_CFG_AINBOX_OAUTH_HTTP_TIMEOUT_MS), s_done, st);
    if (!st->pool) {
        ain_error(st->log, "cannot start the provider call threads");
        ain_pg_destroy(&st->pg);
        ain_crypto_keyring_destroy(&st->keys);
        free(st);
        return -1;
    }
    ain_actor_set_state(actor, st);
    ain_actor_timer(actor, 1000, true, s_tick, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    ain__pool_destroy(&st->pool); /* jobs come back and answer (queries may be queued) */
    ain_pg_destroy(&st->pg);      /* fails what waits: the callbacks answer and free */
    ain_crypto_keyring_destroy(&st->keys);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_ACCOUNT_OAUTH_COMPLETE, s_complete},
    {AIN_MSG_ACCOUNT_TOKEN, s_token},
    {0, NULL},
};

const ain_actor_def_t ain_accounts_actor = {
    .service = "accounts",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Requests wait on providers and the database without holding the thread. */
    .credit = 128,
};
