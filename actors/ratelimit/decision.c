/* decision.c: RATE_CHECK bodies into decisions, decisions into answers.
 *
 * A decision is all-or-nothing over its buckets: a Gmail call takes units
 * from the account's bucket and the project's (and a lease when asked); it
 * is admitted only if every bucket admits it, and then every bucket is
 * charged, in one Redis script (redis.c). Answers describe the binding
 * bucket (the one that refused, or the one closest to its limit) and list
 * every bucket, in the fields the edge turns into RateLimit headers.
 */
#include <string.h>

#include "actors/ratelimit/internal.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_LEASE_RETRY_US 100000 /* a refused lease: try again soon, holders release early */
#define S_COUNT_MAX      100    /* calls in one decision (a batch's parts) */
#define S_UNITS_MAX      10000

static const char *const s_quota_names[AIN__Q_COUNT] = {"gmail", "outlook", "api"};

/* ------------------------------------------------------------ parsing */

static bool s_str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* Every key of `map` is one of `allowed` (NULL-terminated). */
static bool s_keys_known(const msgpack_object *map, const char *const *allowed)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = s_str_is(k, *a);
        if (!known)
            return false;
    }
    return true;
}

static void s_bucket(ain__rl_t *st, ain__rl_decision_t *d, int policy, const char *subject,
                     size_t len)
{
    ain__rl_bucket_t *b = &d->b[d->nb++];
    ain__rl_key(st, policy, subject, len, b);
}

/* One decision from map `o`; returns NULL or the reason it is invalid. */
static const char *s_parse_one(ain__rl_t *st, const msgpack_object *o, uint64_t user,
                               ain__rl_decision_t *d)
{
    static const char *const keys[] = {"quota", "account", "method", "units",
                                       "count", "lease",   NULL};
    if (o->type != MSGPACK_OBJECT_MAP || !s_keys_known(o, keys))
        return "a decision is {quota, account?, method?, units?, count?, lease?}";
    const msgpack_object *q = ain_mp_get(o, "quota");
    int quota = -1;
    for (int i = 0; q && i < AIN__Q_COUNT; i++)
        if (s_str_is(q, s_quota_names[i]))
            quota = i;
    if (quota < 0)
        return "quota must be \"gmail\", \"outlook\" or \"api\"";
    const char *account = NULL, *method = NULL;
    size_t account_len = 0, method_len = 0;
    uint64_t units = 0, count = 1;
    bool lease = false;
    if (ain_mp_get_str(o, "account", &account, &account_len) < 0 ||
        ain_mp_get_str(o, "method", &method, &method_len) < 0 ||
        ain_mp_get_u64(o, "units", &units) < 0 || ain_mp_get_u64(o, "count", &count) < 0 ||
        ain_mp_get_bool(o, "lease", &lease) < 0)
        return "account and method are strings, units and count integers, lease a boolean";
    if (count < 1 || count > S_COUNT_MAX)
        return "count must be 1..100";
    d->quota = (ain__quota_t)quota;
    d->user = user;
    d->lease = -1;
    d->refused_by = -1;
    if (quota == AIN__Q_API) {
        if (account || method || units || lease)
            return "the api quota takes only count: it is the envelope user's";
        if (user == 0)
            return "the api quota needs the envelope user";
        char subject[24];
        int n = snprintf(subject, sizeof subject, "%llu", (unsigned long long)user);
        s_bucket(st, d, AIN_RL_API_USER, subject, (size_t)n);
        d->cost = d->cost_project = (int64_t)count;
    } else {
        if (!account || !ain_rl_subject_ok(account, account_len))
            return "account must be 1..128 characters of letters, digits and @._+-=";
        if (quota == AIN__Q_GMAIL) {
            int per_call = -1;
            if (method && !units)
                per_call = ain_rl_gmail_cost(st->gmail_gen, method, method_len);
            else if (!method && units >= 1 && units <= S_UNITS_MAX)
                per_call = (int)units;
            if (per_call < 0)
                return "gmail needs a known method (\"messages.get\") or units 1..10000";
            d->cost_project = per_call * (int64_t)count;
            d->cost = st->gmail_user == AIN_RL_GMAIL_USER ? d->cost_project : (int64_t)count;
            s_bucket(st, d, st->gmail_user, account, account_len);
            s_bucket(st, d, AIN_RL_GMAIL_PROJECT, "all", 3);
            if (lease)
                s_bucket(st, d, AIN_RL_GMAIL_CONCURRENT, account, account_len);
        } else {
            if (method || units)
                return "outlook counts requests: count, not method or units";
            d->cost = d->cost_project = (int64_t)count;
            s_bucket(st, d, AIN_RL_OUTLOOK_MAILBOX, account, account_len);
            s_bucket(st, d, AIN_RL_OUTLOOK_APP, "all", 3);
            if (lease)
                s_bucket(st, d, AIN_RL_OUTLOOK_CONCURRENT, account, account_len);
        }
        if (lease) {
            d->lease = d->nb - 1;
            snprintf(d->lease_id, sizeof d->lease_id, "%llx.%llx", (unsigned long long)st->instance,
                     (unsigned long long)++st->lease_seq);
        }
    }
    /* A cost above a bucket's burst could never be admitted: say so now. */
    for (int i = 0; i < d->nb; i++) {
        const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
        int64_t cost = i == 0 ? d->cost : d->cost_project;
        if (p->kind == AIN_RL_RATE && cost > p->burst)
            return "the cost exceeds a policy's burst (RATE_POLICIES): split the batch";
    }
    return NULL;
}

ain__rl_job_t *ain__rl_job_parse(ain__rl_t *st, ain_request_t *req, const char **why)
{
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    ain__rl_job_t *job = NULL;
    *why = NULL;
    if (ain_body_parse(&body, env->body, env->body_len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP) {
        *why = "body must be a decision map or {decisions: [...]}";
        goto done;
    }
    const msgpack_object *list = ain_mp_get(body.root, "decisions");
    const msgpack_object *one = body.root;
    uint32_t n = 1;
    if (list) {
        if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size < 1 ||
            list->via.array.size > AIN__RL_BATCH || body.root->via.map.size != 1) {
            *why = "decisions: an array of 1..64 decision maps, alone in the body";
            goto done;
        }
        n = list->via.array.size;
        one = list->via.array.ptr;
    }
    job = ain_calloc(1, sizeof *job + n * sizeof(ain__rl_decision_t));
    job->st = st;
    job->req = req;
    job->many = list != NULL;
    job->n = job->pending = (int)n;
    for (uint32_t i = 0; i < n && !*why; i++) {
        job->d[i].job = job;
        *why = s_parse_one(st, &one[i], env->user, &job->d[i]);
    }
done:
    ain_body_release(&body);
    if (*why) {
        free(job);
        return NULL;
    }
    return job;
}

/* ------------------------------------------------------------ deciding */

static int64_t s_cost(const ain__rl_decision_t *d, int i)
{
    return i == 0 ? d->cost : d->cost_project;
}

/* What bucket i says about `d`: units left, time until full, and whether
 * (and how long) it refuses. */
typedef struct {
    int64_t remaining, reset_us, retry_us, permille;
    bool refuses;
} s_view_t;

/* A bucket's numbers: the policy's, or while Redis is down for the user
 * API limit, this process's share of it. */
typedef struct {
    int64_t limit, burst, t_us, tau_us;
} s_params_t;

static s_params_t s_params(const ain__rl_t *st, const ain__rl_decision_t *d, int i)
{
    const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
    s_params_t k = {p->limit, p->burst, p->emission_us, p->tolerance_us};
    if (d->degraded && d->quota == AIN__Q_API) {
        k.limit = p->limit / st->shares > 0 ? p->limit / st->shares : 1;
        k.burst = p->burst / st->shares > 0 ? p->burst / st->shares : 1;
        k.t_us = p->emission_us * st->shares;
        k.tau_us = k.burst * k.t_us;
    }
    return k;
}

static s_view_t s_view(const ain__rl_t *st, const ain__rl_decision_t *d, int i)
{
    const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
    const ain__rl_bucket_t *b = &d->b[i];
    s_params_t k = s_params(st, d, i);
    s_view_t v = {0};
    if (p->kind == AIN_RL_LEASE) {
        v.remaining = b->v1 < p->limit ? p->limit - b->v1 : 0;
        v.permille = b->v1 * 1000 / p->limit;
        if (b->v1 >= p->limit && !d->allowed) {
            v.refuses = true;
            int64_t first = b->v2 > d->now_us ? b->v2 - d->now_us : 0;
            v.retry_us = first < S_LEASE_RETRY_US ? first : S_LEASE_RETRY_US;
            v.reset_us = first;
        }
        return v;
    }
    int64_t debt = b->v1 > d->now_us ? b->v1 - d->now_us : 0;
    v.reset_us = debt;
    v.remaining = debt < k.tau_us ? (k.tau_us - debt) / k.t_us : 0;
    v.permille = debt >= k.tau_us ? 1000 : debt * 1000 / k.tau_us;
    if (!d->allowed) {
        int64_t due = b->v1 + s_cost(d, i) * k.t_us - k.tau_us;
        if (due > d->now_us) {
            v.refuses = true;
            v.retry_us = due - d->now_us;
        }
    }
    return v;
}

/* Near-quota bookkeeping for the monitor's alert (ratelimit.c reports it). */
static void s_track(ain__rl_t *st, const ain__rl_decision_t *d)
{
    for (int i = 0; i < d->nb; i++) {
        int policy = d->b[i].policy;
        s_view_t v = s_view(st, d, i);
        if (v.permille > st->usage_max_now[policy])
            st->usage_max_now[policy] = v.permille;
        if (v.permille < AIN__RL_NEAR_PERMILLE || !st->pol.p[policy].per_subject)
            continue;
        if (zhashx_size(st->near_seen) < AIN__RL_NEAR_MAX &&
            !zhashx_lookup(st->near_seen, d->b[i].key)) {
            zhashx_insert(st->near_seen, d->b[i].key, (void *)1);
            st->near_now[policy]++;
            ain_metric_inc(st->m.near_quota);
        }
    }
}

void ain__rl_decide_redis(ain__rl_t *st, ain__rl_decision_t *d, bool ok)
{
    d->allowed = ok;
    d->retry_us = 0;
    for (int i = 0; i < d->nb; i++) {
        s_view_t v = s_view(st, d, i);
        if (v.refuses && v.retry_us >= d->retry_us) {
            d->retry_us = v.retry_us;
            d->refused_by = i;
        }
        /* Remember refusals, on our clock, so repeats cost no Redis call. */
        const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
        if (!ok && p->kind == AIN_RL_RATE && d->b[i].v1 > d->now_us)
            ain_rl_local_note(st->deny, d->b[i].key, d->b[i].v1 - st->clock_offset_us);
    }
    if (!ok && d->refused_by < 0)
        d->refused_by = 0, d->retry_us = 1000; /* refused by a bucket now free: ask again */
    s_track(st, d);
}

bool ain__rl_decide_cached(ain__rl_t *st, ain__rl_decision_t *d)
{
    int64_t now = ain_clock_mono_us();
    for (int i = 0; i < d->nb; i++) {
        const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
        int64_t retry;
        if (p->kind != AIN_RL_RATE ||
            !ain_rl_local_refuses(st->deny, d->b[i].key, now, p->emission_us, p->tolerance_us,
                                  s_cost(d, i), &retry))
            continue;
        /* Only the refusing bucket is known: describe it alone. */
        d->allowed = false;
        d->now_us = now + st->clock_offset_us;
        d->b[0] = d->b[i];
        d->b[0].v1 = d->now_us + retry - s_cost(d, i) * p->emission_us + p->tolerance_us;
        d->cost = s_cost(d, i);
        d->nb = 1;
        d->lease = -1;
        d->refused_by = 0;
        d->retry_us = retry;
        ain_metric_inc(st->m.refused_local);
        return true;
    }
    return false;
}

void ain__rl_decide_degraded(ain__rl_t *st, ain__rl_decision_t *d)
{
    d->degraded = true;
    d->now_us = ain_clock_mono_us();
    d->lease = -1;
    if (d->quota != AIN__Q_API) {
        /* Provider quotas fail closed: losing the account is worse than waiting. */
        d->allowed = false;
        d->refused_by = 0;
        d->retry_us = st->retry_ms * 1000;
        d->nb = 1;
        d->b[0].v1 = d->now_us;
        ain_metric_inc(st->m.degraded_refused);
        return;
    }
    /* The user API limit: this process's share of it, in memory. */
    s_params_t k = s_params(st, d, 0);
    int64_t retry, tat;
    int rc = ain_rl_local_take(st->fallback, d->b[0].key, d->now_us, k.t_us, k.tau_us, d->cost,
                               &retry, &tat);
    d->allowed = rc == 1;
    d->refused_by = rc == 1 ? -1 : 0;
    d->retry_us = rc == 0 ? retry : rc < 0 ? st->retry_ms * 1000 : 0;
    d->b[0].v1 = tat;
    ain_metric_inc(st->m.degraded_local);
}

/* ------------------------------------------------------------ answering */

static void s_pack_bucket(msgpack_packer *pk, const ain__rl_t *st, const ain__rl_decision_t *d,
                          int i)
{
    const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
    s_view_t v = s_view(st, d, i);
    msgpack_pack_map(pk, 6);
    ain_mp_pack_kv_str(pk, "policy", p->name);
    ain_mp_pack_kv_i64(pk, "limit", s_params(st, d, i).limit);
    ain_mp_pack_kv_i64(pk, "window_s", (p->window_ms + 999) / 1000);
    ain_mp_pack_kv_str(pk, "unit", p->unit);
    ain_mp_pack_kv_i64(pk, "remaining", v.remaining);
    ain_mp_pack_kv_i64(pk, "reset_ms", (v.reset_us + 999) / 1000);
}

/* The bucket that describes the decision: the one that refused, or the
 * one with the smallest share left. */
static int s_binding(const ain__rl_t *st, const ain__rl_decision_t *d)
{
    if (!d->allowed)
        return d->refused_by >= 0 ? d->refused_by : 0;
    int best = 0;
    int64_t best_left = INT64_MAX;
    for (int i = 0; i < d->nb; i++) {
        const ain_rl_policy_t *p = &st->pol.p[d->b[i].policy];
        s_view_t v = s_view(st, d, i);
        int64_t cap = p->kind == AIN_RL_RATE ? p->burst : p->limit;
        int64_t left = v.remaining * 1000 / cap;
        if (left < best_left)
            best = i, best_left = left;
    }
    return best;
}

static void s_pack_decision(msgpack_packer *pk, const ain__rl_t *st, const ain__rl_decision_t *d)
{
    int bind = s_binding(st, d);
    const ain_rl_policy_t *p = &st->pol.p[d->b[bind].policy];
    s_view_t v = s_view(st, d, bind);
    bool lease = d->allowed && d->lease >= 0;
    msgpack_pack_map(pk, 11 + (lease ? 2 : 0) + (d->degraded ? 1 : 0));
    ain_mp_pack_str(pk, "allowed");
    d->allowed ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ain_mp_pack_kv_str(pk, "quota", s_quota_names[d->quota]);
    ain_mp_pack_kv_str(pk, "policy", p->name);
    ain_mp_pack_kv_i64(pk, "limit", s_params(st, d, bind).limit);
    ain_mp_pack_kv_i64(pk, "window_s", (p->window_ms + 999) / 1000);
    ain_mp_pack_kv_str(pk, "unit", p->unit);
    ain_mp_pack_kv_i64(pk, "remaining", v.remaining);
    ain_mp_pack_kv_i64(pk, "reset_ms", (v.reset_us + 999) / 1000);
    ain_mp_pack_kv_i64(pk, "retry_after_ms", d->allowed ? 0 : (d->retry_us + 999) / 1000);
    ain_mp_pack_kv_i64(pk, "now_us", d->now_us);
    ain_mp_pack_str(pk, "buckets");
    msgpack_pack_array(pk, (uint32_t)d->nb);
    for (int i = 0; i < d->nb; i++)
        s_pack_bucket(pk, st, d, i);
    if (lease) {
        const ain__rl_bucket_t *b = &d->b[d->lease];
        char token[AIN__RL_KEY + AIN__RL_LEASE_ID];
        snprintf(token, sizeof token, "%s/%s/%s", st->pol.p[b->policy].name, b->subject,
                 d->lease_id);
        ain_mp_pack_kv_str(pk, "lease", token);
        ain_mp_pack_kv_i64(pk, "lease_ttl_ms", st->pol.p[b->policy].window_ms);
    }
    if (d->degraded) {
        ain_mp_pack_str(pk, "degraded");
        msgpack_pack_true(pk);
    }
}

void ain__rl_done(ain__rl_t *st, ain__rl_decision_t *d)
{
    d->done = true;
    ain_metric_inc(st->m.decisions);
    ain_metric_inc(st->m.quota_decisions[d->quota]);
    if (d->allowed) {
        ain_metric_inc(st->m.allowed);
        if (d->lease >= 0)
            ain_metric_inc(st->m.leases);
    } else {
        ain_metric_inc(st->m.refused);
        ain_metric_inc(st->m.quota_refused[d->quota]);
        if (d->refused_by >= 0 && st->pol.p[d->b[d->refused_by].policy].kind == AIN_RL_LEASE)
            ain_metric_inc(st->m.leases_refused);
    }
    ain__rl_job_t *job = d->job;
    if (--job->pending > 0)
        return;
    msgpack_packer *pk = ain_actor_body(st->actor);
    if (job->many) {
        msgpack_pack_map(pk, 1);
        ain_mp_pack_str(pk, "results");
        msgpack_pack_array(pk, (uint32_t)job->n);
    }
    for (int i = 0; i < job->n; i++)
        s_pack_decision(pk, st, &job->d[i]);
    ain_request_reply_packed(job->req, AIN_STATUS_OK);
    free(job);
}
