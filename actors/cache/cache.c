/* cache.c: the cache actor (see cache.h): requests in, views out; the L1
 * invalidation bookkeeping; clearing; metrics.
 */
#include "actors/cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_TICK_MS    1000
#define S_WINDOW     10 /* ticks the rate gauges look back over */
#define S_PREFIX_MAX 8  /* prefixes one CACHE_CLEAR may name */

/* Counters at one tick, for rates over the last S_WINDOW ticks. */
typedef struct {
    int64_t lookups, l1, l2, l3;
} s_snap_t;

typedef struct {
    ain__state_t st;
    s_snap_t snaps[S_WINDOW];
    int snap_next;
    int tick;
} s_actor_t;

/* ------------------------------------------------------------ L1 bookkeeping */

/* Every invalidation of a user moves that user's epoch; a load that began
 * under an older epoch may hold a value from before the change and is
 * kept out of L1 (lookup.c). The table is bounded: when full it is
 * emptied and the global epoch moves instead, which has the same effect
 * for every user at once. */
static void s_bump_epoch(ain__state_t *st, uint64_t user)
{
    char k[24];
    snprintf(k, sizeof k, "%llu", (unsigned long long)user);
    uintptr_t e = (uintptr_t)zhashx_lookup(st->epochs, k);
    if (!e && zhashx_size(st->epochs) >= AIN__EPOCHS_MAX) {
        zhashx_purge(st->epochs);
        st->global_epoch++;
        return;
    }
    zhashx_update(st->epochs, k, (void *)(e + 1));
}

void ain__l1_invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n)
{
    s_bump_epoch(st, user);
    if (st->l1) {
        size_t dropped = ain_l1_invalidate(st->l1, user, (const char *const *)prefixes, n);
        ain_metric_add(st->m.l1_invalidated, (int64_t)dropped);
    }
}

static int64_t s_l1_ttl_now(const ain__state_t *st)
{
    if (!st->l1)
        return 0;
    if (st->channel_up)
        return st->l1_ttl_ms;
    return st->l1_degraded_ttl_ms < st->l1_ttl_ms ? st->l1_degraded_ttl_ms : st->l1_ttl_ms;
}

void ain__l1_flush(ain__state_t *st, bool suspend)
{
    (void)suspend; /* the TTL follows channel_up, which the caller set */
    st->global_epoch++;
    if (st->l1)
        ain_l1_clear(st->l1);
    st->l1_ttl_now_ms = s_l1_ttl_now(st);
    ain_metric_inc(st->m.l1_flushes);
}

/* ------------------------------------------------------------ reads */

static int s_read(ain_actor_t *actor, ain_request_t *req)
{
    ain__state_t *st = ain_actor_state(actor);
    ain__view_t view;
    const char *why = NULL;
    if (ain__view_parse(ain_request_envelope(req), &view, &why) != AIN_STATUS_OK) {
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, why);
        return 0;
    }
    ain__lookup(st, req, &view);
    return 0;
}

static int s_apply(ain_actor_t *actor, ain_request_t *req)
{
    return ain__apply(ain_actor_state(actor), req);
}

/* ------------------------------------------------------------ clearing */

typedef struct {
    ain_request_t *req;
    size_t l1_dropped;
} s_clear_t;

static void s_cleared(ain__state_t *st, bool ok, void *arg)
{
    s_clear_t *c = arg;
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 3);
    ain_mp_pack_str(pk, "cleared");
    msgpack_pack_true(pk);
    ain_mp_pack_kv_u64(pk, "l1_dropped", c->l1_dropped);
    ain_mp_pack_str(pk, "l2");
    /* Not reaching Redis is no failure: the clear is replayed when it is
     * back, and until then no L1 anywhere trusts old entries. */
    ain_mp_pack_str(pk, ok ? "cleared" : "pending: Redis unreachable, replayed on reconnect");
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
    free(c);
}

/* A prefix an operator may name: the start of a key (keys.h), matched
 * literally (never as a pattern) and only within the user's own keys. */
static bool s_prefix_ok(const char *p, size_t n)
{
    if (n == 0 || n >= AIN_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] > '~')
            return false;
    return true;
}

/* CACHE_CLEAR {user?, prefixes?: [...]}: operators only. The edge stamps
 * every user's request with that user; this refuses any request that
 * carries one, so no user can clear anything (not even their own). */
static int s_clear(ain_actor_t *actor, ain_request_t *req)
{
    ain__state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t user = 0;
    char *prefixes[S_PREFIX_MAX];
    size_t n = 0;
    const char *why = NULL;
    if (env->user != 0) {
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_DENIED, "clearing the cache is for operators only");
        return 0;
    }
    if (ain_body_parse(&body, env->body, env->body_len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP || ain_mp_get_u64(body.root, "user", &user) < 0) {
        why = "body must be {user?: id, prefixes?: [key prefix]}";
    } else {
        const msgpack_object *list = ain_mp_get(body.root, "prefixes");
        if (list &&
            (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size > S_PREFIX_MAX || !user))
            why = "prefixes: at most 8 key prefixes, and only with a user";
        for (uint32_t i = 0; !why && list && i < list->via.array.size; i++) {
            const msgpack_object *o = &list->via.array.ptr[i];
            if (o->type != MSGPACK_OBJECT_STR || !s_prefix_ok(o->via.str.ptr, o->via.str.size))
                why = "a prefix is printable text without spaces, shorter than a key";
            else
                prefixes[n++] = ain_strndup(o->via.str.ptr, o->via.str.size);
        }
    }
    ain_body_release(&body);
    if (why) {
        for (size_t i = 0; i < n; i++)
            free(prefixes[i]);
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, why);
        return 0;
    }
    s_clear_t *c = AIN_NEW(s_clear_t);
    c->req = req;
    ain_metric_inc(st->m.clears);
    if (user) {
        ain_l1_stats_t before, after;
        if (st->l1)
            ain_l1_stats(st->l1, &before);
        ain__l1_invalidate(st, user, prefixes, n);
        if (st->l1) {
            ain_l1_stats(st->l1, &after);
            c->l1_dropped = before.entries - after.entries;
        }
        ain_info(st->log, "cache: clearing user %llu (%zu prefixes)", (unsigned long long)user, n);
        ain__l2_invalidate(st, user, prefixes, n, s_cleared, c);
    } else {
        if (st->l1) {
            ain_l1_stats_t before;
            ain_l1_stats(st->l1, &before);
            c->l1_dropped = before.entries;
        }
        ain__l1_flush(st, false);
        ain_info(st->log, "cache: clearing everything");
        ain__l2_clear_all(st, s_cleared, c);
    }
    for (size_t i = 0; i < n; i++)
        free(prefixes[i]);
    return 0;
}

/* ------------------------------------------------------------ metrics */

static int64_t s_permille(int64_t part, int64_t whole)
{
    return whole > 0 ? part * 1000 / whole : 0;
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    s_actor_t *a = arg;
    ain__state_t *st = &a->st;
    (void)actor;
    if (st->l1) {
        ain_l1_stats_t s;
        ain_l1_stats(st->l1, &s);
        ain_metric_set(st->m.l1_entries, (int64_t)s.entries);
        ain_metric_set(st->m.l1_bytes, (int64_t)s.bytes);
        ain_metric_set(st->m.l1_evictions, (int64_t)s.evictions);
        ain_metric_set(st->m.l1_rejected, (int64_t)s.rejected);
        ain_metric_set(st->m.l1_expired, (int64_t)s.expired);
    }
    ain_metric_set(st->m.pg_ready, st->pg ? ain_pg_ready(st->pg) : 0);
    ain_metric_set(st->m.loads, (int64_t)zhashx_size(st->loads));
    /* Rates over the last S_WINDOW seconds: of all lookups, the share L1
     * answered; of those reaching L2, the share it answered; of all, the
     * share answered without the database (the hit rate). */
    s_snap_t now = {ain_metric_get(st->m.lookups), ain_metric_get(st->m.l1_hits),
                    ain_metric_get(st->m.l2_hits), ain_metric_get(st->m.l3_hits)};
    s_snap_t old = a->snaps[a->snap_next];
    a->snaps[a->snap_next] = now;
    a->snap_next = (a->snap_next + 1) % S_WINDOW;
    if (++a->tick < S_WINDOW)
        old = a->snaps[0];
    if (a->tick % S_WINDOW == 0 || st->inval_lag_max > ain_metric_get(st->m.inval_lag_max)) {
        ain_metric_set(st->m.inval_lag_max, st->inval_lag_max);
        st->inval_lag_max = 0;
    }
    int64_t lookups = now.lookups - old.lookups, l1 = now.l1 - old.l1, l2 = now.l2 - old.l2;
    ain_metric_set(st->m.l1_rate, s_permille(l1, lookups));
    ain_metric_set(st->m.l2_rate, s_permille(l2, lookups - l1));
    ain_metric_set(st->m.hit_rate, s_permille(l1 + l2, lookups));
}

static void s_metrics_init(ain__metrics_t *m, ain_metrics_t *reg)
{
#define C(field, name) m->field = ain_metrics_counter(reg, "cache." name)
#define G(field, name) m->field = ain_metrics_gauge(reg, "cache." name)
    C(lookups, "lookups");
    C(l1_hits, "l1.hits");
    C(l2_hits, "l2.hits");
    C(l3_hits, "l3.hits");
    C(misses, "misses");
    C(failed, "failed");
    C(not_modified, "not_modified");
    C(invalid, "invalid");
    C(coalesced, "coalesced");
    C(refreshes, "early_refreshes");
    C(refresh_skipped, "early_refreshes_skipped");
    G(loads, "loads_in_flight");
    G(l1_entries, "l1.entries");
    G(l1_bytes, "l1.bytes");
    G(l1_evictions, "l1.evictions");
    G(l1_rejected, "l1.rejected");
    G(l1_expired, "l1.expired");
    C(l1_invalidated, "l1.invalidated");
    C(l1_flushes, "l1.flushes");
    G(l1_rate, "l1.hit_rate_permille");
    G(l2_rate, "l2.hit_rate_permille");
    G(hit_rate, "hit_rate_permille");
    C(inval_sent, "invalidations.sent");
    C(inval_received, "invalidations.received");
    C(inval_keys, "invalidations.l2_keys");
    C(inval_bad, "invalidations.unreadable");
    G(inval_lag_max, "invalidations.lag_ms_max");
    C(inval_late, "invalidations.late");
    C(l2_errors, "l2.errors");
    C(l2_stale_skipped, "l2.stale_puts_skipped");
    C(l2_index_full, "l2.index_full");
    G(redis_up, "redis.connected");
    G(sub_up, "redis.channel_up");
    G(dirty_users, "redis.dirty_users");
    G(pg_ready, "pg.ready_connections");
    C(l3_queries, "l3.queries");
    C(l3_errors, "l3.errors");
    C(writes, "writes");
    C(write_errors, "write_errors");
    C(clears, "clears");
    C(outbox_relayed, "outbox.relayed");
    C(outbox_errors, "outbox.errors");
    C(events_published, "events.published");
    C(events_failed, "events.failed");
    C(writes_replayed, "writes_replayed");
    C(keys_pruned, "write_keys.pruned");
#undef C
#undef G
}

/* ------------------------------------------------------------ start, stop */

static int s_start(ain_actor_t *actor)
{
    s_actor_t *a = AIN_NEW(s_actor_t);
    ain__state_t *st = &a->st;
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    st->actor = actor;
    st->log = ain_actor_log(actor);
    s_metrics_init(&st->m, ain_actor_metrics(actor));
    st->l1_ttl_ms = ain_config_int(cfg, AIN_CFG_AINBOX_CACHE_L1_TTL_MS);
    st->l1_degraded_ttl_ms = ain_config_int(cfg, AIN_CFG_AINBOX_CACHE_L1_DEGRADED_TTL_MS);
    st->l2_ttl_ms = ain_config_ms(cfg, AIN_CFG_CACHE_TTL);
    if (st->l1_ttl_ms > 0)
        st->l1 =
            ain_l1_new((size_t)ain_config_int(cfg, AIN_CFG_AINBOX_CACHE_L1_BYTES), AIN_L1_TINYLFU);
    st->l1_ttl_now_ms = s_l1_ttl_now(st);
    st->loads = zhashx_new();
    st->epochs = zhashx_new();
    st->dirty = zhashx_new();
    st->instance = ain_proc_instance(ain_actor_proc(actor));
    st->rng = ain_random_u64() | 1;
    msgpack_sbuffer_init(&st->scratch);
    ain_actor_set_state(actor, st);
    ain__l2_start(st);
    const char *db = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    if (db) {
        int pool = (int)ain_config_int(cfg, AIN_CFG_AINBOX_PG_POOL);
        st->pg = ain_pg_new(actor, db, pool);
        st->pg_write = ain_pg_new(actor, db, pool / 2 > 0 ? pool / 2 : 1);
        ain_pg_finish_running(st->pg_write); /* a committed write is always announced */
        st->outbox_age_ms = ain_config_int(cfg, AIN_CFG_AINBOX_CACHE_OUTBOX_AGE_MS);
        ain__outbox_start(st);
    } else {
        ain_warn(st->log, "cache: DATABASE_URL is not set: every L1/L2 miss fails");
        ain_actor_set_disabled(actor, "DATABASE_URL is not set: no mail store");
    }
    ain_actor_timer(actor, S_TICK_MS, true, s_tick, a);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    ain__state_t *st = ain_actor_state(actor);
    /* Redis first: loads waiting on it fall through to L3, which then
     * fails them as the pool closes. Nobody waits on them any more. */
    ain__l2_stop(st);
    ain__outbox_stop(st);
    ain_pg_destroy(&st->pg);
    ain_pg_destroy(&st->pg_write);
    ain_l1_destroy(&st->l1);
    zhashx_destroy(&st->loads);
    zhashx_destroy(&st->epochs);
    zhashx_destroy(&st->dirty);
    msgpack_sbuffer_destroy(&st->scratch);
    free((s_actor_t *)st); /* st is the first member */
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_MAIL_LIST, s_read},
    {AIN_MSG_MAIL_THREAD, s_read},
    {AIN_MSG_MAIL_MESSAGE, s_read},
    {AIN_MSG_MAIL_COUNTS, s_read},
    {AIN_MSG_MAIL_APPLY, s_apply},
    {AIN_MSG_CACHE_CLEAR, s_clear},
    {0, NULL},
};

const ain_actor_def_t ain_cache_actor = {
    .service = "cache",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Requests wait on L2 and L3 without holding the thread: a miss waiting
     * for the database must not keep hits queued in the broker. */
    .credit = 1024,
};
