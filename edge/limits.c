/* limits.c: the user API limit at the edge, and GET /api/v1/limits.
 *
 * After authentication, every request of a signed-in user asks the
 * ratelimit actor for one unit of `api.user` (the envelope user is the
 * subject, so the limit is per user and shared by every edge). The answer
 * becomes the IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers,
 * RFC 9651 structured fields) on the response:
 *
 *   RateLimit-Policy: "api.user";q=1000;w=3600
 *   RateLimit: "api.user";r=499;t=8
 *
 * (q the quota, w its window in seconds, r what is left now, t seconds
 * until the quota is whole again, or until the next request fits). A
 * refused request is 429 with `Retry-After` (never earlier than t) and a
 * JSON error naming the policy. If the limiter cannot be asked at all
 * (not deployed, or not answering), the request goes through: availability
 * before a limit that cannot be checked; it is counted
 * (`ratelimit.unchecked`) and logged at most every 10 s. Whether the
 * service has workers is asked of the broker (MMI) at most once a second,
 * so a deployment without a limiter never waits for a deadline.
 */
#include <stdio.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"

#define S_WARN_EVERY_MS  10000
#define S_PROBE_EVERY_MS 1000

typedef struct {
    bool allowed;
    const char *policy;
    size_t policy_len;
    uint64_t limit, window_s, remaining, reset_ms, retry_ms;
} s_answer_t;

static int s_read(const msgpack_object *root, s_answer_t *a)
{
    if (ain_mp_get_bool(root, "allowed", &a->allowed) != 1 ||
        ain_mp_get_str(root, "policy", &a->policy, &a->policy_len) != 1 ||
        ain_mp_get_u64(root, "limit", &a->limit) != 1 ||
        ain_mp_get_u64(root, "window_s", &a->window_s) != 1 ||
        ain_mp_get_u64(root, "remaining", &a->remaining) != 1 ||
        ain_mp_get_u64(root, "reset_ms", &a->reset_ms) != 1 ||
        ain_mp_get_u64(root, "retry_after_ms", &a->retry_ms) != 1)
        return -1;
    /* A policy name is a token we wrote; refuse anything that could break
     * a header line. */
    for (size_t i = 0; i < a->policy_len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", a->policy[i]))
            return -1;
    return a->policy_len > 0 && a->policy_len < 64 ? 0 : -1;
}

static void s_unchecked(ain__http_t *http, const char *why)
{
    ain_edge_t *edge = http->edge;
    ain_metric_inc(edge->m.limits_unchecked);
    int64_t now = ain_clock_mono_ms();
    int64_t last = atomic_load(&edge->limits_warned_ms);
    if (now - last >= S_WARN_EVERY_MS &&
        atomic_compare_exchange_strong(&edge->limits_warned_ms, &last, now))
        ain_warn(edge->log, "API limit not checked (requests pass): %s", why);
}

/* True if the ratelimit service has workers, as the broker said within
 * the last second. */
static bool s_limiter_present(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    int64_t now = ain_clock_mono_ms();
    int64_t due = atomic_load(&edge->limits_probe_ms);
    if (now >= due &&
        atomic_compare_exchange_strong(&edge->limits_probe_ms, &due, now + S_PROBE_EVERY_MS)) {
        int code = ain_client_mmi_service(http->client, "ratelimit", edge->call_timeout_ms);
        atomic_store(&edge->limiter_present, code == 200);
    }
    return atomic_load(&edge->limiter_present);
}

int ain__limits_check(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (!s_limiter_present(http)) {
        s_unchecked(http, "no ratelimit service");
        return 0;
    }
    static const uint8_t body[] = {0x81, 0xa5, 'q', 'u', 'o', 't', 'a', 0xa3, 'a', 'p', 'i'};
    ain_reply_t reply;
    ain_status_t st = ain_client_call(http->client, "ratelimit", AIN_MSG_RATE_CHECK, http->user,
                                      body, sizeof body, edge->call_timeout_ms, &reply);
    if (st != AIN_STATUS_OK) {
        s_unchecked(http, ain_status_name(st));
        ain_reply_close(&reply);
        return 0;
    }
    ain_body_t parsed;
    s_answer_t a = {0};
    int rc = ain_body_parse(&parsed, reply.env.body, reply.env.body_len) == AIN_STATUS_OK
                 ? s_read(parsed.root, &a)
                 : -1;
    if (rc < 0) {
        ain_body_release(&parsed);
        ain_reply_close(&reply);
        s_unchecked(http, "malformed answer from the ratelimit service");
        return 0;
    }
    uint64_t t = (a.allowed ? a.reset_ms : a.retry_ms) / 1000 +
                 ((a.allowed ? a.reset_ms : a.retry_ms) % 1000 ? 1 : 0);
    size_t used = strlen(http->headers);
    snprintf(http->headers + used, sizeof http->headers - used,
             "RateLimit-Policy: \"%.*s\";q=%llu;w=%llu\r\nRateLimit: \"%.*s\";r=%llu;t=%llu\r\n",
             (int)a.policy_len, a.policy, (unsigned long long)a.limit,
             (unsigned long long)a.window_s, (int)a.policy_len, a.policy,
             (unsigned long long)(a.allowed ? a.remaining : 0), (unsigned long long)t);
    char policy[64];
    snprintf(policy, sizeof policy, "%.*s", (int)a.policy_len, a.policy);
    ain_body_release(&parsed);
    ain_reply_close(&reply);
    if (a.allowed)
        return 0;
    ain_metric_inc(edge->m.limited);
    uint64_t retry_s = t > 0 ? t : 1;
    char extra[96], message[192];
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)retry_s);
    snprintf(message, sizeof message, "too many requests: the %s limit is spent; retry in %llu s",
             policy, (unsigned long long)retry_s);
    json_t *err = json_pack("{s:{s:s,s:s,s:s,s:I}}", "error", "code", "RATE_LIMITED", "message",
                            message, "policy", policy, "retry_after", (json_int_t)retry_s);
    ain__http_json_extra(http, 429, err, extra);
    return -1;
}

int ain__limits_usage(ain__http_t *http)
{
    int status;
    json_t *usage =
        ain__http_call_json(http, "ratelimit", AIN_MSG_RATE_USAGE, http->user, NULL, 0, &status);
    return usage ? ain__http_json(http, 200, usage) : status;
}
