/* redis.c: decisions in Redis: the Lua scripts and the batcher.
 *
 * Every decision runs inside one Lua script, so read-decide-write is atomic
 * and any number of actors on any hosts sharing a Redis admit exactly what
 * the policy allows. The clock is Redis's (TIME inside the script), so host
 * clocks cannot skew a limit. Decisions wait in a queue while every lane
 * (a Redis connection; AIN__RL_LANES of them) has AIN__RL_INFLIGHT script
 * calls out; the next call takes up to AIN__RL_BATCH of them at once. Two
 * lanes keep Redis busy while this actor digests the replies of one: Redis
 * answers a connection's pipelined calls together, and with a single lane
 * it sat idle a third of the time. At low load a decision goes out at once,
 * alone; under load, batches grow and Redis does less per decision.
 *
 * Keys (one Redis, not Redis Cluster: the scripts touch keys of many users):
 *   ain:rl:<policy>:<subject>  a rate's TAT in µs (a string, expiring tau
 *                              after its last write), or a lease set
 *                              (ZSET lease id -> expiry µs)
 *   ain:rl:ix:<user>           the user's provider keys (SET), for usage
 *                              and reset
 */
#include <string.h>

#include "actors/ratelimit/internal.h"
#include "proto/channels.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_PREFIX  "ain:rl:"
#define S_CHANNEL AIN_CHANNEL_RATELIMIT_RESET

/* The decision script. ARGV[1] = decisions, ARGV[2] = policies P; then per
 * policy (ids 1..P) four numbers: for a rate T, tau and the TTL its keys
 * get on a write (tau in ms, rounded up, + 1: a TAT is never further ahead
 * than tau); for a lease its limit, minus its lifetime in µs, and the TTL
 * of its set; then 1 if its keys are indexed under their user. Then per
 * decision either "0", policy id, cost: one rate bucket and no index (the
 * user API limit; the common case, kept short), or: buckets, index TTL in
 * ms (0 = no index key), and per bucket policy id and cost (for a lease,
 * the lease id). KEYS: per decision its index key (if any), then its
 * bucket keys. Returns Redis's now, then per decision: admitted (1/0), and
 * per bucket two numbers: a rate's TAT (after, if admitted) and 0, or a
 * lease set's holders and its first expiry (when full). Admitted means
 * every bucket admitted; only then is any bucket charged. Numbers stay
 * below 2^53 (Lua doubles; Redis writes them as integers). Parameters come
 * once per call and the work tables are reused, so a decision costs little
 * more than its GET and SET. */
static const char s_decide_lua[] =
    "local call = redis.call\n"
    "local t = call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local out, o = {now}, 1\n"
    "local pa, pb, pt, pix = {}, {}, {}, {}\n"
    "local a = 3\n"
    "for i = 1, tonumber(ARGV[2]) do\n"
    "  pa[i], pb[i], pt[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  pix[i] = ARGV[a + 3] == '1'\n"
    "  a = a + 4\n"
    "end\n"
    "local k = 1\n"
    "local pol, fresh, val, aux = {}, {}, {}, {}\n"
    "for _ = 1, tonumber(ARGV[1]) do\n"
    "  local nb = tonumber(ARGV[a])\n"
    "  if nb == 0 then\n"
    "    local key, p = KEYS[k], tonumber(ARGV[a + 1])\n"
    "    local tat = tonumber(call('GET', key)) or now\n"
    "    if tat < now then tat = now end\n"
    "    local nxt = tat + pa[p] * tonumber(ARGV[a + 2])\n"
    "    if nxt - pb[p] > now then\n"
    "      out[o + 1], out[o + 2] = 0, tat\n"
    "    else\n"
    "      call('SET', key, nxt, 'PX', pt[p])\n"
    "      out[o + 1], out[o + 2] = 1, nxt\n"
    "    end\n"
    "    out[o + 3] = 0\n"
    "    o, k, a = o + 3, k + 1, a + 3\n"
    "  else\n"
    "    local ittl = tonumber(ARGV[a + 1])\n"
    "    a = a + 2\n"
    "    local idx\n"
    "    if ittl > 0 then idx = KEYS[k]; k = k + 1 end\n"
    "    local ok, k0, a0 = 1, k, a\n"
    "    for b = 1, nb do\n"
    "      local key, p = KEYS[k], tonumber(ARGV[a])\n"
    "      pol[b] = p\n"
    "      if pb[p] < 0 then\n"
    "        call('ZREMRANGEBYSCORE', key, '-inf', now)\n"
    "        local n = call('ZCARD', key)\n"
    "        fresh[b], val[b], aux[b] = n == 0, n, 0\n"
    "        if n >= pa[p] then\n"
    "          ok = 0\n"
    "          aux[b] = tonumber(call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])\n"
    "        end\n"
    "      else\n"
    "        local tat = tonumber(call('GET', key))\n"
    "        fresh[b], aux[b] = tat == nil, 0\n"
    "        if tat == nil or tat < now then tat = now end\n"
    "        local nxt = tat + pa[p] * tonumber(ARGV[a + 1])\n"
    "        if nxt - pb[p] > now then ok = 0; val[b] = tat else val[b] = nxt end\n"
    "      end\n"
    "      k, a = k + 1, a + 2\n"
    "    end\n"
    "    if ok == 1 then\n"
    "      k, a = k0, a0\n"
    "      for b = 1, nb do\n"
    "        local key, p = KEYS[k], pol[b]\n"
    "        if pb[p] < 0 then\n"
    "          call('ZADD', key, now - pb[p], ARGV[a + 1])\n"
    "          call('PEXPIRE', key, pt[p])\n"
    "          val[b] = val[b] + 1\n"
    "        else\n"
    "          call('SET', key, val[b], 'PX', pt[p])\n"
    "        end\n"
    "        if idx and fresh[b] and pix[p] then call('SADD', idx, key) end\n"
    "        k, a = k + 1, a + 2\n"
    "      end\n"
    "      if idx then call('PEXPIRE', idx, ittl) end\n"
    "    end\n"
    "    out[o + 1] = ok\n"
    "    o = o + 1\n"
    "    for b = 1, nb do out[o + 1] = val[b]; out[o + 2] = aux[b]; o = o + 2 end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Usage and reset of one user. KEYS[1] the user's index, KEYS[2] the
 * user's API key; ARGV[1] "usage" or "reset", ARGV[2] the reset channel.
 * Usage returns Redis's now, the API TAT (0 if none), then per provider
 * key: name, value (TAT, or lease holders), kind (0 rate, 1 lease). Reset
 * deletes them, announces it on the channel (every limiter sharing this
 * Redis then forgets what it cached) and returns {keys deleted}. */
static const char s_usage_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local members = redis.call('SMEMBERS', KEYS[1])\n"
    "if ARGV[1] == 'reset' then\n"
    "  local n = redis.call('DEL', KEYS[2])\n"
    "  for _, m in ipairs(members) do n = n + redis.call('DEL', m) end\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('PUBLISH', ARGV[2], KEYS[2])\n"
    "  return {n}\n"
    "end\n"
    "local out = {now, tonumber(redis.call('GET', KEYS[2])) or 0}\n"
    "for _, m in ipairs(members) do\n"
    "  local ty = redis.call('TYPE', m)['ok']\n"
    "  if ty == 'string' then\n"
    "    out[#out + 1] = m; out[#out + 1] = tonumber(redis.call('GET', m)) or 0\n"
    "    out[#out + 1] = 0\n"
    "  elseif ty == 'zset' then\n"
    "    redis.call('ZREMRANGEBYSCORE', m, '-inf', now)\n"
    "    out[#out + 1] = m; out[#out + 1] = redis.call('ZCARD', m); out[#out + 1] = 1\n"
    "  else\n"
    "    redis.call('SREM', KEYS[1], m)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ------------------------------------------------------------ keys */

void ain__rl_key(const ain__rl_t *st, int policy, const char *subject, size_t len,
                 ain__rl_bucket_t *b)
{
    const char *name = st->pol.p[policy].name;
    int head = snprintf(b->key, sizeof b->key, S_PREFIX "%s:", name);
    snprintf(b->key + head, sizeof b->key - (size_t)head, "%.*s", (int)len, subject);
    b->policy = policy;
    b->subject = b->key + head;
    b->v1 = b->v2 = 0;
}

void ain__rl_index_key(uint64_t user, char *buf, size_t size)
{
    snprintf(buf, size, S_PREFIX "ix:%llu", (unsigned long long)user);
}

/* ------------------------------------------------------------ the batcher */

typedef struct {
    ain__rl_t *st;
    int n, lane;
    int64_t sent_us;
    bool eval; /* sent with the script's text */
    ain__rl_decision_t *d[AIN__RL_BATCH];
} s_call_t;

static void s_flush(ain__rl_t *st);

/* Appends the decimal text of `v` to the argument list. */
typedef struct {
    const char **argv;
    size_t *len;
    int argc;
    char *num; /* scratch for numbers */
    size_t used, cap;
} s_args_t;

static void s_arg(s_args_t *a, const char *s, size_t n)
{
    a->argv[a->argc] = s;
    a->len[a->argc++] = n;
}

static void s_arg_num(s_args_t *a, int64_t v)
{
    char *p = a->num + a->used;
    int n = snprintf(p, a->cap - a->used, "%lld", (long long)v);
    a->used += (size_t)n + 1;
    s_arg(a, p, (size_t)n);
}

static bool s_indexed(const ain__rl_decision_t *d)
{
    return d->quota != AIN__Q_API && d->user != 0;
}

static void s_on_decide(ain_redis_t *redis, redisReply *r, void *arg);

/* Sends call `c`; returns 0, or -1 (Redis is down). */
static int s_send(ain__rl_t *st, s_call_t *c)
{
    int keys = 0, args = 2 + 4 * AIN_RL_POLICY_COUNT;
    for (int i = 0; i < c->n; i++) {
        keys += c->d[i]->nb + (s_indexed(c->d[i]) ? 1 : 0);
        args += 2 + 2 * c->d[i]->nb;
    }
    int total = 3 + keys + args;
    s_args_t a = {0};
    a.argv = ain_malloc((size_t)total * sizeof *a.argv);
    a.len = ain_malloc((size_t)total * sizeof *a.len);
    a.cap = (size_t)(args + 1) * 24;
    a.num = ain_malloc(a.cap + (size_t)c->n * 48);
    char *index_keys = a.num + a.cap; /* 48 bytes per decision */
    c->eval = !st->sha[0];
    if (c->eval) {
        s_arg(&a, "EVAL", 4);
        s_arg(&a, s_decide_lua, sizeof s_decide_lua - 1);
    } else {
        s_arg(&a, "EVALSHA", 7);
        s_arg(&a, st->sha, 40);
    }
    s_arg_num(&a, keys);
    for (int i = 0; i < c->n; i++) {
        ain__rl_decision_t *d = c->d[i];
        if (s_indexed(d)) {
            char *ix = index_keys + (size_t)i * 48;
            ain__rl_index_key(d->user, ix, 48);
            s_arg(&a, ix, strlen(ix));
        }
        for (int b = 0; b < d->nb; b++)
            s_arg(&a, d->b[b].key, strlen(d->b[b].key));
    }
    s_arg_num(&a, c->n);
    s_arg_num(&a, AIN_RL_POLICY_COUNT);
    for (int p = 0; p < AIN_RL_POLICY_COUNT; p++) {
        const ain_rl_policy_t *pol = &st->pol.p[p];
        bool lease = pol->kind == AIN_RL_LEASE;
        s_arg_num(&a, lease ? pol->limit : pol->emission_us);
        s_arg_num(&a, lease ? -pol->window_ms * 1000 : pol->tolerance_us);
        s_arg_num(&a, lease ? pol->window_ms + 1000 : (pol->tolerance_us + 999) / 1000 + 1);
        s_arg(&a, pol->per_subject && p != AIN_RL_API_USER ? "1" : "0", 1);
    }
    for (int i = 0; i < c->n; i++) {
        ain__rl_decision_t *d = c->d[i];
        if (d->nb == 1 && !s_indexed(d) && st->pol.p[d->b[0].policy].kind == AIN_RL_RATE) {
            s_arg(&a, "0", 1); /* the short form */
            s_arg_num(&a, d->b[0].policy + 1);
            s_arg_num(&a, d->cost);
            continue;
        }
        s_arg_num(&a, d->nb);
        s_arg_num(&a, s_indexed(d) ? st->index_ttl_ms : 0);
        for (int b = 0; b < d->nb; b++) {
            s_arg_num(&a, d->b[b].policy + 1);
            if (st->pol.p[d->b[b].policy].kind == AIN_RL_LEASE)
                s_arg(&a, d->lease_id, strlen(d->lease_id));
            else
                s_arg_num(&a, b == 0 ? d->cost : d->cost_project);
        }
    }
    c->sent_us = ain_clock_mono_us();
    int rc = ain_redis_command(st->lanes[c->lane], s_on_decide, c, a.argc, a.argv, a.len);
    free(a.argv);
    free(a.len);
    free(a.num);
    if (rc == 0) {
        st->lane_inflight[c->lane]++;
        ain_metric_inc(st->m.calls);
        ain_metric_add(st->m.call_decisions, c->n);
    }
    return rc;
}

static void s_degrade_call(ain__rl_t *st, s_call_t *c)
{
    for (int i = 0; i < c->n; i++) {
        ain__rl_decide_degraded(st, c->d[i]);
        ain__rl_done(st, c->d[i]);
    }
    free(c);
}

/* Reads Redis's answer into the call's decisions; false if malformed. */
static bool s_read(ain__rl_t *st, s_call_t *c, const redisReply *r)
{
    size_t want = 1;
    for (int i = 0; i < c->n; i++)
        want += 1 + 2 * (size_t)c->d[i]->nb;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != want)
        return false;
    for (size_t i = 0; i < want; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    int64_t now = r->element[0]->integer;
    st->clock_offset_us = now - c->sent_us; /* an upper bound: Redis read its clock after */
    size_t at = 1;
    for (int i = 0; i < c->n; i++) {
        ain__rl_decision_t *d = c->d[i];
        bool ok = r->element[at++]->integer == 1;
        d->now_us = now;
        for (int b = 0; b < d->nb; b++) {
            d->b[b].v1 = r->element[at++]->integer;
            d->b[b].v2 = r->element[at++]->integer;
        }
        ain__rl_decide_redis(st, d, ok);
    }
    return true;
}

static void s_on_decide(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_call_t *c = arg;
    ain__rl_t *st = c->st;
    (void)redis;
    st->lane_inflight[c->lane]--;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && !st->stopping) {
        /* Redis lost its script cache (a restart): send the text this once. */
        ain_metric_inc(st->m.reloads);
        st->sha[0] = '\0';
        if (s_send(st, c) < 0)
            s_degrade_call(st, c);
        s_flush(st);
        return;
    }
    if (!r || !s_read(st, c, r)) {
        ain_metric_inc(st->m.call_errors);
        if (r)
            ain_warn(st->log, "ratelimit: unexpected script reply (type %d%s%s)", r->type,
                     r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r->type == REDIS_REPLY_ERROR ? r->str : "");
        s_degrade_call(st, c);
        s_flush(st);
        return;
    }
    for (int i = 0; i < c->n; i++)
        ain__rl_done(st, c->d[i]);
    free(c);
    s_flush(st);
}

/* The connected lane with the fewest calls out and room for one, or -1. */
static int s_lane(const ain__rl_t *st)
{
    int best = -1;
    for (int i = 0; i < AIN__RL_LANES; i++)
        if (ain_redis_connected(st->lanes[i]) && st->lane_inflight[i] < AIN__RL_INFLIGHT &&
            (best < 0 || st->lane_inflight[i] < st->lane_inflight[best]))
            best = i;
    return best;
}

static bool s_connected(const ain__rl_t *st)
{
    for (int i = 0; i < AIN__RL_LANES; i++)
        if (st->lanes[i] && ain_redis_connected(st->lanes[i]))
            return true;
    return false;
}

static void s_drain_degraded(ain__rl_t *st)
{
    while (st->q_len > 0) {
        ain__rl_decision_t *d = st->queue[st->q_head];
        st->q_head = (st->q_head + 1) % st->q_cap;
        st->q_len--;
        ain__rl_decide_degraded(st, d);
        ain__rl_done(st, d);
    }
}

/* True if nobody waits for `d` any more: its request's deadline passed
 * while it queued (a Redis stall), or the skeleton answered it already. */
static bool s_abandoned(const ain__rl_decision_t *d, int64_t wall_ms)
{
    const ain_request_t *req = d->job->req;
    return ain_request_answered(req) || ain_request_envelope(req)->deadline_ms <= wall_ms;
}

static void s_flush(ain__rl_t *st)
{
    int lane;
    int64_t wall = ain_clock_wall_ms();
    while (!st->stopping && st->q_len > 0 && (lane = s_lane(st)) >= 0) {
        s_call_t *c = AIN_NEW(s_call_t);
        c->st = st;
        c->lane = lane;
        while (c->n < AIN__RL_BATCH && st->q_len > 0) {
            ain__rl_decision_t *d = st->queue[st->q_head];
            st->q_head = (st->q_head + 1) % st->q_cap;
            st->q_len--;
            if (s_abandoned(d, wall)) {
                /* Decided here as while Redis is down: a stall's backlog
                 * never reaches Redis, and nobody reads the answer. */
                ain_metric_inc(st->m.abandoned);
                ain__rl_decide_degraded(st, d);
                ain__rl_done(st, d);
                continue;
            }
            c->d[c->n++] = d;
        }
        if (c->n == 0) {
            free(c);
            continue;
        }
        if (s_send(st, c) < 0)
            s_degrade_call(st, c);
    }
    ain_metric_set(st->m.queued, (int64_t)st->q_len);
}

void ain__rl_enqueue(ain__rl_t *st, ain__rl_decision_t *d)
{
    if (!s_connected(st) || st->q_len == st->q_cap) {
        ain__rl_decide_degraded(st, d);
        ain__rl_done(st, d);
        return;
    }
    st->queue[(st->q_head + st->q_len) % st->q_cap] = d;
    st->q_len++;
    s_flush(st);
}

/* ------------------------------------------------------------ the rest */

int ain__rl_usage(ain__rl_t *st, uint64_t user, bool reset, ain_redis_fn *fn, void *arg)
{
    char index[48], api[AIN__RL_KEY];
    ain__rl_index_key(user, index, sizeof index);
    snprintf(api, sizeof api, S_PREFIX "%s:%llu", st->pol.p[AIN_RL_API_USER].name,
             (unsigned long long)user);
    const char *mode = reset ? "reset" : "usage";
    const char *argv[] = {"EVAL", s_usage_lua, "2", index, api, mode, S_CHANNEL};
    size_t len[] = {4,
                    sizeof s_usage_lua - 1,
                    1,
                    strlen(index),
                    strlen(api),
                    strlen(mode),
                    sizeof S_CHANNEL - 1};
    return ain_redis_command(st->redis, fn, arg, 7, argv, len);
}

int ain__rl_release(ain__rl_t *st, const char *key, const char *id, ain_redis_fn *fn, void *arg)
{
    const char *argv[] = {"ZREM", key, id};
    size_t len[] = {4, strlen(key), strlen(id)};
    return ain_redis_command(st->redis, fn, arg, 3, argv, len);
}

static void s_on_load(ain_redis_t *redis, redisReply *r, void *arg)
{
    ain__rl_t *st = arg;
    (void)redis;
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(st->sha, r->str, 40);
        st->sha[40] = '\0';
    }
}

static void s_on_state(ain_redis_t *redis, bool connected, void *arg)
{
    ain__rl_t *st = arg;
    ain_metric_set(st->m.redis_up, connected || s_connected(st));
    if (!connected) {
        /* Queued decisions go out on another lane, or are answered now. */
        if (!st->stopping && !s_connected(st))
            s_drain_degraded(st);
        return;
    }
    /* Its SHA, so calls send 40 bytes rather than the script. */
    const char *argv[] = {"SCRIPT", "LOAD", s_decide_lua};
    size_t len[] = {6, 4, sizeof s_decide_lua - 1};
    ain_redis_command(redis, s_on_load, st, 3, argv, len);
}

/* Resets made by any limiter: forget what we cached. A new subscription
 * forgets too, since resets may have passed while it was down. */
static void s_on_reset(ain_redis_t *redis, redisReply *r, void *arg)
{
    ain__rl_t *st = arg;
    (void)redis;
    if (r)
        ain__rl_forget(st);
}

static void s_on_sub_state(ain_redis_t *redis, bool connected, void *arg)
{
    ain__rl_t *st = arg;
    if (connected && ain_redis_subscribe(redis, S_CHANNEL, s_on_reset, st) < 0)
        ain_warn(st->log, "ratelimit: cannot subscribe to %s", S_CHANNEL);
}

void ain__rl_redis_start(ain__rl_t *st)
{
    st->q_cap = (size_t)AIN__RL_CREDIT * AIN__RL_BATCH;
    st->queue = ain_calloc(st->q_cap, sizeof *st->queue);
    for (int i = 0; i < AIN__RL_LANES; i++) {
        char name[32];
        snprintf(name, sizeof name, "ratelimit-%d", i);
        st->lanes[i] = ain_redis_new(st->actor, name, s_on_state, st);
    }
    st->redis = st->lanes[0];
    st->sub = ain_redis_new(st->actor, "ratelimit-resets", s_on_sub_state, st);
    ain_redis_set_urgent(st->sub); /* a reset before the checks that follow it */
}

void ain__rl_redis_stop(ain__rl_t *st)
{
    /* Pending calls fail now: their decisions are answered degraded. */
    st->stopping = true;
    ain_redis_destroy(&st->sub);
    st->redis = NULL;
    for (int i = 0; i < AIN__RL_LANES; i++)
        ain_redis_destroy(&st->lanes[i]);
    s_drain_degraded(st);
    free(st->queue);
    st->queue = NULL;
}
