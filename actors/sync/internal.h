/* internal.h: what the sync actor's files share, and nothing outside actors/sync. */
#ifndef AIN_ACTORS_SYNC_INTERNAL_H
#define AIN_ACTORS_SYNC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <czmq.h>
#include <jansson.h>
#include <msgpack.h>

#include "actors/sync/http.h"
#include "runtime/actor.h"
#include "runtime/call.h"
#include "runtime/metrics.h"
#include "runtime/pg.h"

#define AIN__SYNC_TOKEN_MAX  4096
#define AIN__SYNC_BATCH_MAX  50    /* provider calls of one step */
#define AIN__SYNC_TOKENS_MAX 10000 /* cached access tokens */
#define AIN__SYNC_ID_MAX     200   /* a provider id's length */

typedef struct {
    ain_metric_t *runs, *done, *continued, *delayed, *retried, *failed, *late;
    ain_metric_t *http_calls, *http_errors, *http_401, *http_429, *http_5xx, *rate_delays;
    ain_metric_t *messages, *bodies, *deleted, *resyncs, *reauth, *invalid, *lease_busy;
    ain_metric_t *pushes, *starts, *polled, *enqueue_errors, *mime_errors, *too_large;
    ain_metric_t *runs_active, *http_pending;
} ain__sync_metrics_t;

typedef struct ain__run ain__run_t;

typedef struct {
    ain_actor_t *actor;
    ain_log_t *log;
    ain_pg_t *pg;
    ain_calls_t *calls;
    ain__http_t *http;
    char api[512]; /* Gmail base URL, without the trailing slash */
    int page, parallel;
    int64_t http_timeout_ms, body_max;
    int poll_s;
    char topic[256];         /* users.watch's Pub/Sub topic; empty: no watch */
    int cost_list, cost_get; /* Gmail units of messages.list and messages.get */
    bool units_mode;         /* the per-user policy counts units, not requests */
    char holder[64];         /* this actor instance, in lease holders */
    zhashx_t *tokens;        /* "account" -> s_token_t */
    ain__run_t *runs;
    ain__sync_metrics_t m;
} ain__sync_t;

/* One JOB_RUN: a bounded slice of one account's sync. */
typedef enum {
    AIN__END_DONE,
    AIN__END_RETRY,
    AIN__END_DELAY,
    AIN__END_CONTINUE,
    AIN__END_FAIL
} ain__end_t;

typedef struct {
    ain__run_t *r;
    int idx;
    uint64_t http;
    bool ok; /* answered 2xx or 404 and consumed */
} ain__slot_t;

typedef void(ain__result_fn)(ain__run_t *r, int idx, long status, json_t *answer);
typedef void(ain__step_fn)(ain__run_t *r);

struct ain__run {
    ain__sync_t *st;
    ain_request_t *req;
    uint64_t job, user, account;
    int attempt;
    int64_t deadline_ms;
    char holder[96];
    char *address, *cursor;
    char *position; /* job, cursor, full-sync progress as the slice found them */
    json_t *full;   /* the full sync's progress, or NULL */
    char token[AIN__SYNC_TOKEN_MAX];
    bool refreshed, ended, lease_held;
    bool lenient, batch_failed; /* a batch whose failure does not end the job */
    bool clear_seen;            /* a full sync ended: drop its sync_seen rows once saved */
    bool watch_due;             /* the account's watch ends within a day (or never began) */
    int64_t watch_until_ms;     /* to store at save; 0 keeps */
    const char *post;           /* the batch's calls are POSTs of this JSON (borrowed) */
    int prepay;      /* the next batch (a list) pays for this many gets of what it lists */
    int prepaid;     /* gets paid for by the list */
    char *post_body; /* owns what post points to */
    int pg_pending;
    uint64_t call; /* the call in flight (token, rate, apply), 0: none */
    int timer;
    /* the current batch of provider calls */
    const char *method;
    char *urls[AIN__SYNC_BATCH_MAX];
    ain__slot_t slots[AIN__SYNC_BATCH_MAX];
    int nurls, launch_at, inflight, outstanding;
    long worst; /* worst non-consumed status of the batch */
    int64_t retry_after_ms;
    const char *why;
    ain__result_fn *on_result;
    ain__step_fn *on_batch;
    ain__step_fn *resume; /* after a fresh token: where the run was */
    json_t *hist;         /* the history page being applied */
    bool resync;
    /* the MAIL_APPLY changes being built */
    msgpack_sbuffer ops;
    msgpack_packer pk;
    uint32_t nops;
    size_t apply_off, apply_end; /* the MAIL_APPLY in flight covers ops[off, end) */
    int seq;
    /* step scratch */
    json_t *page_ids;  /* the listed ids of this step */
    json_t *large;     /* ids whose raw form was too large to read: metadata only */
    char *next_page;   /* the list's nextPageToken */
    char *new_cursor;  /* to store at save */
    const char *state; /* sync_state to store */
    ain__end_t end;
    int64_t end_delay_ms;
    char *end_error;
    ain__run_t *prev, *next;
};

/* sync.c: the run's plumbing the steps use. */
void ain__run_finish(ain__run_t *r, ain__end_t end, int64_t delay_ms, const char *error);
void ain__run_save(ain__run_t *r, ain__end_t end);
void ain__run_batch(ain__run_t *r, const char *method, ain__result_fn *on_result,
                    ain__step_fn *on_batch);
void ain__run_add_url(ain__run_t *r, char *url);
void ain__run_apply(ain__run_t *r, ain__step_fn *next);
void ain__run_progress(ain__run_t *r, const char *phase);
int ain__run_query(ain__run_t *r, const char *sql, int n, const char *const *params, ain_pg_fn *fn);
ain__run_t *ain__run_of(void *arg); /* a pg callback's run, its pending count dropped */
bool ain__run_gone(ain__run_t *r);  /* ended: a late completion only releases it */
void ain__run_release(ain__run_t *r);

/* gmail.c: the steps. */
void ain__gmail_step(ain__run_t *r);
void ain__gmail_op_upsert(ain__run_t *r, json_t *msg, const char *raw, size_t raw_len);

/* enqueue.c: SYNC_PUSH, SYNC_START, and the poll's timer (every AIN__SYNC_POLL_TICK_MS). */
#define AIN__SYNC_POLL_TICK_MS 10000
int ain__sync_push(ain_actor_t *actor, ain_request_t *req);
int ain__sync_start(ain_actor_t *actor, ain_request_t *req);
void ain__sync_poll(ain_actor_t *actor, void *arg);

#endif
