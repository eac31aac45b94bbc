/* internal.h: the jobs actor's state, shared by its files (jobs.c: requests and life cycle;
 * run.c: claiming, dispatching and recording outcomes). Internal to actors/jobs. */
#ifndef AIN_ACTORS_JOBS_INTERNAL_H
#define AIN_ACTORS_JOBS_INTERNAL_H

#include <jansson.h>

#include "actors/jobs/policy.h"
#include "runtime/actor.h"
#include "runtime/call.h"
#include "runtime/pg.h"

typedef struct _ain__jobs_t ain__jobs_t;

/* One job dispatched (a slot of a pool). Slots live as long as the actor, so a call's
 * callback argument never dangles; ain_calls_destroy ends calls before slots are freed. */
typedef struct {
    ain__jobs_t *st;
    int prio;
    bool busy;
    uint64_t id, gen, user;
    int attempt, max_attempts;
} ain__jobs_slot_t;

/* One outcome waiting to be written (ain_jobs_finish), for the lease generation it holds. */
typedef struct {
    uint64_t id, gen;
    ain_jobs_decision_t d;
    json_t *payload; /* continue's new payload, or NULL */
    char error[160];
} ain__jobs_outcome_t;

typedef struct {
    ain_metric_t *enqueued, *duplicates, *claimed, *processed, *failed, *retried, *delayed,
        *continued, *dead, *stale, *merged, *lost, *refused, *invalid, *db_errors, *claims,
        *finishes, *wakeups;
    ain_metric_t *depth[AIN_JOBS_PRIOS], *running, *delayed_now, *oldest_ms, *dead_now;
    ain_metric_t *busy[AIN_JOBS_PRIOS], *outcomes_waiting, *pg_ready;
} ain__jobs_metrics_t;

struct _ain__jobs_t {
    ain_actor_t *actor;
    ain_log_t *log;
    ain_pg_t *pg;     /* queries; NULL when not configured */
    ain_pg_t *listen; /* one connection: LISTEN ain_jobs */
    ain_calls_t *calls;
    char owner[160]; /* lease_owner: host/pid/instance */
    int pools[AIN_JOBS_PRIOS];
    ain__jobs_slot_t *slots[AIN_JOBS_PRIOS];
    int busy[AIN_JOBS_PRIOS];
    int64_t lease_ms, guard_ms, base_ms, max_ms, stride_ms;
    int max_attempts;
    /* Claiming: one claim in flight at a time; `wanted` says there may be work for it. */
    bool claiming, wanted, nexting;
    bool more[AIN_JOBS_PRIOS]; /* the last claim filled this pool: more may be ready */
    int asked[AIN_JOBS_PRIOS]; /* what the claim in flight asked for, per priority */
    int64_t claim_sent_ms;     /* wall clock when the claim in flight was sent */
    int wake_timer, retry_timer;
    int64_t wake_at;
    /* Outcomes: written in batches, one statement in flight. */
    ain__jobs_outcome_t *out, *sending;
    size_t nout, nsending, out_cap;
    bool finishing;
    int finish_timer;
    unsigned rand_state;
    bool stopping;
    msgpack_sbuffer runbuf; /* JOB_RUN bodies */
    msgpack_packer runpk;
    ain__jobs_metrics_t m;
};

/* run.c */
void ain__jobs_run_start(ain__jobs_t *st);
void ain__jobs_run_stop(ain__jobs_t *st);
/* There may be jobs to claim (a notification, a timer): claims if a pool has room. */
void ain__jobs_wake(ain__jobs_t *st);
/* Slots in use / in all. */
int ain__jobs_total_slots(const ain__jobs_t *st);

#endif
