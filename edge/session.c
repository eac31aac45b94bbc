/* session.c: sign-in sessions and terms at the edge; the session actor does the work.
 *
 *   GET  /api/v1/session          the user's profile, terms state and providers (envelope)
 *   POST /api/v1/session/refresh  the refresh_token cookie rotated: both cookies set, {ok:true}
 *   POST /auth/refresh            the same (the original's name)
 *   POST /auth/logout             the session revoked, both cookies cleared, {ok:true}
 *   GET  /api/v1/terms            the current terms (TERMS_*), no authentication
 *   POST /api/v1/terms/accept     {version}: the user accepts the current terms
 *   POST /api/v1/dev/session      {email, name?, picture?}: signs in without OAuth; development
 *                                 and test only (404 in production)
 *
 * Cookies are httpOnly, SameSite=Lax, Path=/, Max-Age = the token's lifetime, Secure as
 * AINBOX_COOKIE_SECURE says. The /api/v1 answers use the original's envelope {data, error,
 * meta, requestId}; every refusal carries {error: {code, message}}, a failed sign-in 401. JSON
 * bodies are read strictly (bounded, duplicate and unknown members refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/jwt.h"

#define S_BODY_MAX 4096
#define S_UA_MAX   256

/* ------------------------------------------------------------ answers */

static const ain_config_t *s_cfg(ain__http_t *http)
{
    return ain_proc_config(http->edge->proc);
}

static bool s_production(ain__http_t *http)
{
    return strcmp(ain_config_str(s_cfg(http), AIN_CFG_NODE_ENV), "production") == 0;
}

/* The original's envelope around `data` (stolen; NULL when an answer could not be read). */
static int s_envelope(ain__http_t *http, json_t *data, const char *extra)
{
    if (!data)
        return ain__http_error(http, 502, "BAD_GATEWAY",
                               "malformed answer from the session service");
    json_t *body = json_pack("{s:o,s:n,s:n,s:n}", "data", data, "error", "meta", "requestId");
    return ain__http_json_extra(http, 200, body, extra);
}

static int s_refuse(ain__http_t *http, int status, const char *code, const char *message,
                    const char *extra)
{
    json_t *body = json_pack("{s:n,s:{s:s,s:s},s:n,s:n}", "data", "error", "code", code, "message",
                             message, "meta", "requestId");
    if (status == 401)
        ain_metric_inc(http->edge->m.auth_refused);
    return ain__http_json_extra(http, status, body, extra);
}

/* An actor's refusal: its {code, message} when it sent one, else the status's name. */
static int s_fail(ain__http_t *http, ain_status_t st, json_t *reply, const char *extra)
{
    const char *code = json_string_value(json_object_get(reply, "code"));
    const char *message = json_string_value(json_object_get(reply, "message"));
    char why[128];
    if (!message)
        message = ain__http_no_answer(http, "session", why, sizeof why);
    int rc = s_refuse(http, ain_status_http(st), code ? code : ain_status_name(st), message, extra);
    json_decref(reply);
    return rc;
}

/* ------------------------------------------------------------ cookies */

static bool s_secure(ain__http_t *http)
{
    const char *mode = ain_config_str(s_cfg(http), AIN_CFG_AINBOX_COOKIE_SECURE);
    return strcmp(mode, "always") == 0 || (strcmp(mode, "auto") == 0 && s_production(http));
}

char *ain__session_cookie(ain__http_t *http, const char *name, const char *value, long long max_age)
{
    return ain_sprintf("Set-Cookie: %s=%s; Max-Age=%lld; Path=/; HttpOnly; SameSite=Lax%s\r\n",
                       name, value, max_age, s_secure(http) ? "; Secure" : "");
}

char *ain__session_set_cookies(ain__http_t *http, json_t *reply)
{
    const char *access = json_string_value(json_object_get(reply, "access"));
    const char *refresh = json_string_value(json_object_get(reply, "refresh"));
    json_int_t access_ttl = json_integer_value(json_object_get(reply, "access_ttl_s"));
    json_int_t refresh_ttl = json_integer_value(json_object_get(reply, "refresh_ttl_s"));
    if (!access || !refresh || access_ttl <= 0 || refresh_ttl <= 0)
        return NULL;
    char *a = ain__session_cookie(http, "access_token", access, access_ttl);
    char *r = ain__session_cookie(http, "refresh_token", refresh, refresh_ttl);
    char *both = ain_sprintf("%s%s", a, r);
    free(a);
    free(r);
    return both;
}

static char *s_clear_cookies(ain__http_t *http)
{
    char *a = ain__session_cookie(http, "access_token", "", 0);
    char *r = ain__session_cookie(http, "refresh_token", "", 0);
    char *both = ain_sprintf("%s%s", a, r);
    free(a);
    free(r);
    return both;
}

/* The refresh_token cookie into buf: 1 found, 0 absent, -1 too long. */
static int s_refresh_cookie(ain__http_t *http, char *buf, size_t size)
{
    const char *cookies = mg_get_header(http->conn, "Cookie");
    int n = cookies ? mg_get_cookie(cookies, "refresh_token", buf, size) : -1;
    if (n == -1 || n == 0)
        return 0;
    return n > 0 ? 1 : -1;
}

/* ------------------------------------------------------------ calls */

typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} s_body_t;

static void s_body_init(s_body_t *b, uint32_t members)
{
    msgpack_sbuffer_init(&b->buf);
    msgpack_packer_init(&b->pk, &b->buf, msgpack_sbuffer_write);
    msgpack_pack_map(&b->pk, members);
}

/* The client's user agent (control characters replaced, bounded) and address. */
void ain__session_pack_client(ain__http_t *http, msgpack_packer *pk)
{
    char ua[S_UA_MAX];
    const char *given = mg_get_header(http->conn, "User-Agent");
    snprintf(ua, sizeof ua, "%s", given ? given : "");
    for (char *p = ua; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    ain_mp_pack_kv_str(pk, "user_agent", ua);
    ain_mp_pack_kv_str(pk, "ip", http->info->remote_addr);
}

/* Asks the session service; returns its status, with its answer body as JSON in *reply
 * (caller owns; NULL if it sent none). Frees the body. */
static ain_status_t s_call(ain__http_t *http, uint16_t type, uint64_t user, s_body_t *b,
                           json_t **reply)
{
    ain_status_t st = ain__http_call_reply(http, "session", type, user, b->buf.data, b->buf.size,
                                           http->edge->call_timeout_ms, reply);
    msgpack_sbuffer_destroy(&b->buf);
    return st;
}

/* ------------------------------------------------------------ request bodies */

/* Checks that `root` has only members named in `names` (NULL-terminated), each a string, and
 * that `required` is present. Returns NULL, or why not (written into `why`). */
static const char *s_strict(json_t *root, const char *const *names, const char *required, char *why,
                            size_t size)
{
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        bool known = false;
        for (size_t i = 0; names[i]; i++)
            known |= strcmp(key, names[i]) == 0;
        if (!known) {
            snprintf(why, size, "unknown member \"%.64s\"", key);
            return why;
        }
        if (!json_is_string(value)) {
            snprintf(why, size, "member \"%.64s\" must be a string", key);
            return why;
        }
    }
    if (!json_object_get(root, required)) {
        snprintf(why, size, "member \"%s\" is required", required);
        return why;
    }
    return NULL;
}

/* ------------------------------------------------------------ handlers */

int ain__session_get(ain__http_t *http)
{
    s_body_t b;
    s_body_init(&b, 1);
    ain_mp_pack_kv_u64(&b.pk, "session", http->session);
    json_t *r;
    ain_status_t st = s_call(http, AIN_MSG_SESSION_GET, http->user, &b, &r);
    if (st != AIN_STATUS_OK)
        return s_fail(http, st, r, NULL);
    const char *current = ain_config_str(s_cfg(http), AIN_CFG_TERMS_VERSION);
    const char *accepted = json_string_value(json_object_get(r, "terms_version"));
    json_t *ms = json_object_get(r, "terms_accepted_ms");
    json_t *accepted_at = json_null();
    if (json_is_integer(ms)) {
        char iso[40];
        ain__http_iso_time((int64_t)json_integer_value(ms), iso, sizeof iso);
        accepted_at = json_string(iso);
    }
    json_t *data =
        json_pack("{s:{s:O,s:O,s:O,s:O},s:{s:b,s:s,s:o},s:{s:O,s:O}}", "user", "id",
                  json_object_get(r, "id"), "email", json_object_get(r, "email"), "name",
                  json_object_get(r, "name"), "picture", json_object_get(r, "picture"), "terms",
                  "required", !accepted || strcmp(accepted, current) != 0, "version", current,
                  "acceptedAt", accepted_at, "providers", "google", json_object_get(r, "google"),
                  "microsoft", json_object_get(r, "microsoft"));
    json_decref(r);
    return s_envelope(http, data, NULL);
}

int ain__session_refresh(ain__http_t *http)
{
    char token[AIN_JWT_MAX_LEN + 1];
    int found = s_refresh_cookie(http, token, sizeof token);
    if (found <= 0)
        return s_refuse(http, 401, found == 0 ? "NO_REFRESH_TOKEN" : "INVALID_REFRESH_TOKEN",
                        found == 0 ? "no refresh_token cookie" : "refresh token refused: too_long",
                        NULL);
    s_body_t b;
    s_body_init(&b, 3);
    ain_mp_pack_kv_str(&b.pk, "refresh", token);
    ain__session_pack_client(http, &b.pk);
    json_t *r;
    ain_status_t st = s_call(http, AIN_MSG_SESSION_REFRESH, 0, &b, &r);
    char *cookies = st == AIN_STATUS_OK ? ain__session_set_cookies(http, r) : NULL;
    if (st == AIN_STATUS_OK && !cookies)
        st = AIN_STATUS_ERROR;
    if (st != AIN_STATUS_OK) {
        /* A refused token is dead for good: the browser may as well forget it. */
        char *clear = st == AIN_STATUS_UNAUTHENTICATED ? s_clear_cookies(http) : NULL;
        int rc = s_fail(http, st, r, clear);
        free(clear);
        return rc;
    }
    json_decref(r);
    int rc = ain__http_json_extra(http, 200, json_pack("{s:b}", "ok", 1), cookies);
    free(cookies);
    return rc;
}

/* Revokes by the refresh cookie, else by a valid access token's session. */
static ain_status_t s_revoke(ain__http_t *http, json_t **r)
{
    char token[AIN_JWT_MAX_LEN + 1];
    s_body_t b;
    ain_status_t st = AIN_STATUS_UNAUTHENTICATED;
    *r = NULL;
    if (s_refresh_cookie(http, token, sizeof token) == 1) {
        s_body_init(&b, 1);
        ain_mp_pack_kv_str(&b.pk, "refresh", token);
        st = s_call(http, AIN_MSG_SESSION_REVOKE, 0, &b, r);
    }
    if (st == AIN_STATUS_UNAUTHENTICATED && ain__auth_peek(http) == 0 && http->session) {
        json_decref(*r);
        s_body_init(&b, 1);
        ain_mp_pack_kv_u64(&b.pk, "session", http->session);
        st = s_call(http, AIN_MSG_SESSION_REVOKE, http->user, &b, r);
    }
    return st;
}

int ain__session_logout(ain__http_t *http)
{
    json_t *r;
    ain_status_t st = s_revoke(http, &r);
    char *clear = s_clear_cookies(http);
    int rc;
    /* No valid token: nothing to revoke, and the cookies go anyway. A service that did not
     * answer is said, so nobody believes a session ended that did not. */
    if (st == AIN_STATUS_OK || st == AIN_STATUS_UNAUTHENTICATED || st == AIN_STATUS_INVALID) {
        json_decref(r);
        rc = ain__http_json_extra(http, 200, json_pack("{s:b}", "ok", 1), clear);
    } else {
        rc = s_fail(http, st, r, clear);
    }
    free(clear);
    return rc;
}

int ain__session_dev_open(ain__http_t *http)
{
    if (s_production(http)) {
        ain_metric_inc(http->edge->m.not_found);
        return ain__http_error(http, 404, "NOT_FOUND", "no such route");
    }
    int status;
    json_t *in = ain__http_read_json(http, S_BODY_MAX, &status);
    if (!in)
        return status;
    static const char *const names[] = {"email", "name", "picture", NULL};
    char why[128];
    if (s_strict(in, names, "email", why, sizeof why)) {
        json_decref(in);
        return s_refuse(http, 400, "INVALID_REQUEST", why, NULL);
    }
    s_body_t b;
    s_body_init(&b, 2 + (uint32_t)json_object_size(in));
    const char *key;
    json_t *value;
    json_object_foreach(in, key, value) ain_mp_pack_kv_str(&b.pk, key, json_string_value(value));
    ain__session_pack_client(http, &b.pk);
    json_decref(in);
    json_t *r;
    ain_status_t st = s_call(http, AIN_MSG_SESSION_OPEN, 0, &b, &r);
    char *cookies = st == AIN_STATUS_OK ? ain__session_set_cookies(http, r) : NULL;
    if (!cookies)
        return s_fail(http, st == AIN_STATUS_OK ? AIN_STATUS_ERROR : st, r, NULL);
    json_t *data = json_pack("{s:{s:O},s:O}", "user", "id", json_object_get(r, "user"), "session",
                             json_object_get(r, "session"));
    json_decref(r);
    int rc = s_envelope(http, data, cookies);
    free(cookies);
    return rc;
}

static json_t *s_setting(const ain_config_t *cfg, ain_cfg_id_t id)
{
    const char *v = ain_config_str(cfg, id);
    return v ? json_string(v) : json_null();
}

int ain__terms_get(ain__http_t *http)
{
    const ain_config_t *cfg = s_cfg(http);
    json_t *data = json_pack(
        "{s:o,s:o,s:o,s:o,s:o}", "version", s_setting(cfg, AIN_CFG_TERMS_VERSION), "title",
        s_setting(cfg, AIN_CFG_TERMS_TITLE), "htmlUrl", s_setting(cfg, AIN_CFG_TERMS_HTML_URL),
        "mdUrl", s_setting(cfg, AIN_CFG_TERMS_MD_URL), "updatedAt",
        s_setting(cfg, AIN_CFG_TERMS_UPDATED_AT));
    return s_envelope(http, data, NULL);
}

int ain__terms_accept(ain__http_t *http)
{
    int status;
    json_t *in = ain__http_read_json(http, S_BODY_MAX, &status);
    if (!in)
        return status;
    static const char *const names[] = {"version", NULL};
    char why[128];
    if (s_strict(in, names, "version", why, sizeof why)) {
        json_decref(in);
        return s_refuse(http, 400, "INVALID_REQUEST", why, NULL);
    }
    const char *current = ain_config_str(s_cfg(http), AIN_CFG_TERMS_VERSION);
    bool same = strcmp(json_string_value(json_object_get(in, "version")), current) == 0;
    json_decref(in);
    if (!same) {
        snprintf(why, sizeof why, "the current terms are version \"%.64s\"", current);
        return s_refuse(http, 409, "TERMS_VERSION_MISMATCH", why, NULL);
    }
    s_body_t b;
    s_body_init(&b, 1);
    ain_mp_pack_kv_str(&b.pk, "version", current);
    json_t *r;
    ain_status_t st = s_call(http, AIN_MSG_TERMS_ACCEPT, http->user, &b, &r);
    if (st != AIN_STATUS_OK)
        return s_fail(http, st, r, NULL);
    json_decref(r);
    return s_envelope(http, json_pack("{s:b,s:s}", "ok", 1, "version", current), NULL);
}
