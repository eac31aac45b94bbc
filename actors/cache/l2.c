/* l2.c: the Redis layer (L2) and the invalidation channel.
 *
 * Keys of user U (the {U} hash tag keeps one user's keys in one slot):
 *   ain:c:{U}:<key>   a value: the compact encoding below, expiring after CACHE_TTL
 *   ain:ci:{U}        the set of U's keys that may exist, for invalidation by prefix
 *   ain:cg:{U}        U's generation: incremented by every invalidation of U
 *   ain:cg            everyone's generation: incremented by a clear of everything
 *
 * A load reads its value and both generations in one MGET, and writes the
 * value it computed from L3 only if neither generation moved since (a Lua
 * script, atomic in Redis): a load that read L3 before a write committed
 * can never put its stale value back after the write's invalidation.
 *
 * An invalidation is one Lua script: increment U's generation, delete U's
 * keys with the given prefixes, and publish {origin, user, prefixes} on
 * ain:cache:inval, so that every cache actor's L1 drops the same keys.
 * Each actor subscribes on a second connection; if that subscription is
 * lost, its L1 is flushed and runs with a short TTL until it is back.
 * Invalidations that cannot reach Redis are remembered per user (bounded)
 * and replayed first thing after reconnecting.
 *
 * Value encoding (21 bytes of header, then the reply data as is):
 *   u8 version (1) | u64 etag | u32 delta_ms | i64 expires_wall_ms | data
 * all big-endian. Anything else read back is a miss (and counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/internal.h"
#include "proto/body.h"
#include "proto/mpread.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_VERSION        1
#define S_HEADER         21
#define S_GEN_TTL_S      "86400" /* a generation outlives every load by far */
#define S_INDEX_MAX      "1024"  /* keys per user in L2, beyond which puts are refused */
#define S_SCAN_COUNT     "1000"
#define S_ALL_GENERATION "ain:cg"

/* KEYS: value, index, user generation, everyone's generation.
 * ARGV: expected user generation, expected everyone's, value, ttl ms,
 * the key (index member), value key prefix. Returns 1 stored, 0 stale,
 * 2 the user's index is full. */
static const char s_put_lua[] =
    "local u = redis.call('GET', KEYS[3]) or '0'\n"
    "local g = redis.call('GET', KEYS[4]) or '0'\n"
    "if u ~= ARGV[1] or g ~= ARGV[2] then return 0 end\n"
    "if redis.call('SCARD', KEYS[2]) >= " S_INDEX_MAX " then\n"
    "  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "    if redis.call('EXISTS', ARGV[6] .. m) == 0 then\n"
    "      redis.call('SREM', KEYS[2], m)\n"
    "    end\n"
    "  end\n"
    "  if redis.call('SCARD', KEYS[2]) >= " S_INDEX_MAX " then return 2 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])\n"
    "redis.call('SADD', KEYS[2], ARGV[5])\n"
    "if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "end\n"
    "return 1\n";

/* KEYS: index, user generation. ARGV: value key prefix, channel, message,
 * then the key prefixes to drop (none: every key of the user). Returns
 * how many keys it dropped. */
static const char s_invalidate_lua[] =
    "redis.call('INCR', KEYS[2])\n"
    "redis.call('EXPIRE', KEYS[2], " S_GEN_TTL_S ")\n"
    "local n = 0\n"
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local hit = #ARGV == 3\n"
    "  for i = 4, #ARGV do\n"
    "    if string.sub(m, 1, #ARGV[i]) == ARGV[i] then hit = true break end\n"
    "  end\n"
    "  if hit then\n"
    "    n = n + redis.call('DEL', ARGV[1] .. m)\n"
    "    redis.call('SREM', KEYS[1], m)\n"
    "  end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
    "return n\n";

/* ------------------------------------------------------------ helpers */

static void s_put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t s_get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static void s_key_names(uint64_t user, const char *key, char *value, char *index, char *gen,
                        char *prefix)
{
    unsigned long long u = (unsigned long long)user;
    if (value)
        snprintf(value, AIN_KEY_MAX + 40, "ain:c:{%llu}:%s", u, key);
    if (index)
        snprintf(index, 40, "ain:ci:{%llu}", u);
    if (gen)
        snprintf(gen, 40, "ain:cg:{%llu}", u);
    if (prefix)
        snprintf(prefix, 40, "ain:c:{%llu}:", u);
}

/* A generation as Redis answered it (nil = "0"), into out[24]. */
static bool s_generation(const redisReply *r, char *out)
{
    if (r->type == REDIS_REPLY_NIL) {
        strcpy(out, "0");
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= 24)
        return false;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return true;
}

bool ain__l2_up(const ain__state_t *st)
{
    return st->redis && ain_redis_connected(st->redis);
}

/* ------------------------------------------------------------ get */

static void s_on_get(ain_redis_t *redis, redisReply *r, void *arg)
{
    ain__load_t *load = arg;
    ain__state_t *st = load->state;
    (void)redis;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !s_generation(r->element[1], load->gen_user) ||
        !s_generation(r->element[2], load->gen_all)) {
        ain_metric_inc(st->m.l2_errors);
        load->gen_user[0] = load->gen_all[0] = '\0'; /* do not write L2 on this load's word */
        ain__lookup_l2_answer(st, load, NULL, 0, 0, 0, 0);
        return;
    }
    const redisReply *v = r->element[0];
    if (v->type != REDIS_REPLY_STRING) {
        ain__lookup_l2_answer(st, load, NULL, 0, 0, 0, 0);
        return;
    }
    const uint8_t *p = (const uint8_t *)v->str;
    size_t len = v->len;
    if (len <= S_HEADER || p[0] != S_VERSION ||
        !ain_mp_check(p + S_HEADER, len - S_HEADER, AIN_MP_MAX_DEPTH, AIN_MP_MAX_ITEMS)) {
        ain_metric_inc(st->m.l2_errors);
        ain_warn(st->log, "cache: unreadable L2 value for user %llu (%zu bytes); treated as a miss",
                 (unsigned long long)load->view.user, len);
        ain__lookup_l2_answer(st, load, NULL, 0, 0, 0, 0);
        return;
    }
    ain__lookup_l2_answer(st, load, p + S_HEADER, len - S_HEADER, s_get_be(p + 1, 8),
                          (int64_t)s_get_be(p + 9, 4), (int64_t)s_get_be(p + 13, 8));
}

void ain__l2_get(ain__state_t *st, ain__load_t *load)
{
    char value[AIN_KEY_MAX + 40], gen[40];
    s_key_names(load->view.user, load->view.key, value, NULL, gen, NULL);
    const char *argv[] = {"MGET", value, gen, S_ALL_GENERATION};
    if (ain_redis_command(st->redis, s_on_get, load, 4, argv, NULL) < 0)
        ain__lookup_l2_answer(st, load, NULL, 0, 0, 0, 0);
}

/* ------------------------------------------------------------ put */

static void s_on_put(ain_redis_t *redis, redisReply *r, void *arg)
{
    ain__state_t *st = arg;
    (void)redis;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        ain_metric_inc(st->m.l2_errors);
        if (r && r->type == REDIS_REPLY_ERROR)
            ain_warn(st->log, "cache: L2 put: %s", r->str);
    } else if (r->integer == 0) {
        ain_metric_inc(st->m.l2_stale_skipped);
    } else if (r->integer == 2) {
        ain_metric_inc(st->m.l2_index_full);
    }
}

void ain__l2_put(ain__state_t *st, const ain__load_t *load, const uint8_t *data, size_t len,
                 uint64_t etag, int64_t delta_ms)
{
    if (!load->gen_user[0] || !ain__l2_up(st))
        return; /* L2 was not read when the load began: its generation is unknown */
    const ain__view_t *view = &load->view;
    char value[AIN_KEY_MAX + 40], index[40], gen[40], prefix[40], ttl[24];
    s_key_names(view->user, view->key, value, index, gen, prefix);
    snprintf(ttl, sizeof ttl, "%lld", (long long)st->l2_ttl_ms);
    uint8_t *enc = ain_malloc(S_HEADER + len);
    enc[0] = S_VERSION;
    s_put_be(enc + 1, etag, 8);
    s_put_be(enc + 9,
             (uint64_t)(delta_ms < 0            ? 0
                        : delta_ms > UINT32_MAX ? UINT32_MAX
                                                : delta_ms),
             4);
    s_put_be(enc + 13, (uint64_t)(ain_clock_wall_ms() + st->l2_ttl_ms), 8);
    memcpy(enc + S_HEADER, data, len);
    const char *argv[] = {"EVAL",
                          s_put_lua,
                          "4",
                          value,
                          index,
                          gen,
                          S_ALL_GENERATION,
                          load->gen_user,
                          load->gen_all,
                          (const char *)enc,
                          ttl,
                          view->key,
                          prefix};
    size_t argvlen[] = {4,
                        sizeof s_put_lua - 1,
                        1,
                        strlen(value),
                        strlen(index),
                        strlen(gen),
                        strlen(S_ALL_GENERATION),
                        strlen(load->gen_user),
                        strlen(load->gen_all),
                        S_HEADER + len,
                        strlen(ttl),
                        view->key_len,
                        strlen(prefix)};
    if (ain_redis_command(st->redis, s_on_put, st, 13, argv, argvlen) < 0)
        ain_metric_inc(st->m.l2_errors);
    free(enc);
}

/* ------------------------------------------------------------ invalidation */

typedef struct {
    ain__state_t *st;
    uint64_t user;
    ain__l2_done_fn *done;
    void *arg;
} s_pending_t;

static void s_mark_dirty(ain__state_t *st, uint64_t user)
{
    char k[24];
    if (st->dirty_all)
        return;
    if (zhashx_size(st->dirty) >= AIN__DIRTY_MAX) {
        st->dirty_all = true; /* too many to remember: clear everything on reconnect */
        zhashx_purge(st->dirty);
    } else {
        snprintf(k, sizeof k, "%llu", (unsigned long long)user);
        zhashx_update(st->dirty, k, (void *)1);
    }
    ain_metric_set(st->m.dirty_users, st->dirty_all ? -1 : (int64_t)zhashx_size(st->dirty));
}

/* The barrier after an invalidation answered: Redis wrote the script's
 * reply and the channel's copies in the same pass of its event loop, the
 * reply first. A PING sent after reading that reply is answered in a
 * later pass, so once it is, every subscriber's copy has left Redis: a
 * writer told "done" cannot reach another cache actor before its copy. */
static void s_on_barrier(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_pending_t *p = arg;
    (void)redis;
    (void)r; /* the script ran; a lost PING only loses the ordering nicety */
    if (p->done)
        p->done(p->st, true, p->arg);
    free(p);
}

static void s_on_invalidated(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_pending_t *p = arg;
    ain__state_t *st = p->st;
    bool ok = r && r->type == REDIS_REPLY_INTEGER;
    if (ok) {
        ain_metric_inc(st->m.inval_sent);
        ain_metric_add(st->m.inval_keys, r->integer);
        const char *argv[] = {"PING"};
        if (ain_redis_command(redis, s_on_barrier, p, 1, argv, NULL) == 0)
            return;
    } else {
        ain_metric_inc(st->m.l2_errors);
        if (r && r->type == REDIS_REPLY_ERROR)
            ain_warn(st->log, "cache: L2 invalidation: %s", r->str);
        s_mark_dirty(st, p->user); /* replayed once Redis answers again */
    }
    if (p->done)
        p->done(st, ok, p->arg);
    free(p);
}

/* The channel message: {origin, user, prefixes: [...]} (no prefixes:
 * every key of the user), or {origin, everything: true}. */
static void s_pack_message(ain__state_t *st, msgpack_sbuffer *buf, uint64_t user, char **prefixes,
                           size_t n, bool everything)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, everything ? 3 : 4);
    ain_mp_pack_kv_u64(&pk, "origin", st->instance);
    ain_mp_pack_kv_i64(&pk, "sent_ms", ain_clock_wall_ms());
    if (everything) {
        ain_mp_pack_str(&pk, "everything");
        msgpack_pack_true(&pk);
        return;
    }
    ain_mp_pack_kv_u64(&pk, "user", user);
    ain_mp_pack_str(&pk, "prefixes");
    msgpack_pack_array(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        ain_mp_pack_str(&pk, prefixes[i]);
}

void ain__l2_invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n,
                        ain__l2_done_fn *done, void *arg)
{
    if (!ain__l2_up(st)) {
        s_mark_dirty(st, user);
        if (done)
            done(st, false, arg);
        return;
    }
    char index[40], gen[40], prefix[40];
    s_key_names(user, "", NULL, index, gen, prefix);
    s_pack_message(st, &st->scratch, user, prefixes, n, false);
    size_t argc = 8 + n;
    const char **argv = ain_malloc(argc * sizeof *argv);
    size_t *argvlen = ain_malloc(argc * sizeof *argvlen);
    const char *fixed[] = {"EVAL", s_invalidate_lua, "2", index, gen, prefix, AIN__CHANNEL};
    for (size_t i = 0; i < 7; i++) {
        argv[i] = fixed[i];
        argvlen[i] = strlen(fixed[i]);
    }
    argv[7] = st->scratch.data;
    argvlen[7] = st->scratch.size;
    for (size_t i = 0; i < n; i++) {
        argv[8 + i] = prefixes[i];
        argvlen[8 + i] = strlen(prefixes[i]);
    }
    s_pending_t *p = AIN_NEW(s_pending_t);
    *p = (s_pending_t){st, user, done, arg};
    if (ain_redis_command(st->redis, s_on_invalidated, p, (int)argc, argv, argvlen) < 0) {
        free(p);
        s_mark_dirty(st, user);
        if (done)
            done(st, false, arg);
    }
    free(argv);
    free(argvlen);
}

/* ------------------------------------------------------------ clear all */

/* Clearing everything: increment everyone's generation and tell every L1
 * (one script), then delete value and index keys in SCAN steps, so Redis
 * never blocks on one huge command. */
typedef struct {
    ain__state_t *st;
    char cursor[24];
    int pattern; /* 0: values, 1: indexes */
    bool ok;
    ain__l2_done_fn *done;
    void *arg;
} s_clear_t;

static const char *const s_patterns[] = {"ain:c:{*}:*", "ain:ci:{*}"};

static void s_clear_step(s_clear_t *c);

static void s_clear_finish(s_clear_t *c, bool ok)
{
    if (!ok)
        c->st->dirty_all = true; /* finish it after reconnecting */
    if (c->done)
        c->done(c->st, ok, c->arg);
    free(c);
}

static void s_on_deleted(ain_redis_t *redis, redisReply *r, void *arg)
{
    (void)redis;
    (void)r; /* a failure shows at the next SCAN */
    (void)arg;
}

static void s_on_scan(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_clear_t *c = arg;
    (void)redis;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof c->cursor ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        ain_metric_inc(c->st->m.l2_errors);
        s_clear_finish(c, false);
        return;
    }
    const redisReply *keys = r->element[1];
    if (keys->elements > 0) {
        size_t argc = 1 + keys->elements;
        const char **argv = ain_malloc(argc * sizeof *argv);
        size_t *argvlen = ain_malloc(argc * sizeof *argvlen);
        argv[0] = "UNLINK";
        argvlen[0] = 6;
        for (size_t i = 0; i < keys->elements; i++) {
            bool str = keys->element[i]->type == REDIS_REPLY_STRING;
            argv[1 + i] = str ? keys->element[i]->str : "";
            argvlen[1 + i] = str ? keys->element[i]->len : 0;
        }
        ain_redis_command(c->st->redis, s_on_deleted, NULL, (int)argc, argv, argvlen);
        free(argv);
        free(argvlen);
    }
    memcpy(c->cursor, r->element[0]->str, r->element[0]->len);
    c->cursor[r->element[0]->len] = '\0';
    if (strcmp(c->cursor, "0") == 0 && ++c->pattern == 2) {
        s_clear_finish(c, true);
        return;
    }
    s_clear_step(c);
}

static void s_clear_step(s_clear_t *c)
{
    const char *argv[] = {"SCAN",  c->cursor,   "MATCH", s_patterns[c->pattern],
                          "COUNT", S_SCAN_COUNT};
    if (ain_redis_command(c->st->redis, s_on_scan, c, 6, argv, NULL) < 0)
        s_clear_finish(c, false);
}

static void s_on_everything(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_clear_t *c = arg;
    (void)redis;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        ain_metric_inc(c->st->m.l2_errors);
        s_clear_finish(c, false);
        return;
    }
    ain_metric_inc(c->st->m.inval_sent);
    strcpy(c->cursor, "0");
    s_clear_step(c);
}

void ain__l2_clear_all(ain__state_t *st, ain__l2_done_fn *done, void *arg)
{
    s_clear_t *c = AIN_NEW(s_clear_t);
    *c = (s_clear_t){.st = st, .done = done, .arg = arg};
    if (!ain__l2_up(st)) {
        s_clear_finish(c, false);
        return;
    }
    s_pack_message(st, &st->scratch, 0, NULL, 0, true);
    const char *argv[] = {
        "EVAL",       "redis.call('INCR', KEYS[1]) redis.call('PUBLISH', ARGV[1], ARGV[2])",
        "1",          S_ALL_GENERATION,
        AIN__CHANNEL, st->scratch.data};
    size_t argvlen[6];
    for (int i = 0; i < 5; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[5] = st->scratch.size;
    if (ain_redis_command(st->redis, s_on_everything, c, 6, argv, argvlen) < 0)
        s_clear_finish(c, false);
}

/* ------------------------------------------------------------ the channel */

/* A message from the channel: drop what it names from our L1. Our own
 * are skipped: the writer dropped its L1 entries before sending. */
static void s_on_channel_message(ain__state_t *st, const char *data, size_t len)
{
    ain_body_t body;
    uint64_t user = 0, origin = 0;
    bool everything = false;
    const msgpack_object *list;
    if (ain_body_parse(&body, data, len) != AIN_STATUS_OK ||
        body.root->type != MSGPACK_OBJECT_MAP) {
        ain_body_release(&body);
        goto bad;
    }
    int64_t sent_ms = 0;
    if (ain_mp_get_i64(body.root, "sent_ms", &sent_ms) == 1) {
        int64_t lag = ain_clock_wall_ms() - sent_ms; /* across hosts: as good as their clocks */
        if (lag > st->inval_lag_max)
            st->inval_lag_max = lag;
        if (lag >= AIN__LATE_MS)
            ain_metric_inc(st->m.inval_late);
    }
    if (ain_mp_get_u64(body.root, "origin", &origin) == 1 && origin == st->instance) {
        ain_body_release(&body);
        ain_metric_inc(st->m.inval_received);
        return;
    }
    ain_mp_get_bool(body.root, "everything", &everything);
    if (everything) {
        ain_body_release(&body);
        ain_metric_inc(st->m.inval_received);
        ain__l1_flush(st, false);
        return;
    }
    list = ain_mp_get(body.root, "prefixes");
    if (ain_mp_get_u64(body.root, "user", &user) != 1 || user == 0 || !list ||
        list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size > 64) {
        ain_body_release(&body);
        goto bad;
    }
    char *prefixes[64];
    size_t n = 0, size = list->via.array.size;
    for (uint32_t i = 0; i < size; i++) {
        const msgpack_object *o = &list->via.array.ptr[i];
        if (o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 && o->via.str.size < AIN_KEY_MAX)
            prefixes[n++] = ain_strndup(o->via.str.ptr, o->via.str.size);
    }
    ain_body_release(&body);
    ain_metric_inc(st->m.inval_received);
    /* A prefix we cannot read: drop all of the user's entries instead. */
    ain__l1_invalidate(st, user, prefixes, n == size ? n : 0);
    for (size_t i = 0; i < n; i++)
        free(prefixes[i]);
    return;
bad:
    /* Not ours (someone else publishes here) or damaged: which user it
     * meant is unknown, so drop everything rather than risk staleness. */
    ain_metric_inc(st->m.inval_bad);
    ain_warn(st->log, "cache: unreadable message on %s (%zu bytes); L1 flushed", AIN__CHANNEL, len);
    ain__l1_flush(st, false);
}

static void s_on_channel(ain_redis_t *redis, redisReply *r, void *arg)
{
    ain__state_t *st = arg;
    (void)redis;
    if (!r) { /* the subscription is gone with its connection */
        if (st->channel_up)
            ain_warn(st->log,
                     "cache: invalidation channel lost; L1 flushed, TTL %lld ms until back",
                     (long long)st->l1_degraded_ttl_ms);
        st->channel_up = false;
        ain__l1_flush(st, true);
        ain_metric_set(st->m.sub_up, 0);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        /* From here on nothing published is missed; what L1 holds from
         * the time without the channel may be stale: drop it. */
        st->channel_up = true;
        ain__l1_flush(st, false);
        ain_metric_set(st->m.sub_up, 1);
        ain_info(st->log, "cache: invalidation channel up; L1 TTL %lld ms",
                 (long long)st->l1_ttl_ms);
    } else if (strcmp(kind, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
        s_on_channel_message(st, r->element[2]->str, r->element[2]->len);
    }
}

static void s_on_sub_state(ain_redis_t *redis, bool connected, void *arg)
{
    ain__state_t *st = arg;
    if (connected && ain_redis_subscribe(redis, AIN__CHANNEL, s_on_channel, st) < 0)
        ain_warn(st->log, "cache: cannot subscribe to %s", AIN__CHANNEL);
}

/* Replays what was written while Redis was away, before anything else is
 * sent on the new connection (Redis answers a connection in order). */
static void s_replay_dirty(ain__state_t *st)
{
    if (st->dirty_all) {
        st->dirty_all = false;
        ain_info(st->log, "cache: clearing L2 after writes made while Redis was away");
        ain__l2_clear_all(st, NULL, NULL);
    } else if (zhashx_size(st->dirty) > 0) {
        zlistx_t *users = zhashx_keys(st->dirty);
        zhashx_purge(st->dirty);
        ain_info(st->log, "cache: invalidating %zu users written while Redis was away",
                 zlistx_size(users));
        for (const char *u = zlistx_first(users); u; u = zlistx_next(users))
            ain__l2_invalidate(st, strtoull(u, NULL, 10), NULL, 0, NULL, NULL);
        zlistx_destroy(&users);
    }
    ain_metric_set(st->m.dirty_users, st->dirty_all ? -1 : (int64_t)zhashx_size(st->dirty));
}

static void s_on_redis_state(ain_redis_t *redis, bool connected, void *arg)
{
    ain__state_t *st = arg;
    (void)redis;
    ain_metric_set(st->m.redis_up, connected);
    if (connected)
        s_replay_dirty(st);
}

void ain__l2_start(ain__state_t *st)
{
    st->redis = ain_redis_new(st->actor, "cache", s_on_redis_state, st);
    st->sub = ain_redis_new(st->actor, "cache-channel", s_on_sub_state, st);
    ain_redis_set_urgent(st->sub); /* invalidations before the reads after them */
}

void ain__l2_stop(ain__state_t *st)
{
    ain_redis_destroy(&st->sub);
    ain_redis_destroy(&st->redis);
}
