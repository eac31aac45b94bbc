/* internal.h: what the files of actors/ratelimit share, and nothing else.
 *
 *   ratelimit.c  the actor: handlers, start/stop, metrics
 *   decision.c   a request's body -> decisions (buckets, costs); answers
 *   redis.c      the Lua scripts and the batcher that runs decisions in Redis
 *   policy.c     the policies and Gmail's method costs
 *   local.c      GCRA in memory: the deny cache and the Redis-down fallback
 */
#ifndef AIN_ACTORS_RATELIMIT_INTERNAL_H
#define AIN_ACTORS_RATELIMIT_INTERNAL_H

#include <czmq.h>

#include "actors/ratelimit/local.h"
#include "actors/ratelimit/policy.h"
#include "proto/body.h"
#include "runtime/actor.h"
#include "runtime/redis.h"

#define AIN__RL_BUCKETS       3   /* per decision: the subject's, the project's, a lease */
#define AIN__RL_BATCH         64  /* decisions per request, and per Redis script call */
#define AIN__RL_LANES         2   /* Redis connections carrying decisions */
#define AIN__RL_INFLIGHT      2   /* script calls in flight per lane */
#define AIN__RL_CREDIT        512 /* requests the actor holds at once */
#define AIN__RL_KEY           192
#define AIN__RL_LEASE_ID      40
#define AIN__RL_LOCAL_MAX     100000 /* keys in each in-memory table */
#define AIN__RL_NEAR_MAX      4096   /* subjects remembered as near their quota per window */
#define AIN__RL_NEAR_PERMILLE 700

typedef enum { AIN__Q_GMAIL, AIN__Q_OUTLOOK, AIN__Q_API, AIN__Q_COUNT } ain__quota_t;

typedef struct ain__rl ain__rl_t;
typedef struct ain__rl_job ain__rl_job_t;

typedef struct {
    int policy;            /* ain_rl_policy_id_t */
    char key[AIN__RL_KEY]; /* its Redis key */
    const char *subject;   /* points into key: the account, user id or "all" */
    int64_t v1, v2;        /* from Redis: rate TAT after; lease holders, first expiry */
} ain__rl_bucket_t;

typedef struct {
    ain__rl_job_t *job;
    ain__quota_t quota;
    uint64_t user;
    int64_t cost;         /* units of the subject's bucket */
    int64_t cost_project; /* units of the project's bucket (Gmail: always units) */
    int nb;
    ain__rl_bucket_t b[AIN__RL_BUCKETS];
    int lease; /* index of the lease bucket, or -1 */
    char lease_id[AIN__RL_LEASE_ID];
    /* outcome */
    bool done, allowed, degraded;
    int refused_by; /* bucket that refused (allowed = false), or -1 */
    int64_t now_us; /* the deciding clock (Redis's, or ours when degraded) */
    int64_t retry_us;
} ain__rl_decision_t;

struct ain__rl_job {
    ain__rl_t *st;
    ain_request_t *req;
    bool many; /* {decisions: [...]}: answer {results: [...]} */
    int n, pending;
    ain__rl_decision_t d[];
};

typedef struct {
    ain_metric_t *decisions, *allowed, *refused, *refused_local, *degraded_refused, *degraded_local,
        *invalid, *denied, *calls, *call_decisions, *call_errors, *reloads, *leases,
        *leases_refused, *releases, *resets, *near_quota, *redis_up, *queued, *deny_keys,
        *fallback_keys, *abandoned;
    ain_metric_t *quota_decisions[AIN__Q_COUNT], *quota_refused[AIN__Q_COUNT];
    ain_metric_t *usage_max[AIN_RL_POLICY_COUNT], *near[AIN_RL_POLICY_COUNT];
} ain__rl_metrics_t;

struct ain__rl {
    ain_actor_t *actor;
    ain_log_t *log;
    ain__rl_metrics_t m;
    ain_rl_policies_t pol;
    int gmail_user;               /* AIN_RL_GMAIL_USER or AIN_RL_GMAIL_USER_REQUESTS */
    ain_rl_gmail_gen_t gmail_gen; /* AINBOX_GMAIL_QUOTA: which costs and limit */
    int64_t shares;               /* AINBOX_RATELIMIT_SHARES */
    int64_t retry_ms;             /* AINBOX_RATELIMIT_RETRY_MS */
    int64_t index_ttl_ms;
    uint64_t instance;
    uint64_t lease_seq;
    ain_redis_t *lanes[AIN__RL_LANES]; /* decisions; lanes[0] also the rest */
    int lane_inflight[AIN__RL_LANES];
    ain_redis_t *redis;         /* = lanes[0]: usage, reset, release */
    ain_redis_t *sub;           /* the reset channel */
    char sha[41];               /* the decision script's SHA1 once Redis knows it, else "" */
    ain__rl_decision_t **queue; /* decisions waiting for a script call: a ring */
    size_t q_head, q_len, q_cap;
    bool stopping;
    int64_t invalid_logged_ms;
    ain_rl_local_t *deny;     /* Redis's refusals, on our clock */
    ain_rl_local_t *fallback; /* api.user while Redis is down */
    int64_t clock_offset_us;  /* Redis's clock - ours, an upper bound (redis.c) */
    /* near-quota window */
    zhashx_t *near_seen; /* "policy/subject" seen at >= 70 % in this window */
    int64_t usage_max_now[AIN_RL_POLICY_COUNT];
    int near_now[AIN_RL_POLICY_COUNT];
};

/* decision.c */
/* Parses a RATE_CHECK body into a job (caller frees with free()), or
 * returns NULL with a reason in *why (static). */
ain__rl_job_t *ain__rl_job_parse(ain__rl_t *st, ain_request_t *req, const char **why);
/* Decides `d` without Redis: provider quotas refuse (fail closed), the user
 * API limit takes a per-process share from the fallback table. */
void ain__rl_decide_degraded(ain__rl_t *st, ain__rl_decision_t *d);
/* True if the deny cache refuses `d` (then `d` is decided). */
bool ain__rl_decide_cached(ain__rl_t *st, ain__rl_decision_t *d);
/* Completes `d` with Redis's values (b[i].v1/v2, now_us already set). */
void ain__rl_decide_redis(ain__rl_t *st, ain__rl_decision_t *d, bool ok);
/* Marks `d` decided; answers its request when it was the last. */
void ain__rl_done(ain__rl_t *st, ain__rl_decision_t *d);

/* ratelimit.c: drops the deny cache and the fallback table (after a reset). */
void ain__rl_forget(ain__rl_t *st);

/* redis.c */
void ain__rl_redis_start(ain__rl_t *st);
void ain__rl_redis_stop(ain__rl_t *st);
/* Queues `d` for the next script call and sends what it can. */
void ain__rl_enqueue(ain__rl_t *st, ain__rl_decision_t *d);
/* Runs the usage or reset script for `user`; fn gets the reply (NULL on
 * failure). Returns 0, or -1 (Redis is down; fn is not called). */
int ain__rl_usage(ain__rl_t *st, uint64_t user, bool reset, ain_redis_fn *fn, void *arg);
/* Drops lease `id` from `key`. Same contract. */
int ain__rl_release(ain__rl_t *st, const char *key, const char *id, ain_redis_fn *fn, void *arg);
/* Redis key names. */
void ain__rl_key(const ain__rl_t *st, int policy, const char *subject, size_t len,
                 ain__rl_bucket_t *b);
void ain__rl_index_key(uint64_t user, char *buf, size_t size);

#endif
