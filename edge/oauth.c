/* oauth.c: sign-in with Google and Microsoft (OAuth 2.0 authorization code, state and PKCE).
 *
 *   GET /google, /auth/google      302 to Google's consent page
 *   GET /google/callback           Google sends the browser back here with code and state
 *   GET /auth/outlook              302 to Microsoft's consent page
 *   GET /auth/outlook/callback     Microsoft sends the browser back here
 *
 * The login route makes a PKCE verifier, keeps it in a short-lived httpOnly cookie
 * (`oauth_google` / `oauth_microsoft`, 10 minutes, SameSite=Lax so it comes back on the
 * provider's top-level redirect), and sends the browser to the provider with a state signed over
 * that cookie (runtime/oauth.h: good only in this browser, for this provider, for 10 minutes)
 * and the S256 challenge. The callback checks the state against the cookie before the code is
 * used, hands code and verifier to the accounts actor (which talks to the provider and opens the
 * session), sets the session cookies exactly as session.c does, clears the login cookie and
 * sends the browser to FRONTEND_BASE_URL + /terms or /dashboard (/me without a frontend URL, as
 * the original). No server-side state: any edge can take the callback.
 *
 * Refusals are JSON {error: {code, message}} with an honest status (not a redirect), so a
 * failed sign-in is never mistaken for a working one: 400 INVALID_STATE (no cookie, forged,
 * another browser's, another provider's, expired), 403 ACCESS_DENIED (the user declined), 400
 * OAUTH_ERROR (another provider error), 400 INVALID_GRANT (the provider refused the code: used
 * or expired), 502 (the provider failed or answered nonsense), 504 (it did not answer), 503
 * PROVIDER_NOT_CONFIGURED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/crypto.h"
#include "runtime/oauth.h"
#include "runtime/provider.h"

#define S_LOGIN_TTL_S   600
#define S_URL_MAX       4096
#define S_CODE_MAX      4096
#define S_HINT_MAX      254
#define S_SYNC_START_MS 500 /* SYNC_START after a Gmail sign-in: best effort */

struct ain__oauth {
    bool has_key; /* AINBOX_TOKEN_KEY is set: states can be made */
    uint8_t state_key[AIN_CRYPTO_KEY_LEN];
    ain_provider_t providers[3]; /* by ain_oauth_provider_t */
    int call_timeout_ms;         /* the accounts actor calls the provider twice */
};

int ain__oauth_init(ain_edge_t *edge, const ain_config_t *cfg)
{
    struct ain__oauth *o = AIN_NEW(struct ain__oauth);
    const char *why = NULL;
    for (int id = AIN_OAUTH_GOOGLE; id <= AIN_OAUTH_MICROSOFT; id++) {
        if (ain_provider_load(cfg, (ain_oauth_provider_t)id, &o->providers[id], &why) < 0) {
            ain_error(edge->log, "provider settings: %s", why);
            free(o);
            return -1;
        }
    }
    o->call_timeout_ms = 2 * (int)ain_config_int(cfg, AIN_CFG_AINBOX_OAUTH_HTTP_TIMEOUT_MS) + 3000;
    if (o->providers[AIN_OAUTH_GOOGLE].client_id || o->providers[AIN_OAUTH_MICROSOFT].client_id) {
        char *error = NULL;
        ain_crypto_keyring_t *ring = ain_crypto_keyring_from_config(cfg, &error);
        o->has_key =
            ring && ain_crypto_keyring_derive(ring, AIN_OAUTH_STATE_LABEL, o->state_key) == 0;
        if (!o->has_key)
            ain_warn(edge->log, "provider sign-in off: %s", error ? error : "no token key");
        free(error);
        ain_crypto_keyring_destroy(&ring);
    }
    edge->oauth = o;
    return 0;
}

void ain__oauth_destroy(ain_edge_t *edge)
{
    if (!edge->oauth)
        return;
    ain_crypto_wipe(edge->oauth, sizeof *edge->oauth);
    free(edge->oauth);
    edge->oauth = NULL;
}

/* ------------------------------------------------------------ helpers */

static const char *s_cookie_name(ain_oauth_provider_t id)
{
    return id == AIN_OAUTH_GOOGLE ? "oauth_google" : "oauth_microsoft";
}

/* The provider a route serves, from its path. */
static ain_oauth_provider_t s_route_provider(ain__http_t *http)
{
    const char *path = http->path;
    return strstr(path, "google") ? AIN_OAUTH_GOOGLE : AIN_OAUTH_MICROSOFT;
}

/* The route's provider if it can sign anyone in, else NULL having answered 503. */
static const ain_provider_t *s_provider(ain__http_t *http, int *status)
{
    struct ain__oauth *o = http->edge->oauth;
    const ain_provider_t *p = &o->providers[s_route_provider(http)];
    if (p->client_id && o->has_key)
        return p;
    char message[160];
    snprintf(message, sizeof message, "sign-in with %s is not configured here (%s)", p->name,
             p->client_id ? "AINBOX_TOKEN_KEY" : "its client id");
    *status = ain__http_error(http, 503, "PROVIDER_NOT_CONFIGURED", message);
    return NULL;
}

/* A 302 to `location` with extra header lines. */
static int s_redirect(ain__http_t *http, const char *location, const char *extra)
{
    char *headers = ain_sprintf("Location: %s\r\nContent-Length: 0\r\nCache-Control: no-store\r\n"
                                "%s%s",
                                location, http->headers, extra ? extra : "");
    ain__http_head(http->conn, 302, headers);
    free(headers);
    ain__http_count(http->edge, 302);
    return 302;
}

/* ------------------------------------------------------------ login */

/* The provider's authorization URL for this login into out; 0 or -1. */
static int s_auth_url(const ain_provider_t *p, const char *state, const char *challenge,
                      const char *hint, char *out, size_t size)
{
    size_t n =
        (size_t)snprintf(out, size, "%s%c", p->auth_url, strchr(p->auth_url, '?') ? '&' : '?');
    if (n >= size)
        return -1;
    size_t start = n, len = 0;
    char *q = out + start;
    size_t qsize = size - start;
    int bad = ain_provider_param(q, qsize, &len, "client_id", p->client_id) |
              ain_provider_param(q, qsize, &len, "redirect_uri", p->redirect_uri) |
              ain_provider_param(q, qsize, &len, "response_type", "code") |
              ain_provider_param(q, qsize, &len, "scope", p->scopes) |
              ain_provider_param(q, qsize, &len, "state", state) |
              ain_provider_param(q, qsize, &len, "code_challenge", challenge) |
              ain_provider_param(q, qsize, &len, "code_challenge_method", "S256");
    if (p->id == AIN_OAUTH_GOOGLE) /* a refresh token, asked again on every consent (§1.8) */
        bad |= ain_provider_param(q, qsize, &len, "access_type", "offline") |
               ain_provider_param(q, qsize, &len, "prompt", "consent");
    else
        bad |= ain_provider_param(q, qsize, &len, "response_mode", "query");
    if (hint && hint[0])
        bad |= ain_provider_param(q, qsize, &len, "login_hint", hint);
    return bad ? -1 : 0;
}

int ain__oauth_login(ain__http_t *http)
{
    int status;
    const ain_provider_t *p = s_provider(http, &status);
    if (!p)
        return status;
    /* login_hint: an address the provider pre-fills (and the fakes sign in as). */
    char hint[S_HINT_MAX + 1];
    int hn = ain__http_query(http, "login_hint", hint, sizeof hint);
    for (int i = 0; i < hn; i++)
        if ((unsigned char)hint[i] <= 0x20 || hint[i] == 0x7f)
            hn = -1;
    if (hn < 0)
        hint[0] = '\0';
    char verifier[AIN_OAUTH_VERIFIER_LEN + 1], challenge[AIN_OAUTH_CHALLENGE_LEN + 1];
    char state[AIN_OAUTH_STATE_LEN + 1];
    char *url = ain_malloc(S_URL_MAX);
    int rc = -1;
    if (ain_oauth_verifier_new(verifier) == 0 &&
        ain_oauth_challenge(verifier, AIN_OAUTH_VERIFIER_LEN, challenge) == 0 &&
        ain_oauth_state_new(http->edge->oauth->state_key, p->id, verifier, AIN_OAUTH_VERIFIER_LEN,
                            (int64_t)time(NULL) + S_LOGIN_TTL_S, state) == 0)
        rc = s_auth_url(p, state, challenge, hint, url, S_URL_MAX);
    if (rc < 0) {
        free(url);
        return ain__http_error(http, 500, "ERROR", "cannot start the sign-in");
    }
    char *cookie = ain__session_cookie(http, s_cookie_name(p->id), verifier, S_LOGIN_TTL_S);
    ain_crypto_wipe(verifier, sizeof verifier);
    rc = s_redirect(http, url, cookie);
    free(cookie);
    free(url);
    return rc;
}

/* ------------------------------------------------------------ callback */

/* The HTTP status for a refusal of the accounts actor: the provider's failures are a bad
 * gateway (502) or a gateway timeout (504), the rest as our statuses map. */
static int s_http_status(ain_status_t st, const char *code)
{
    if (code && strncmp(code, "PROVIDER_", 9) == 0 && strcmp(code, "PROVIDER_NOT_CONFIGURED"))
        return strcmp(code, "PROVIDER_TIMEOUT") == 0 ? 504 : 502;
    return ain_status_http(st);
}

/* Asks the accounts actor to finish the sign-in; its status, its answer as JSON in *reply. */
static ain_status_t s_complete(ain__http_t *http, const ain_provider_t *p, const char *code,
                               const char *verifier, json_t **reply)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    ain_mp_pack_kv_str(&pk, "provider", p->name);
    ain_mp_pack_kv_str(&pk, "code", code);
    ain_mp_pack_kv_str(&pk, "code_verifier", verifier);
    ain_mp_pack_kv_str(&pk, "redirect_uri", p->redirect_uri);
    ain__session_pack_client(http, &pk);
    ain_status_t st =
        ain__http_call_reply(http, "accounts", AIN_MSG_ACCOUNT_OAUTH_COMPLETE, 0, buf.data,
                             buf.size, http->edge->oauth->call_timeout_ms, reply);
    ain_crypto_wipe(buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    return st;
}

/* Where the browser goes once signed in. */
static char *s_landing(ain__http_t *http, bool terms_required)
{
    const char *front =
        ain_config_str(ain_proc_config(http->edge->proc), AIN_CFG_FRONTEND_BASE_URL);
    if (!front || !front[0])
        return ain_strdup("/me");
    size_t n = strlen(front);
    while (n > 0 && front[n - 1] == '/')
        n--;
    return ain_sprintf("%.*s%s", (int)n, front, terms_required ? "/terms" : "/dashboard");
}

/* A Gmail account just linked starts its backfill now, at high priority,
 * rather than at the sync actor's next poll (within 10 s, at low
 * priority). Best effort: a short wait, and the poll still covers an
 * account whose SYNC_START was lost. */
static void s_start_sync(ain__http_t *http, json_t *r)
{
    json_int_t user = json_integer_value(json_object_get(r, "user"));
    json_int_t account = json_integer_value(json_object_get(r, "account"));
    const char *provider = json_string_value(json_object_get(r, "provider"));
    if (user <= 0 || account <= 0 || !provider || strcmp(provider, "google") != 0)
        return;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_u64(&pk, "account", (uint64_t)account);
    json_t *reply = NULL;
    ain__http_call_reply(http, "sync", AIN_MSG_SYNC_START, (uint64_t)user, buf.data, buf.size,
                         S_SYNC_START_MS, &reply);
    json_decref(reply);
    msgpack_sbuffer_destroy(&buf);
}

/* The accounts actor answered: cookies and the landing page, or its refusal. */
static int s_finish(ain__http_t *http, ain_status_t st, json_t *r, char *clear)
{
    char *cookies = st == AIN_STATUS_OK ? ain__session_set_cookies(http, r) : NULL;
    int rc;
    if (!cookies) {
        char why[128];
        const char *code = json_string_value(json_object_get(r, "code"));
        const char *message = json_string_value(json_object_get(r, "message"));
        if (st == AIN_STATUS_OK)
            st = AIN_STATUS_ERROR, code = "BAD_GATEWAY", message = "malformed answer";
        rc = ain__http_error_extra(
            http, s_http_status(st, code), code ? code : ain_status_name(st),
            message ? message : ain__http_no_answer(http, "accounts", why, sizeof why), clear);
    } else {
        s_start_sync(http, r);
        char *both = ain_sprintf("%s%s", cookies, clear);
        char *landing = s_landing(http, json_is_true(json_object_get(r, "terms_required")));
        rc = s_redirect(http, landing, both);
        free(landing);
        free(both);
        ain_crypto_wipe(cookies, strlen(cookies));
        free(cookies);
    }
    json_decref(r);
    return rc;
}

int ain__oauth_callback(ain__http_t *http)
{
    int status;
    const ain_provider_t *p = s_provider(http, &status);
    if (!p)
        return status;
    char *clear = ain__session_cookie(http, s_cookie_name(p->id), "", 0);
    char error[64], state[AIN_OAUTH_STATE_LEN + 8], verifier[AIN_OAUTH_VERIFIER_MAX + 1];
    char *code = ain_malloc(S_CODE_MAX);
    int rc;
    const char *why = NULL;
    const char *cookies = mg_get_header(http->conn, "Cookie");
    int vn = cookies ? mg_get_cookie(cookies, s_cookie_name(p->id), verifier, sizeof verifier) : -1;
    if (ain__http_query(http, "error", error, sizeof error) >= 0) {
        char message[128];
        snprintf(message, sizeof message, "%s answered %.64s", p->name, error);
        bool denied = strcmp(error, "access_denied") == 0;
        rc = ain__http_error_extra(http, denied ? 403 : 400,
                                   denied ? "ACCESS_DENIED" : "OAUTH_ERROR", message, clear);
    } else if (ain__http_query(http, "code", code, S_CODE_MAX) <= 0 ||
               ain__http_query(http, "state", state, sizeof state) <= 0) {
        rc = ain__http_error_extra(http, 400, "INVALID_REQUEST", "code and state are required",
                                   clear);
    } else if (vn <= 0 || !ain_oauth_verifier_valid(verifier, (size_t)vn)) {
        rc = ain__http_error_extra(
            http, 400, "INVALID_STATE",
            "this browser did not start this sign-in (no login cookie); start again", clear);
    } else if (ain_oauth_state_check(http->edge->oauth->state_key, state, strlen(state), p->id,
                                     verifier, (size_t)vn, (int64_t)time(NULL), &why) < 0) {
        char message[128];
        snprintf(message, sizeof message, "state refused: %s; start again", why);
        rc = ain__http_error_extra(http, 400, "INVALID_STATE", message, clear);
    } else {
        json_t *r;
        ain_status_t st = s_complete(http, p, code, verifier, &r);
        rc = s_finish(http, st, r, clear);
    }
    ain_crypto_wipe(code, S_CODE_MAX);
    ain_crypto_wipe(verifier, sizeof verifier);
    free(code);
    free(clear);
    return rc;
}
