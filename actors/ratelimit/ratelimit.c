/* ratelimit.c: the rate-limit actor (service "ratelimit").
 *
 *   RATE_CHECK     one decision, or up to 64: admitted or refused, with
 *                  what is left and when to retry (decision.c, redis.c)
 *   RATE_RELEASE   gives a lease back
 *   RATE_USAGE     a user's usage: the user's own, or anyone's for operators
 *   RATE_RESET     forgets a user's usage: operators only
 *   RATE_POLICIES  the policies in force
 *
 * Operators are requests with envelope user 0 (ainbox-admin); the edge
 * stamps every user's request with that user, so no user can reset limits
 * or read another user's usage.
 */
#include "actors/ratelimit/ratelimit.h"

#include <string.h>

#include "actors/ratelimit/internal.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_TICK_MS     1000
#define S_NEAR_WINDOW 10 /* ticks per near-quota window */

typedef struct {
    ain__rl_t st; /* first: the actor's state pointer is both */
    int tick;
    int64_t near_prev[AIN_RL_POLICY_COUNT], usage_prev[AIN_RL_POLICY_COUNT];
} s_actor_t;

/* A malformed request: our callers are services, so it is a bug somewhere;
 * counted, logged (at most one line a second), answered INVALID. */
static void s_invalid(ain__rl_t *st, ain_request_t *req, const char *why)
{
    ain_metric_inc(st->m.invalid);
    int64_t now = ain_clock_mono_ms();
    if (now - st->invalid_logged_ms >= 1000) {
        st->invalid_logged_ms = now;
        const ain_msgtype_t *type = ain_msgtype_lookup(ain_request_envelope(req)->type);
        ain_warn(st->log, "ratelimit: invalid %s: %s", type ? type->name : "request", why);
    }
    ain_request_fail(req, AIN_STATUS_INVALID, why);
}

/* ------------------------------------------------------------ RATE_CHECK */

static int s_check(ain_actor_t *actor, ain_request_t *req)
{
    ain__rl_t *st = ain_actor_state(actor);
    const char *why;
    ain__rl_job_t *job = ain__rl_job_parse(st, req, &why);
    if (!job) {
        s_invalid(st, req, why);
        return 0;
    }
    /* The last decision to finish answers and frees the job: read n first. */
    int n = job->n;
    for (int i = 0; i < n; i++) {
        ain__rl_decision_t *d = &job->d[i];
        if (ain__rl_decide_cached(st, d))
            ain__rl_done(st, d);
        else
            ain__rl_enqueue(st, d);
    }
    return 0;
}

/* ------------------------------------------------------------ RATE_RELEASE */

typedef struct {
    ain__rl_t *st;
    ain_request_t *req;
    uint64_t user;
} s_op_t;

static void s_released(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_op_t *op = arg;
    ain__rl_t *st = op->st;
    ain_request_t *req = op->req;
    (void)redis;
    free(op);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "Redis did not answer; the lease expires");
        return;
    }
    if (r->integer == 1)
        ain_metric_inc(st->m.releases);
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 1);
    ain_mp_pack_str(pk, "released");
    r->integer == 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ain_request_reply_packed(req, AIN_STATUS_OK);
}

/* "policy/subject/id" -> the lease set's key and the id. */
static const char *s_parse_lease(ain__rl_t *st, const char *s, size_t n, ain__rl_bucket_t *b,
                                 char *id, size_t id_size)
{
    const char *a = memchr(s, '/', n);
    const char *z = a ? memchr(a + 1, '/', n - (size_t)(a + 1 - s)) : NULL;
    if (!z)
        return "lease must be the token RATE_CHECK gave";
    int policy = ain_rl_policy_find(&st->pol, s, (size_t)(a - s));
    size_t subject_len = (size_t)(z - a - 1), id_len = n - (size_t)(z + 1 - s);
    if (policy < 0 || st->pol.p[policy].kind != AIN_RL_LEASE ||
        !ain_rl_subject_ok(a + 1, subject_len) || id_len < 3 || id_len >= id_size)
        return "lease must be the token RATE_CHECK gave";
    for (size_t i = 0; i < id_len; i++)
        if (!strchr("0123456789abcdef.", z[1 + i]))
            return "lease must be the token RATE_CHECK gave";
    ain__rl_key(st, policy, a + 1, subject_len, b);
    memcpy(id, z + 1, id_len);
    id[id_len] = '\0';
    return NULL;
}

static int s_release(ain_actor_t *actor, ain_request_t *req)
{
    ain__rl_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    const char *token = NULL, *why = NULL;
    size_t len = 0;
    ain__rl_bucket_t b;
    char id[AIN__RL_LEASE_ID];
    if (ain_body_parse(&body, env->body, env->body_len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP || body.root->via.map.size != 1 ||
        ain_mp_get_str(body.root, "lease", &token, &len) != 1)
        why = "body must be {lease}";
    else
        why = s_parse_lease(st, token, len, &b, id, sizeof id);
    ain_body_release(&body);
    if (why) {
        s_invalid(st, req, why);
        return 0;
    }
    s_op_t *op = AIN_NEW(s_op_t);
    *op = (s_op_t){st, req, 0};
    if (ain__rl_release(st, b.key, id, s_released, op) < 0) {
        free(op);
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "Redis is down; the lease expires by itself");
    }
    return 0;
}

/* ------------------------------------------------------------ RATE_USAGE, RATE_RESET */

/* The user this request may see: its own, or any for operators. */
static int s_target(ain__rl_t *st, ain_request_t *req, bool operators_only, uint64_t *user)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t asked = 0;
    const char *why = NULL;
    if (ain_body_parse(&body, env->body, env->body_len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP || ain_mp_get_u64(body.root, "user", &asked) < 0 ||
        body.root->via.map.size > (asked ? 1u : 0u))
        why = "body must be {user?: id}";
    ain_body_release(&body);
    if (why) {
        s_invalid(st, req, why);
        return -1;
    }
    if (env->user != 0 && (operators_only || (asked && asked != env->user))) {
        ain_metric_inc(st->m.denied);
        ain_request_fail(req, AIN_STATUS_DENIED,
                         operators_only ? "resetting limits is for operators only"
                                        : "another user's usage is for operators only");
        return -1;
    }
    *user = asked ? asked : env->user;
    if (*user == 0) {
        s_invalid(st, req, "which user? {user: id}");
        return -1;
    }
    return 0;
}

static void s_pack_usage(msgpack_packer *pk, const ain__rl_t *st, int policy, const char *subject,
                         size_t subject_len, int64_t value, int64_t now)
{
    const ain_rl_policy_t *p = &st->pol.p[policy];
    int64_t used, remaining, reset_us = 0, permille;
    if (p->kind == AIN_RL_LEASE) {
        used = value;
        remaining = value < p->limit ? p->limit - value : 0;
        permille = value * 1000 / p->limit;
    } else {
        int64_t debt = value > now ? value - now : 0;
        reset_us = debt;
        used = (debt + p->emission_us - 1) / p->emission_us;
        remaining = debt < p->tolerance_us ? (p->tolerance_us - debt) / p->emission_us : 0;
        permille = debt >= p->tolerance_us ? 1000 : debt * 1000 / p->tolerance_us;
    }
    msgpack_pack_map(pk, 9);
    ain_mp_pack_kv_str(pk, "policy", p->name);
    ain_mp_pack_str(pk, "subject");
    msgpack_pack_str(pk, subject_len);
    msgpack_pack_str_body(pk, subject, subject_len);
    ain_mp_pack_kv_i64(pk, "limit", p->limit);
    ain_mp_pack_kv_i64(pk, "window_s", (p->window_ms + 999) / 1000);
    ain_mp_pack_kv_str(pk, "unit", p->unit);
    ain_mp_pack_kv_i64(pk, "used", used);
    ain_mp_pack_kv_i64(pk, "remaining", remaining);
    ain_mp_pack_kv_i64(pk, "reset_ms", (reset_us + 999) / 1000);
    ain_mp_pack_kv_i64(pk, "permille", permille);
}

/* A provider key's policy and subject, from its name. */
static int s_key_policy(const ain__rl_t *st, const char *key, size_t len, const char **subject,
                        size_t *subject_len)
{
    static const char prefix[] = "ain:rl:";
    if (len <= sizeof prefix || memcmp(key, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *name = key + sizeof prefix - 1;
    const char *colon = memchr(name, ':', len - (sizeof prefix - 1));
    if (!colon)
        return -1;
    *subject = colon + 1;
    *subject_len = len - (size_t)(colon + 1 - key);
    return ain_rl_policy_find(&st->pol, name, (size_t)(colon - name));
}

static void s_on_usage(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_op_t *op = arg;
    ain__rl_t *st = op->st;
    (void)redis;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || (r->elements - 2) % 3 != 0 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        ain_request_fail(op->req, AIN_STATUS_UNAVAILABLE, "Redis did not answer");
        free(op);
        return;
    }
    int64_t now = r->element[0]->integer;
    size_t entries = 1 + (r->elements - 2) / 3;
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 3);
    ain_mp_pack_kv_u64(pk, "user", op->user);
    ain_mp_pack_str(pk, "degraded");
    msgpack_pack_false(pk);
    ain_mp_pack_str(pk, "usage");
    /* Count the readable entries first: the array's size comes before them. */
    uint32_t n = 1;
    for (size_t i = 2; i + 2 < r->elements; i += 3) {
        const char *subject;
        size_t subject_len;
        const redisReply *k = r->element[i];
        if (k->type == REDIS_REPLY_STRING &&
            s_key_policy(st, k->str, k->len, &subject, &subject_len) >= 0 &&
            r->element[i + 1]->type == REDIS_REPLY_INTEGER)
            n++;
    }
    (void)entries;
    msgpack_pack_array(pk, n);
    char api_subject[24];
    int len = snprintf(api_subject, sizeof api_subject, "%llu", (unsigned long long)op->user);
    s_pack_usage(pk, st, AIN_RL_API_USER, api_subject, (size_t)len, r->element[1]->integer, now);
    for (size_t i = 2; i + 2 < r->elements; i += 3) {
        const char *subject;
        size_t subject_len;
        const redisReply *k = r->element[i];
        int policy;
        if (k->type == REDIS_REPLY_STRING &&
            (policy = s_key_policy(st, k->str, k->len, &subject, &subject_len)) >= 0 &&
            r->element[i + 1]->type == REDIS_REPLY_INTEGER)
            s_pack_usage(pk, st, policy, subject, subject_len, r->element[i + 1]->integer, now);
    }
    ain_request_reply_packed(op->req, AIN_STATUS_OK);
    free(op);
}

/* Runs the usage or reset script for the request's target user; returns
 * the user, 0 if the request was answered (refused), or -1 if Redis is
 * down (the request is the caller's to answer). */
static int64_t s_start_op(ain__rl_t *st, ain_request_t *req, bool reset, ain_redis_fn *fn)
{
    uint64_t user;
    if (s_target(st, req, reset, &user) < 0)
        return 0;
    s_op_t *op = AIN_NEW(s_op_t);
    *op = (s_op_t){st, req, user};
    if (ain__rl_usage(st, user, reset, fn, op) == 0)
        return (int64_t)user;
    free(op);
    return -(int64_t)user;
}

static int s_usage(ain_actor_t *actor, ain_request_t *req)
{
    ain__rl_t *st = ain_actor_state(actor);
    int64_t user = s_start_op(st, req, false, s_on_usage);
    if (user >= 0)
        return 0;
    /* Redis is down: nothing shared is known; say so rather than guess. */
    msgpack_packer *pk = ain_actor_body(actor);
    msgpack_pack_map(pk, 3);
    ain_mp_pack_kv_u64(pk, "user", (uint64_t)-user);
    ain_mp_pack_str(pk, "degraded");
    msgpack_pack_true(pk);
    ain_mp_pack_str(pk, "usage");
    msgpack_pack_array(pk, 0);
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

void ain__rl_forget(ain__rl_t *st)
{
    ain_rl_local_clear(st->deny);
    ain_rl_local_clear(st->fallback);
}

static void s_on_reset(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_op_t *op = arg;
    ain__rl_t *st = op->st;
    (void)redis;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        ain_request_fail(op->req, AIN_STATUS_UNAVAILABLE, "Redis did not answer");
        free(op);
        return;
    }
    /* The script announced it: every limiter sharing Redis forgets what
     * it cached (this one as well, through the same channel). */
    ain__rl_forget(st);
    ain_metric_inc(st->m.resets);
    ain_info(st->log, "ratelimit: reset user %llu (%lld keys)", (unsigned long long)op->user,
             (long long)r->element[0]->integer);
    msgpack_packer *out = ain_actor_body(st->actor);
    msgpack_pack_map(out, 2);
    ain_mp_pack_kv_u64(out, "user", op->user);
    ain_mp_pack_kv_i64(out, "deleted", r->element[0]->integer);
    ain_request_reply_packed(op->req, AIN_STATUS_OK);
    free(op);
}

static int s_reset(ain_actor_t *actor, ain_request_t *req)
{
    ain__rl_t *st = ain_actor_state(actor);
    if (s_start_op(st, req, true, s_on_reset) < 0)
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "Redis is down: nothing to reset yet");
    return 0;
}

/* ------------------------------------------------------------ RATE_POLICIES */

static int s_policies(ain_actor_t *actor, ain_request_t *req)
{
    ain__rl_t *st = ain_actor_state(actor);
    msgpack_packer *pk = ain_actor_body(actor);
    msgpack_pack_map(pk, 3);
    ain_mp_pack_str(pk, "policies");
    msgpack_pack_array(pk, AIN_RL_POLICY_COUNT);
    for (int i = 0; i < AIN_RL_POLICY_COUNT; i++) {
        const ain_rl_policy_t *p = &st->pol.p[i];
        msgpack_pack_map(pk, 8);
        ain_mp_pack_kv_str(pk, "name", p->name);
        ain_mp_pack_kv_str(pk, "kind", p->kind == AIN_RL_RATE ? "rate" : "lease");
        ain_mp_pack_kv_i64(pk, "limit", p->limit);
        ain_mp_pack_kv_i64(pk, "window_ms", p->window_ms);
        ain_mp_pack_kv_i64(pk, "burst", p->burst);
        ain_mp_pack_kv_str(pk, "unit", p->unit);
        ain_mp_pack_kv_i64(pk, "emission_us", p->emission_us);
        ain_mp_pack_str(pk, "active");
        bool active = i != (st->gmail_user == AIN_RL_GMAIL_USER ? AIN_RL_GMAIL_USER_REQUESTS
                                                                : AIN_RL_GMAIL_USER);
        active ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
    ain_mp_pack_kv_i64(pk, "shares", st->shares);
    ain_mp_pack_str(pk, "redis");
    ain_redis_connected(st->redis) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

/* ------------------------------------------------------------ metrics, tick */

static void s_metrics_init(ain__rl_t *st, ain_metrics_t *reg)
{
    ain__rl_metrics_t *m = &st->m;
#define C(f, name) m->f = ain_metrics_counter(reg, "ratelimit." name)
#define G(f, name) m->f = ain_metrics_gauge(reg, "ratelimit." name)
    C(decisions, "decisions");
    C(allowed, "allowed");
    C(refused, "refused");
    C(refused_local, "refused.cached");
    C(degraded_refused, "refused.redis_down");
    C(degraded_local, "api.local_share");
    C(invalid, "invalid");
    C(denied, "denied");
    C(calls, "redis.calls");
    C(call_decisions, "redis.call_decisions");
    C(call_errors, "redis.call_errors");
    C(reloads, "redis.script_reloads");
    C(leases, "leases.acquired");
    C(leases_refused, "leases.refused");
    C(releases, "leases.released");
    C(resets, "resets");
    C(near_quota, "near_quota.seen");
    C(abandoned, "abandoned");
    G(redis_up, "redis.connected");
    G(queued, "queue");
    G(deny_keys, "deny_cache.keys");
    G(fallback_keys, "fallback.keys");
#undef C
#undef G
    static const char *const quotas[AIN__Q_COUNT] = {"gmail", "outlook", "api"};
    char name[AIN_METRIC_NAME_MAX];
    for (int q = 0; q < AIN__Q_COUNT; q++) {
        snprintf(name, sizeof name, "ratelimit.decisions.%s", quotas[q]);
        m->quota_decisions[q] = ain_metrics_counter(reg, name);
        snprintf(name, sizeof name, "ratelimit.refused.%s", quotas[q]);
        m->quota_refused[q] = ain_metrics_counter(reg, name);
    }
    for (int p = 0; p < AIN_RL_POLICY_COUNT; p++) {
        snprintf(name, sizeof name, "ratelimit.usage.%s.max_permille", st->pol.p[p].name);
        m->usage_max[p] = ain_metrics_gauge(reg, name);
        snprintf(name, sizeof name, "ratelimit.near_quota.%s", st->pol.p[p].name);
        m->near[p] = ain_metrics_gauge(reg, name);
    }
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    s_actor_t *a = arg;
    ain__rl_t *st = &a->st;
    (void)actor;
    int64_t now = ain_clock_mono_us();
    ain_rl_local_sweep(st->deny, now);
    ain_rl_local_sweep(st->fallback, now);
    ain_metric_set(st->m.deny_keys, (int64_t)ain_rl_local_size(st->deny));
    ain_metric_set(st->m.fallback_keys, (int64_t)ain_rl_local_size(st->fallback));
    /* Usage and near-quota: the larger of this window and the last, so a
     * reading never drops to zero just because a window began. */
    bool roll = ++a->tick % S_NEAR_WINDOW == 0;
    for (int p = 0; p < AIN_RL_POLICY_COUNT; p++) {
        int64_t near = st->near_now[p] > a->near_prev[p] ? st->near_now[p] : a->near_prev[p];
        int64_t usage =
            st->usage_max_now[p] > a->usage_prev[p] ? st->usage_max_now[p] : a->usage_prev[p];
        ain_metric_set(st->m.near[p], near);
        ain_metric_set(st->m.usage_max[p], usage);
        if (roll) {
            a->near_prev[p] = st->near_now[p];
            a->usage_prev[p] = st->usage_max_now[p];
            st->near_now[p] = 0;
            st->usage_max_now[p] = 0;
        }
    }
    if (roll)
        zhashx_purge(st->near_seen);
}

/* ------------------------------------------------------------ start, stop */

static int s_start(ain_actor_t *actor)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    ain_rl_policies_t pol;
    char why[256];
    ain_rl_gmail_gen_t gen = strcmp(ain_config_str(cfg, AIN_CFG_AINBOX_GMAIL_QUOTA), "old") == 0
                                 ? AIN_RL_GMAIL_OLD
                                 : AIN_RL_GMAIL_NEW;
    if (ain_rl_policies_load(&pol, gen, ain_config_str(cfg, AIN_CFG_AINBOX_RATELIMITS), why,
                             sizeof why) < 0) {
        ain_error(ain_actor_log(actor), "ratelimit: %s", why);
        return -1;
    }
    s_actor_t *a = AIN_NEW(s_actor_t);
    ain__rl_t *st = &a->st;
    st->actor = actor;
    st->log = ain_actor_log(actor);
    st->pol = pol;
    st->gmail_gen = gen;
    const char *gmail = ain_config_str(cfg, AIN_CFG_AINBOX_RATELIMIT_GMAIL_USER);
    st->gmail_user =
        strcmp(gmail, "requests") == 0 ? AIN_RL_GMAIL_USER_REQUESTS : AIN_RL_GMAIL_USER;
    st->shares = ain_config_int(cfg, AIN_CFG_AINBOX_RATELIMIT_SHARES);
    st->retry_ms = ain_config_int(cfg, AIN_CFG_AINBOX_RATELIMIT_RETRY_MS);
    /* A user's index outlives every provider key it names. */
    for (int p = 0; p < AIN_RL_POLICY_COUNT; p++)
        if (p != AIN_RL_API_USER && st->pol.p[p].per_subject &&
            st->pol.p[p].window_ms + 1000 > st->index_ttl_ms)
            st->index_ttl_ms = st->pol.p[p].window_ms + 1000;
    st->instance = ain_proc_instance(ain_actor_proc(actor));
    st->deny = ain_rl_local_new(AIN__RL_LOCAL_MAX);
    st->fallback = ain_rl_local_new(AIN__RL_LOCAL_MAX);
    st->near_seen = zhashx_new();
    s_metrics_init(st, ain_actor_metrics(actor));
    ain_actor_set_state(actor, st);
    ain__rl_redis_start(st);
    ain_actor_timer(actor, S_TICK_MS, true, s_tick, a);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    ain__rl_t *st = ain_actor_state(actor);
    ain__rl_redis_stop(st);
    ain_rl_local_destroy(&st->deny);
    ain_rl_local_destroy(&st->fallback);
    zhashx_destroy(&st->near_seen);
    free((s_actor_t *)st); /* st is the first member */
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_RATE_CHECK, s_check},       {AIN_MSG_RATE_RELEASE, s_release},
    {AIN_MSG_RATE_USAGE, s_usage},       {AIN_MSG_RATE_RESET, s_reset},
    {AIN_MSG_RATE_POLICIES, s_policies}, {0, NULL},
};

const ain_actor_def_t ain_ratelimit_actor = {
    .service = "ratelimit",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Decisions wait on Redis without holding the thread; batches grow
     * with what is held. */
    .credit = AIN__RL_CREDIT,
};
