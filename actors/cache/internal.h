/* internal.h: what the files of actors/cache share, and nothing outside.
 *
 *   cache.c    the actor: requests in, views out, metrics, clearing
 *   view.c     parsing a request into a view and its cache key
 *   lookup.c   L1, then one coalesced load per key: L2, then L3
 *   l2.c       Redis: values, generations, invalidation and its channel
 *   loaders.c  L3: the queries of each view, packed as reply data
 *   apply.c    MAIL_APPLY: the write path and the invalidation it causes
 *   l1.c, sketch.c, keys.c, queries.c: pure logic and SQL (own headers)
 */
#ifndef AIN_ACTORS_CACHE_INTERNAL_H
#define AIN_ACTORS_CACHE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <czmq.h>

#include "actors/cache/keys.h"
#include "actors/cache/l1.h"
#include "proto/channels.h"
#include "runtime/actor.h"
#include "runtime/call.h"
#include "runtime/pg.h"
#include "runtime/redis.h"

/* ------------------------------------------------------------ views */

typedef enum { AIN__VIEW_LIST, AIN__VIEW_THREAD, AIN__VIEW_MESSAGE, AIN__VIEW_COUNTS } ain__kind_t;

#define AIN__LIMIT_MAX     100
#define AIN__LIMIT_DEFAULT 50

/* One view of one user's mail, as a request names it. */
typedef struct {
    ain__kind_t kind;
    uint64_t user, account; /* account 0: every account */
    char label[AIN_KEY_PART_MAX + 1], role[16];
    bool archive, bodies;
    char id[AIN_KEY_PART_MAX + 1]; /* thread or message provider id */
    char cursor[64];               /* "" = first page; else "<ms>.<thread id>" */
    int limit;
    char etag[24]; /* If-None-Match, "" = none */
    char key[AIN_KEY_MAX];
    size_t key_len;
} ain__view_t;

/* Reads a request's envelope and body into `view`. Returns AIN_STATUS_OK,
 * or AIN_STATUS_INVALID with a reason in *why. */
int ain__view_parse(const ain_envelope_t *env, ain__view_t *view, const char **why);

/* ------------------------------------------------------------ loads */

typedef struct ain__state ain__state_t;

/* A load in progress for one (user, key): the requests waiting for it, and
 * what the L3 loader needs between its queries. */
typedef struct ain__load {
    ain__state_t *state;
    ain__view_t view;
    char id[AIN_KEY_MAX + 24]; /* "<user>/<key>": the coalescing table key */
    ain_request_t **waiters;
    size_t nwaiters, cap;
    int64_t started_ms;
    uint64_t user_epoch, global_epoch; /* L1 invalidations seen when it began */
    /* The L2 generations (the user's, everyone's) when it began, read
     * with the value; "" when L2 was not asked: then L2 is not written. */
    char gen_user[24], gen_all[24];
    bool refresh;  /* an early refresh nobody waits for */
    bool detached; /* out of the loads table: an invalidation overtook it */
    /* loaders.c scratch */
    msgpack_sbuffer out;
    char thread_id[24], message_id[24];
    PGresult *held; /* a result kept across queries */
} ain__load_t;

/* How a load ended, for the waiters' replies and the metrics. */
typedef enum { AIN__FROM_L2, AIN__FROM_L3, AIN__NOT_FOUND, AIN__FAILED } ain__source_t;

/* lookup.c */
void ain__lookup(ain__state_t *st, ain_request_t *req, const ain__view_t *view);
/* A load is done: answer its waiters and keep the value in L1 and L2.
 * `data` is the reply data (msgpack), `delta_ms` how long computing it
 * took. Frees the load. */
void ain__load_done(ain__state_t *st, ain__load_t *load, ain__source_t source, const uint8_t *data,
                    size_t len, uint64_t etag, int64_t delta_ms, const char *why);
uint64_t ain__etag_of(const uint8_t *data, size_t len);
/* L2's answer to ain__l2_get: `data` NULL on a miss (or an L2 failure). */
void ain__lookup_l2_answer(ain__state_t *st, ain__load_t *load, const uint8_t *data, size_t len,
                           uint64_t etag, int64_t delta_ms, int64_t expires_wall_ms);

/* loaders.c: runs the view's queries; ends with ain__load_done. */
void ain__load_l3(ain__state_t *st, ain__load_t *load);

/* l2.c */
void ain__l2_start(ain__state_t *st);
void ain__l2_stop(ain__state_t *st);
bool ain__l2_up(const ain__state_t *st);
/* Fetches (user, key) and the user's generation; calls back into lookup.c. */
void ain__l2_get(ain__state_t *st, ain__load_t *load);
/* Stores a load's value unless an invalidation of its user (or of
 * everything) happened since the load read L2. */
void ain__l2_put(ain__state_t *st, const ain__load_t *load, const uint8_t *data, size_t len,
                 uint64_t etag, int64_t delta_ms);
/* Invalidates a user's keys with these prefixes (all of the user's when
 * none) in L2 and, through the channel, in every L1; then calls done(arg,
 * ok). Local L1 is the caller's job. */
typedef void(ain__l2_done_fn)(ain__state_t *st, bool ok, void *arg);
void ain__l2_invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n,
                        ain__l2_done_fn *done, void *arg);
/* Drops every cache key of every user in L2 and tells every L1. */
void ain__l2_clear_all(ain__state_t *st, ain__l2_done_fn *done, void *arg);

/* apply.c */
int ain__apply(ain__state_t *st, ain_request_t *req);
/* Invalidates `n` key prefixes of `user` (all the user's keys when n is
 * 0 or above the per-write bound) in this L1, L2 and every other L1; then
 * done(arg, ok). Takes `prefixes` and the strings (frees them). */
void ain__invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n,
                     ain__l2_done_fn *done, void *arg);

/* outbox.c: the durable side of a write's announcement (see apply.c). */
void ain__outbox_start(ain__state_t *st);
/* Frees the announcements still waiting (the actor stops). */
void ain__outbox_stop(ain__state_t *st);
/* Deletes outbox row `id` (decimal) now that it was announced. */
void ain__outbox_done(ain__state_t *st, const char *id);
/* Announces a committed write of `user`: invalidates `prefixes` (taken,
 * as ain__invalidate; `all` with n 0: every key of the user, else n 0:
 * nothing to invalidate), calls done(st, caches_ok, arg), then publishes
 * `events` (a JSON array of event objects, or NULL) through the events
 * service, each keyed "o<row>.<index>" so that a second announcement of
 * the row appends nothing twice, and deletes outbox row `outbox` ("" for
 * none) once both went through. Whatever fails leaves the row to the
 * relay. `relay`: counted in st->relaying until it ends. */
void ain__announce(ain__state_t *st, uint64_t user, const char *outbox, char **prefixes, size_t n,
                   bool all, const char *events, bool relay, ain__l2_done_fn *done, void *arg);

/* cache.c: L1 invalidation with the epoch bookkeeping that keeps a load
 * begun before an invalidation out of L1. */
void ain__l1_invalidate(ain__state_t *st, uint64_t user, char **prefixes, size_t n);
void ain__l1_flush(ain__state_t *st, bool suspend);

/* ------------------------------------------------------------ state */

typedef struct {
    ain_metric_t *lookups, *l1_hits, *l2_hits, *l3_hits, *misses, *failed, *not_modified;
    ain_metric_t *invalid, *coalesced, *refreshes, *refresh_skipped, *loads;
    ain_metric_t *l1_entries, *l1_bytes, *l1_evictions, *l1_rejected, *l1_expired;
    ain_metric_t *l1_invalidated, *l1_flushes;
    ain_metric_t *l1_rate, *l2_rate, *hit_rate; /* permille over the last 10 s */
    ain_metric_t *inval_sent, *inval_received, *inval_keys, *inval_bad;
    ain_metric_t *inval_lag_max,
        *inval_late; /* ms from publish to receipt: most in 10 s; >= 5 ms */
    ain_metric_t *l2_errors, *l2_stale_skipped, *l2_index_full;
    ain_metric_t *redis_up, *sub_up, *dirty_users, *pg_ready;
    ain_metric_t *l3_queries, *l3_errors, *writes, *write_errors, *clears;
    ain_metric_t *outbox_relayed, *outbox_errors;
    ain_metric_t *events_published, *events_failed, *writes_replayed, *keys_pruned;
} ain__metrics_t;

struct ain__state {
    ain_actor_t *actor;
    ain_log_t *log;
    ain__metrics_t m;
    ain_l1_t *l1;
    bool channel_up;       /* subscribed to the invalidation channel */
    int64_t l1_ttl_now_ms; /* l1_ttl_ms, or the degraded TTL while the channel is down; 0 = off */
    ain_redis_t *redis, *sub;
    ain_pg_t *pg;       /* reads */
    ain_pg_t *pg_write; /* MAIL_APPLY: its own connections, so writes never starve reads */
    zhashx_t *loads;    /* "<user>/<key>" -> ain__load_t */
    size_t detached;    /* loads still running outside the table */
    zhashx_t *epochs;   /* "<user>" -> uint64_t (invalidations seen), bounded */
    uint64_t global_epoch;
    int64_t inval_lag_max; /* since the metric was last set */
    zhashx_t *dirty;       /* users written while Redis was away */
    bool dirty_all;
    int64_t l1_ttl_ms, l1_degraded_ttl_ms, l2_ttl_ms;
    uint64_t instance;
    uint64_t rng;                     /* xorshift state for XFetch */
    int64_t outbox_age_ms;            /* AINBOX_CACHE_OUTBOX_AGE_MS */
    bool outbox_busy;                 /* a relay pass is running */
    size_t relaying;                  /* relayed rows whose announcement is still running */
    unsigned relay_ticks;             /* relay timer ticks, for the key pruning's period */
    ain_calls_t *calls;               /* to the events service */
    struct ain__announce *announcing; /* announcements waiting on the events service */
    msgpack_sbuffer scratch;
};

#define AIN__LOADS_MAX   10000 /* loads in flight at once */
#define AIN__WAITERS_MAX 1024  /* requests waiting on one load */
#define AIN__EPOCHS_MAX  100000
#define AIN__DIRTY_MAX   10000
#define AIN__CHANNEL     AIN_CHANNEL_CACHE_INVAL
#define AIN__LATE_MS     5 /* an invalidation received this long after it was sent is late */

#endif
