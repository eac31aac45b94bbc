/* webhook.c: POST /webhooks/gmail/notifications, Gmail's push notifications (Cloud Pub/Sub).
 *
 * Gmail publishes {"emailAddress", "historyId"} to a Pub/Sub topic after a watched mailbox
 * changes; a push subscription POSTs it here as
 *   {"message": {"data": base64(JSON), "messageId", "publishTime", ...}, "subscription"}
 * (provider-apis.md 1.4). The route turns a valid one into SYNC_PUSH {email, history_id} to the
 * sync service (envelope user 0) and answers 204 once the sync service has taken it; a push
 * the sync service could not take (not running, busy, too slow) is answered 503, so Pub/Sub
 * delivers it again later, with its back-off. Nothing else happens here: the sync actor finds
 * the account and queues its history sync.
 *
 * Who may push: anyone who knows the subscription's shared secret, which the push endpoint's
 * URL carries as ?token= (AINBOX_GMAIL_PUSH_TOKEN), and, if AINBOX_GMAIL_PUSH_BEARER is set,
 * `Authorization: Bearer` with exactly that value. The secret is compared as SHA-256 digests
 * in constant time, so the time taken says nothing about how much of a guess was right, nor
 * its length. A Google-signed OIDC token (Pub/Sub's other way) is not verified: that needs
 * Google's rotating public keys (an RS256 JWKS fetch); use the token. Every refusal is the
 * same 401 body, checked before the body is read as JSON, so a stranger learns nothing (not
 * whether a mailbox exists, not whether the body would have parsed) and triggers nothing.
 * Without a token the route is off in every environment (503 NOT_CONFIGURED, and /health
 * says so under "off"): an unauthenticated webhook would let anyone start syncs.
 *
 * Malformed bodies (authenticated, but not the push shape) are 400 and counted: Pub/Sub would
 * retry them for days, but a body that does not parse never will, and 400 is the truth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/crypto.h"

/* Bounds on what a push carries: the body is a few hundred bytes in practice. */
#define S_BODY_MAX    8192
#define S_DATA_MAX    2048 /* base64 characters of message.data */
#define S_EMAIL_MAX   320
#define S_TOKEN_MAX   512
#define S_WARN_GAP_MS 60000 /* one "refused" warning a minute, whatever a stranger sends */

struct ain__webhook {
    bool on;
    uint8_t token[AIN_CRYPTO_SHA256_LEN]; /* SHA-256 of AINBOX_GMAIL_PUSH_TOKEN */
    bool has_bearer;
    uint8_t bearer[AIN_CRYPTO_SHA256_LEN]; /* SHA-256 of AINBOX_GMAIL_PUSH_BEARER */
    atomic_int_fast64_t warned_ms;         /* last "refused" warning */
    atomic_int_fast64_t bad_warned_ms;     /* last "malformed" warning */
};

int ain__webhook_init(ain_edge_t *edge, const ain_config_t *cfg)
{
    struct ain__webhook *w = AIN_NEW(struct ain__webhook);
    const char *token = ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_PUSH_TOKEN);
    const char *bearer = ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_PUSH_BEARER);
    if (token && token[0]) {
        if (strlen(token) < 16 || strlen(token) > S_TOKEN_MAX) {
            ain_error(edge->log, "AINBOX_GMAIL_PUSH_TOKEN must be 16 to %d characters",
                      S_TOKEN_MAX);
            free(w);
            return -1;
        }
        w->on = ain_crypto_sha256(token, strlen(token), w->token) == 0;
    }
    if (bearer && bearer[0])
        w->has_bearer = ain_crypto_sha256(bearer, strlen(bearer), w->bearer) == 0;
    if (!w->on)
        ain_info(edge->log, "POST /webhooks/gmail/notifications is off: "
                            "AINBOX_GMAIL_PUSH_TOKEN is not set");
    edge->webhook = w;
    return 0;
}

void ain__webhook_destroy(ain_edge_t *edge)
{
    if (!edge->webhook)
        return;
    ain_crypto_wipe(edge->webhook, sizeof *edge->webhook);
    free(edge->webhook);
    edge->webhook = NULL;
}

const char *ain__webhook_off_reason(const ain_edge_t *edge)
{
    return edge->webhook && edge->webhook->on
               ? NULL
               : "AINBOX_GMAIL_PUSH_TOKEN is not set: Gmail push notifications are refused "
                 "(new mail waits for the sync actor's fallback poll)";
}

/* True if `given` (len bytes) is the secret whose digest is `want`. */
static bool s_secret_ok(const char *given, size_t len, const uint8_t want[AIN_CRYPTO_SHA256_LEN])
{
    uint8_t got[AIN_CRYPTO_SHA256_LEN];
    return ain_crypto_sha256(given, len, got) == 0 &&
           ain_crypto_equal(got, want, AIN_CRYPTO_SHA256_LEN);
}

/* Whether the request carries the push credentials. */
static bool s_authentic(ain__http_t *http)
{
    struct ain__webhook *w = http->edge->webhook;
    char token[S_TOKEN_MAX + 1];
    int n = ain__http_query(http, "token", token, sizeof token);
    if (n <= 0 || !s_secret_ok(token, (size_t)n, w->token))
        return false;
    if (!w->has_bearer)
        return true;
    const char *auth = mg_get_header(http->conn, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) > S_TOKEN_MAX * 4)
        return false;
    return s_secret_ok(auth + 7, strlen(auth + 7), w->bearer);
}

/* Logs `what` at most once a minute per kind: a flood of forged pushes must not flood the log. */
static void s_warn_once(ain__http_t *http, atomic_int_fast64_t *last, const char *what)
{
    int64_t now = ain_clock_mono_ms(), prev = atomic_load(last);
    if ((prev == 0 || now - prev >= S_WARN_GAP_MS) &&
        atomic_compare_exchange_strong(last, &prev, now))
        ain_warn(http->edge->log, "gmail push from %s: %s (counted; logged once a minute)",
                 http->info->remote_addr, what);
}

/* Decodes base64 in either alphabet, padding optional, into out (NUL-terminated); returns the
 * byte count or -1. */
static long s_base64(const char *text, size_t len, char *out, size_t size)
{
    char norm[S_DATA_MAX + 1];
    if (len > S_DATA_MAX)
        return -1;
    while (len > 0 && text[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++)
        norm[i] = text[i] == '+' ? '-' : text[i] == '/' ? '_' : text[i];
    size_t got = 0;
    if (ain_crypto_b64url_decode(norm, len, out, size - 1, &got) < 0)
        return -1;
    out[got] = '\0';
    return (long)got;
}

/* An address as a push can carry it: printable, one '@', bounded. */
static bool s_email_ok(const char *s)
{
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n < 3 || n > S_EMAIL_MAX || !at || at == s || !at[1] || strchr(at + 1, '@'))
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* The push's {email, history_id}, or a reason (static) in *why. historyId is a number in real
 * payloads and a string in Google's documentation: both are taken. */
static int s_parse(ain__http_t *http, char *email, size_t email_size, uint64_t *history,
                   const char **why)
{
    json_error_t err;
    json_t *root =
        http->body_len <= S_BODY_MAX
            ? json_loadb(http->body ? http->body : "", http->body_len, JSON_REJECT_DUPLICATES, &err)
            : NULL;
    json_t *data = json_object_get(json_object_get(root, "message"), "data");
    char decoded[S_DATA_MAX];
    long n = -1;
    json_t *inner = NULL;
    *why = !root                   ? "the body is not JSON (or is too large)"
           : !json_is_string(data) ? "no message.data string"
           : (n = s_base64(json_string_value(data), json_string_length(data), decoded,
                           sizeof decoded)) < 0
               ? "message.data is not base64"
           : !(inner = json_loadb(decoded, (size_t)n, JSON_REJECT_DUPLICATES, &err))
               ? "message.data is not JSON"
               : NULL;
    if (!*why) {
        json_t *addr = json_object_get(inner, "emailAddress");
        json_t *hid = json_object_get(inner, "historyId");
        long long v = json_is_integer(hid)  ? json_integer_value(hid)
                      : json_is_string(hid) ? ain__http_uint(json_string_value(hid))
                                            : -1;
        if (!json_is_string(addr) || !s_email_ok(json_string_value(addr)))
            *why = "message.data has no valid emailAddress";
        else if (v <= 0)
            *why = "message.data has no valid historyId";
        else {
            snprintf(email, email_size, "%s", json_string_value(addr));
            *history = (uint64_t)v;
        }
    }
    json_decref(inner);
    json_decref(root);
    return *why ? -1 : 0;
}

int ain__webhook_gmail(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (!edge->webhook || !edge->webhook->on)
        return ain__http_error(http, 503, "NOT_CONFIGURED", "Gmail push is not configured");
    if (!s_authentic(http)) {
        ain_metric_inc(edge->m.push_refused);
        s_warn_once(http, &edge->webhook->warned_ms, "refused (no or wrong credentials)");
        return ain__http_error(http, 401, "UNAUTHORIZED", "unauthorized");
    }
    char email[S_EMAIL_MAX + 1];
    uint64_t history = 0;
    const char *why = NULL;
    if (s_parse(http, email, sizeof email, &history, &why) < 0) {
        ain_metric_inc(edge->m.push_malformed);
        s_warn_once(http, &edge->webhook->bad_warned_ms, why);
        return ain__http_error(http, 400, "INVALID_PUSH", why);
    }
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_str(&pk, "email", email);
    ain_mp_pack_str(&pk, "history_id");
    msgpack_pack_uint64(&pk, history);
    json_t *reply = NULL;
    ain_status_t st = ain__http_call_reply(http, "sync", AIN_MSG_SYNC_PUSH, 0, buf.data, buf.size,
                                           edge->call_timeout_ms, &reply);
    msgpack_sbuffer_destroy(&buf);
    json_decref(reply);
    if (st != AIN_STATUS_OK) {
        /* Pub/Sub delivers it again later: nothing is lost by saying so. */
        ain_metric_inc(edge->m.push_unavailable);
        char msg[160];
        return ain__http_error_extra(http, 503, ain_status_name(st),
                                     ain__http_no_answer(http, "sync", msg, sizeof msg),
                                     "Retry-After: 10\r\n");
    }
    ain_metric_inc(edge->m.push_accepted);
    return ain__http_json(http, 204, NULL);
}
