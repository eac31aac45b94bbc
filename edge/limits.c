/* limits.c: the user API limit at the edge, taken in small local grants; GET /api/v1/limits.
 *
 * After authentication, every request of a signed-in user spends one unit of `api.user` (the
 * envelope user is the subject, so the limit is per user and shared by every edge). Asking the
 * ratelimit actor for each unit was one broker round trip per request, which halved the edge's
 * throughput on a cached page; so the edge asks for a grant of G units at once (RATE_CHECK
 * {quota: "api", count: G}, all or nothing) and spends the rest locally, in a bounded per-user
 * table (below). A grant is charged to the shared bucket when it is given, so every edge
 * together can never admit more than the policy allows; units a grant leaves unspent when it
 * expires (AINBOX_EDGE_API_GRANT_MS) are lost: a user may be admitted slightly less than the
 * policy, never more.
 *
 * G adapts per user: 1 for a user's first request (one unit, as without grants), doubled when
 * a grant was spent within half its lifetime and the user asks again (so the doubled grant is
 * still likely spent before it expires: doubling on "spent before expiry" alone made a steady
 * user alternate between G and 2G, losing units on every second grant), halved when a spent
 * grant's user comes back after it expired, shrunk to what was spent when it expired with units
 * left; never above AINBOX_EDGE_API_GRANT_MAX (1 turns grants off: one round trip per
 * request), nor above the `remaining` of the user's last answer (so at most the policy's burst,
 * and never a count the bucket cannot give). A refused grant of G > 1 is asked again for one
 * unit (all or nothing would otherwise refuse a request that fits) and G starts again at 1.
 *
 * The table: S_SLOTS slots direct-mapped by a hash of the user, one mutex per S_SHARDS slots
 * (as rendered.c). A user colliding with another takes the slot over; the grant it held is lost,
 * which only loses units. The mutex is never held across a round trip: two threads finding the
 * slot empty may both ask, and both grants are added to the slot.
 *
 * Every answer, local or not, carries the IETF RateLimit headers
 * (draft-ietf-httpapi-ratelimit-headers, RFC 9651 structured fields):
 *
 *   RateLimit-Policy: "api.user";q=1000;w=3600
 *   RateLimit: "api.user";r=499;t=8
 *
 * (q the quota, w its window in seconds, r what the user can still spend now: the bucket's
 * remaining at the last answer plus the units held here; t seconds until the quota is whole
 * again, from the last answer less the time since, or until the next request fits). A refused
 * request is 429 with `Retry-After` (never earlier than t) and a JSON error naming the policy.
 * If the limiter cannot be asked at all (not deployed, or not answering), the request goes
 * through: availability before a limit that cannot be checked; it is counted
 * (`ratelimit.unchecked`) and logged at most every 10 s. Whether the service has workers is
 * asked of the broker (MMI) at most once a second, so a deployment without a limiter never
 * waits for a deadline. A limiter that does not answer within AINBOX_EDGE_LIMIT_TIMEOUT_MS
 * (its answers take a Redis round trip) counts as away: for a back-off (S_AWAY_MIN_MS doubling
 * to S_AWAY_MAX_MS) requests pass at once without asking (grants still held are spent), then
 * one request asks again; an answer ends the away period. So a lost limiter host costs the
 * requests in flight at that moment one short wait, and the rest nothing.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_WARN_EVERY_MS  10000
#define S_PROBE_EVERY_MS 1000
#define S_SLOTS          4096
#define S_SHARDS         64
#define S_POLICY_MAX     64
#define S_AWAY_MIN_MS    500
#define S_AWAY_MAX_MS    5000

/* What an answer said, kept in a user's slot for the headers of local admissions. */
typedef struct {
    char policy[S_POLICY_MAX];
    uint64_t limit, window_s, remaining, reset_ms;
    int64_t at_ms; /* when it came, monotonic */
} s_said_t;

typedef struct {
    bool allowed;
    uint64_t retry_ms;
    s_said_t said;
} s_answer_t;

/* One user's grant. Units in `tokens` are charged to the shared bucket already. */
typedef struct {
    uint64_t user;      /* 0: empty */
    uint32_t tokens;    /* units of the grant left to spend here */
    uint32_t size;      /* units given into the current grant (concurrent grants add up) */
    uint32_t next;      /* G: the grant to ask for next */
    int64_t granted_ms; /* when the current grant began */
    int64_t expires_ms; /* after it, `tokens` are lost */
    s_said_t said;      /* the last answer */
} s_slot_t;

struct ain__grants {
    pthread_mutex_t locks[S_SHARDS];
    s_slot_t slots[S_SLOTS];
    uint32_t max;        /* AINBOX_EDGE_API_GRANT_MAX */
    int64_t lifetime_ms; /* AINBOX_EDGE_API_GRANT_MS */
};

ain__grants_t *ain__grants_new(uint32_t max, int64_t lifetime_ms)
{
    if (max <= 1)
        return NULL;
    ain__grants_t *self = AIN_NEW(ain__grants_t);
    for (int i = 0; i < S_SHARDS; i++)
        pthread_mutex_init(&self->locks[i], NULL);
    self->max = max;
    self->lifetime_ms = lifetime_ms;
    return self;
}

void ain__grants_destroy(ain__grants_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__grants_t *self = *self_p;
    for (int i = 0; i < S_SHARDS; i++)
        pthread_mutex_destroy(&self->locks[i]);
    free(self);
    *self_p = NULL;
}

int ain__grants_slots(const ain__grants_t *self)
{
    return self ? S_SLOTS : 0;
}

/* FNV-1a over the user id. */
static size_t s_index(uint64_t user)
{
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 8; i++) {
        h ^= (user >> (8 * i)) & 0xff;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % S_SLOTS);
}

/* A grant the user cannot spend locally: forgets units left past the expiry (*lost), and sizes
 * the next one from what the last one showed. */
static void s_adapt(const ain__grants_t *self, s_slot_t *s, int64_t now, uint64_t *lost)
{
    if (s->tokens > 0) {
        /* Expired with units left: next time, only what was spent. */
        *lost += s->tokens;
        s->next = s->size > s->tokens ? s->size - s->tokens : 1;
        s->tokens = 0;
    } else if (now - s->granted_ms < self->lifetime_ms / 2) {
        /* Spent within half its lifetime, and asked again: twice as much is likely spent
         * before it expires. */
        s->next = s->size * 2 < self->max ? s->size * 2 : self->max;
    } else if (now >= s->expires_ms) {
        s->next = s->size / 2 > 1 ? s->size / 2 : 1;
    }
}

/* Takes one unit of the user's grant if it is live: true, with what the last answer said and
 * the units still held. Otherwise false with the count to ask for (*ask, at least 1). */
static bool s_take(ain__grants_t *self, uint64_t user, int64_t now, s_said_t *said, uint32_t *held,
                   uint32_t *ask, uint64_t *lost)
{
    *ask = 1;
    if (!self)
        return false;
    size_t i = s_index(user);
    bool local = false;
    pthread_mutex_lock(&self->locks[i % S_SHARDS]);
    s_slot_t *s = &self->slots[i];
    if (s->user == user && s->tokens > 0 && now < s->expires_ms) {
        s->tokens--;
        *said = s->said;
        *held = s->tokens;
        local = true;
    } else if (s->user == user) {
        s_adapt(self, s, now, lost);
        uint64_t cap = s->said.remaining > 1 ? s->said.remaining : 1;
        *ask = s->next < cap ? s->next : (uint32_t)cap;
        if (*ask > self->max)
            *ask = self->max;
    }
    pthread_mutex_unlock(&self->locks[i % S_SHARDS]);
    return local;
}

/* Keeps an answer in the user's slot (taking it over from another user), with `granted` units
 * of which the current request spends one (0: refused). `reset` starts G at 1 again. Returns
 * the units held for the user afterwards. */
static uint32_t s_store(ain__grants_t *self, uint64_t user, int64_t now, const s_answer_t *a,
                        uint32_t granted, bool reset, uint64_t *lost)
{
    if (!self)
        return 0;
    size_t i = s_index(user);
    pthread_mutex_lock(&self->locks[i % S_SHARDS]);
    s_slot_t *s = &self->slots[i];
    if (s->user != user && granted == 0) { /* a refusal takes no other user's slot */
        pthread_mutex_unlock(&self->locks[i % S_SHARDS]);
        return 0;
    }
    if (s->user != user) {
        *lost += s->tokens;
        memset(s, 0, sizeof *s);
        s->user = user;
        s->next = 1;
    } else if (s->tokens > 0 && now >= s->expires_ms) {
        *lost += s->tokens;
        s->tokens = 0;
    }
    s->said = a->said;
    if (granted > 0) {
        if (s->tokens == 0) { /* a new grant; else another thread's live one, added to */
            s->size = 0;
            s->granted_ms = now;
        }
        s->tokens += granted - 1;
        s->size += granted;
        s->expires_ms = now + self->lifetime_ms;
    }
    if (reset || granted == 0)
        s->next = 1;
    uint32_t held = s->tokens;
    pthread_mutex_unlock(&self->locks[i % S_SHARDS]);
    return held;
}

static int s_read(const msgpack_object *root, s_answer_t *a)
{
    const char *policy;
    size_t policy_len;
    s_said_t *s = &a->said;
    if (ain_mp_get_bool(root, "allowed", &a->allowed) != 1 ||
        ain_mp_get_str(root, "policy", &policy, &policy_len) != 1 ||
        ain_mp_get_u64(root, "limit", &s->limit) != 1 ||
        ain_mp_get_u64(root, "window_s", &s->window_s) != 1 ||
        ain_mp_get_u64(root, "remaining", &s->remaining) != 1 ||
        ain_mp_get_u64(root, "reset_ms", &s->reset_ms) != 1 ||
        ain_mp_get_u64(root, "retry_after_ms", &a->retry_ms) != 1)
        return -1;
    /* A policy name is a token we wrote; refuse anything that could break
     * a header line. */
    for (size_t i = 0; i < policy_len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", policy[i]))
            return -1;
    if (policy_len == 0 || policy_len >= S_POLICY_MAX)
        return -1;
    memcpy(s->policy, policy, policy_len);
    s->policy[policy_len] = '\0';
    return 0;
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

/* True while the limiter is away: no request asks it until the back-off ends, when the one
 * thread that moves the deadline on asks (the others keep passing). */
static bool s_limiter_away(ain_edge_t *edge, int64_t now)
{
    int64_t until = atomic_load(&edge->limiter_away_ms);
    if (until == 0)
        return false;
    if (now < until)
        return true;
    /* The back-off ended: one thread probes, for at most its own deadline. */
    return !atomic_compare_exchange_strong(&edge->limiter_away_ms, &until,
                                           now + edge->limits_timeout_ms + 1);
}

/* Records how the limiter answered: a failure to answer starts (or lengthens) an away period. */
static void s_limiter_said(ain_edge_t *edge, ain_status_t st)
{
    bool gone = st == AIN_STATUS_TIMEOUT || st == AIN_STATUS_UNAVAILABLE || st == AIN_STATUS_BUSY;
    if (!gone) {
        atomic_store(&edge->limiter_away_ms, 0);
        atomic_store(&edge->limiter_backoff_ms, S_AWAY_MIN_MS);
        return;
    }
    int64_t backoff = atomic_load(&edge->limiter_backoff_ms);
    if (backoff < S_AWAY_MIN_MS)
        backoff = S_AWAY_MIN_MS;
    atomic_store(&edge->limiter_away_ms, ain_clock_mono_ms() + backoff);
    atomic_store(&edge->limiter_backoff_ms,
                 backoff * 2 > S_AWAY_MAX_MS ? S_AWAY_MAX_MS : backoff * 2);
    ain_metric_inc(edge->m.limits_away);
}

/* True if the ratelimit service has workers, as the broker said within the last second. Until
 * the broker has answered once, every request asks it itself: a request racing another thread's
 * first probe would otherwise pass unchecked (uncharged: one admission too many). */
static bool s_limiter_present(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    int64_t now = ain_clock_mono_ms();
    int64_t due = atomic_load(&edge->limits_probe_ms);
    bool known = atomic_load(&edge->limiter_known);
    if (!known || (now >= due && atomic_compare_exchange_strong(&edge->limits_probe_ms, &due,
                                                                now + S_PROBE_EVERY_MS))) {
        int code = ain_client_mmi_service(http->client, "ratelimit", edge->call_timeout_ms);
        atomic_store(&edge->limiter_present, code == 200);
        atomic_store(&edge->limiter_known, true);
        if (!known)
            return code == 200;
    }
    return atomic_load(&edge->limiter_present);
}

/* One RATE_CHECK for `count` units (1..127) into *a: OK, or why the limiter could not be
 * asked (*why for the log). A round trip; blocks up to the edge's call deadline. */
static ain_status_t s_call(ain__http_t *http, uint32_t count, s_answer_t *a, const char **why)
{
    assert(count >= 1 && count < 128); /* one positive fixint; the limiter takes 1..100 */
    ain_edge_t *edge = http->edge;
    /* {quota: "api"} as without grants, {quota: "api", count: N} for a grant. */
    uint8_t body[] = {0x82, 0xa5, 'q',  'u', 'o', 't', 'a', 0xa3, 'a',
                      'p',  'i',  0xa5, 'c', 'o', 'u', 'n', 't',  (uint8_t)count};
    size_t len = sizeof body;
    if (count == 1) {
        body[0] = 0x81;
        len = 11;
    }
    ain_metric_inc(edge->m.limits_grants);
    ain_reply_t reply;
    ain_status_t st = ain_client_call(http->client, "ratelimit", AIN_MSG_RATE_CHECK, http->user,
                                      body, len, edge->limits_timeout_ms, &reply);
    s_limiter_said(edge, st);
    if (st != AIN_STATUS_OK) {
        *why = ain_status_name(st);
        ain_reply_close(&reply);
        return st;
    }
    ain_body_t parsed;
    memset(a, 0, sizeof *a);
    int rc = ain_body_parse(&parsed, reply.env.body, reply.env.body_len) == AIN_STATUS_OK
                 ? s_read(parsed.root, a)
                 : -1;
    ain_body_release(&parsed);
    ain_reply_close(&reply);
    a->said.at_ms = ain_clock_mono_ms();
    if (rc < 0) {
        *why = "malformed answer from the ratelimit service";
        return AIN_STATUS_ERROR;
    }
    return AIN_STATUS_OK;
}

static void s_headers(ain__http_t *http, const s_said_t *said, uint64_t r, uint64_t t_ms)
{
    uint64_t t = t_ms / 1000 + (t_ms % 1000 ? 1 : 0);
    size_t used = strlen(http->headers);
    snprintf(http->headers + used, sizeof http->headers - used,
             "RateLimit-Policy: \"%s\";q=%llu;w=%llu\r\nRateLimit: \"%s\";r=%llu;t=%llu\r\n",
             said->policy, (unsigned long long)said->limit, (unsigned long long)said->window_s,
             said->policy, (unsigned long long)r, (unsigned long long)t);
}

static int s_refuse(ain__http_t *http, const s_answer_t *a)
{
    ain_metric_inc(http->edge->m.limited);
    uint64_t t = a->retry_ms / 1000 + (a->retry_ms % 1000 ? 1 : 0);
    uint64_t retry_s = t > 0 ? t : 1;
    char extra[96], message[192];
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)retry_s);
    snprintf(message, sizeof message, "too many requests: the %s limit is spent; retry in %llu s",
             a->said.policy, (unsigned long long)retry_s);
    json_t *err = json_pack("{s:{s:s,s:s,s:s,s:I}}", "error", "code", "RATE_LIMITED", "message",
                            message, "policy", a->said.policy, "retry_after", (json_int_t)retry_s);
    ain__http_json_extra(http, 429, err, extra);
    return -1;
}

int ain__limits_check(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (!s_limiter_present(http)) {
        s_unchecked(http, "no ratelimit service");
        return 0;
    }
    s_said_t said;
    uint32_t held = 0, ask = 1;
    uint64_t lost = 0;
    int64_t now = ain_clock_mono_ms();
    if (s_take(edge->grants, http->user, now, &said, &held, &ask, &lost)) {
        ain_metric_inc(edge->m.limits_local);
        int64_t left = (int64_t)said.reset_ms - (now - said.at_ms);
        s_headers(http, &said, said.remaining + held, left > 0 ? (uint64_t)left : 0);
        return 0;
    }
    if (s_limiter_away(edge, now)) {
        s_unchecked(http, "the ratelimit service is away");
        return 0;
    }
    s_answer_t a;
    const char *why = NULL;
    bool reset = false;
    ain_status_t st = s_call(http, ask, &a, &why);
    /* All or nothing: a grant the bucket cannot give whole may still leave the one unit this
     * request needs. INVALID: a count above the burst, if the policy shrank under us. */
    if (ask > 1 && (st == AIN_STATUS_INVALID || (st == AIN_STATUS_OK && !a.allowed))) {
        ain_metric_inc(edge->m.limits_grant_retries);
        reset = true;
        ask = 1;
        st = s_call(http, ask, &a, &why);
    }
    if (st != AIN_STATUS_OK) {
        ain_metric_add(edge->m.limits_grant_lost, (int64_t)lost);
        s_unchecked(http, why);
        return 0;
    }
    if (a.allowed)
        ain_metric_add(edge->m.limits_grant_units, ask);
    held = s_store(edge->grants, http->user, a.said.at_ms, &a, a.allowed ? ask : 0, reset, &lost);
    ain_metric_add(edge->m.limits_grant_lost, (int64_t)lost);
    s_headers(http, &a.said, a.allowed ? a.said.remaining + held : 0,
              a.allowed ? a.said.reset_ms : a.retry_ms);
    return a.allowed ? 0 : s_refuse(http, &a);
}

int ain__limits_usage(ain__http_t *http)
{
    int status;
    json_t *usage =
        ain__http_call_json(http, "ratelimit", AIN_MSG_RATE_USAGE, http->user, NULL, 0, &status);
    return usage ? ain__http_json(http, 200, usage) : status;
}
