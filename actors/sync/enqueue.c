/* enqueue.c: how sync work reaches the job queue: SYNC_PUSH (the edge's Gmail
 * webhook), SYNC_START (an owner's request; the edge sends one at a Gmail
 * sign-in) and the fallback poll, each a JOB_ENQUEUE of one gmail.sync job
 * per account (unique key gmail.sync:<account>), high priority for push and
 * start, low for the poll. Running the jobs is sync.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/sync/internal.h"
#include "actors/sync/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_POLL_BATCH 100

/* ------------------------------------------------------------ enqueueing */

typedef struct {
    ain__sync_t *st;
    ain_request_t *req; /* NULL for the poll */
    int queued;
} s_enq_t;

static void s_pack_job(msgpack_packer *pk, uint64_t user, uint64_t account, const char *priority)
{
    char unique[48];
    snprintf(unique, sizeof unique, "gmail.sync:%" PRIu64, account);
    msgpack_pack_map(pk, 6);
    ain_mp_pack_kv_str(pk, "kind", "gmail.sync");
    ain_mp_pack_kv_u64(pk, "user", user);
    ain_mp_pack_kv_u64(pk, "account", account);
    ain_mp_pack_kv_str(pk, "priority", priority);
    ain_mp_pack_kv_str(pk, "unique", unique);
    ain_mp_pack_kv_str(pk, "service", "sync");
}

static void s_on_enqueued(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    s_enq_t *e = arg;
    bool ok = status == AIN_STATUS_OK && reply && reply->status == AIN_STATUS_OK;
    if (!ok)
        ain_metric_inc(e->st->m.enqueue_errors);
    if (e->req) {
        if (!ok) {
            ain_request_fail(e->req, AIN_STATUS_UNAVAILABLE, "the jobs service did not answer");
        } else {
            /* SYNC_START answers the job id; SYNC_PUSH whether anything was queued. */
            ain_body_t body;
            uint64_t id = 0;
            if (ain_body_parse(&body, reply->body, reply->body_len) == AIN_STATUS_OK)
                ain_mp_get_u64(body.root, "id", &id);
            ain_body_release(&body);
            msgpack_packer *pk = ain_actor_body(e->st->actor);
            msgpack_pack_map(pk, 1);
            if (e->queued < 0) {
                ain_mp_pack_kv_u64(pk, "job", id);
            } else {
                ain_mp_pack_str(pk, "queued");
                msgpack_pack_true(pk);
            }
            ain_request_reply_packed(e->req, AIN_STATUS_OK);
        }
    }
    free(e);
}

/* Enqueues a sync of each (user, account) row of `res`; answers e->req when done. */
static void s_enqueue_rows(s_enq_t *e, PGresult *res, const char *priority, uint64_t as_user)
{
    int n = PQntuples(res);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_str(&pk, "jobs");
    msgpack_pack_array(&pk, (uint32_t)n);
    for (int i = 0; i < n; i++)
        s_pack_job(&pk, strtoull(PQgetvalue(res, i, 1), NULL, 10),
                   strtoull(PQgetvalue(res, i, 0), NULL, 10), priority);
    uint64_t id = ain_call(e->st->calls, "jobs", AIN_MSG_JOB_ENQUEUE, as_user, sb.data, sb.size, 0,
                           s_on_enqueued, e);
    msgpack_sbuffer_destroy(&sb);
    if (!id) {
        ain_metric_inc(e->st->m.enqueue_errors);
        if (e->req)
            ain_request_fail(e->req, AIN_STATUS_BUSY, "too many calls in flight");
        free(e);
    }
}

static void s_on_push_rows(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    s_enq_t *e = arg;
    if (!o->result) {
        ain_request_fail(e->req, AIN_STATUS_AGAIN, "the database did not answer");
        free(e);
    } else if (PQntuples(o->result) == 0) {
        msgpack_packer *pk = ain_actor_body(e->st->actor);
        msgpack_pack_map(pk, 1);
        ain_mp_pack_str(pk, "queued");
        msgpack_pack_false(pk);
        ain_request_reply_packed(e->req, AIN_STATUS_OK);
        free(e);
    } else {
        s_enqueue_rows(e, o->result, "high", 0);
    }
}

int ain__sync_push(ain_actor_t *actor, ain_request_t *req)
{
    ain__sync_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    char email[320] = "";
    ain_status_t parsed = ain_body_parse(&body, env->body, env->body_len);
    int rc =
        parsed == AIN_STATUS_OK ? ain_mp_get_text(body.root, "email", email, sizeof email) : -1;
    ain_body_release(&body);
    ain_metric_inc(st->m.pushes);
    if (env->user != 0) {
        ain_request_fail(req, AIN_STATUS_DENIED, "SYNC_PUSH is the edge's (envelope user 0)");
        return 0;
    }
    if (rc != 1 || !strchr(email, '@')) {
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, "body must be {email, history_id}");
        return 0;
    }
    if (!st->pg) {
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "the sync actor is not configured");
        return 0;
    }
    s_enq_t *e = AIN_NEW(s_enq_t);
    e->st = st;
    e->req = req;
    const char *params[] = {email};
    if (ain_pg_query(st->pg, env->deadline_ms, AIN__Q_BY_ADDRESS, 1, params, s_on_push_rows, e) <
        0) {
        free(e);
        ain_request_fail(req, AIN_STATUS_BUSY, "the database queue is full");
    }
    return 0;
}

typedef struct {
    ain__sync_t *st;
    ain_request_t *req;
    uint64_t user, account;
} s_start_t;

static void s_on_owned(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    s_start_t *s = arg;
    if (!o->result) {
        ain_request_fail(s->req, AIN_STATUS_AGAIN, "the database did not answer");
    } else if (PQntuples(o->result) == 0) {
        ain_request_refuse(s->req, AIN_STATUS_NOT_FOUND, "ACCOUNT_NOT_FOUND",
                           "no such Gmail account of this user");
    } else {
        s_enq_t *e = AIN_NEW(s_enq_t);
        e->st = s->st;
        e->req = s->req;
        e->queued = -1; /* answer {job} */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        s_pack_job(&pk, s->user, s->account, "high");
        uint64_t id = ain_call(s->st->calls, "jobs", AIN_MSG_JOB_ENQUEUE, s->user, sb.data, sb.size,
                               ain_request_envelope(s->req)->deadline_ms, s_on_enqueued, e);
        msgpack_sbuffer_destroy(&sb);
        if (!id) {
            free(e);
            ain_request_fail(s->req, AIN_STATUS_BUSY, "too many calls in flight");
        }
    }
    free(s);
}

int ain__sync_start(ain_actor_t *actor, ain_request_t *req)
{
    ain__sync_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t account = 0;
    ain_status_t parsed = ain_body_parse(&body, env->body, env->body_len);
    int rc = parsed == AIN_STATUS_OK ? ain_mp_get_u64(body.root, "account", &account) : -1;
    ain_body_release(&body);
    if (rc != 1 || account == 0 || env->user == 0) {
        ain_metric_inc(st->m.invalid);
        ain_request_fail(req, AIN_STATUS_INVALID, "body must be {account}; envelope user = owner");
        return 0;
    }
    if (!st->pg) {
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "the sync actor is not configured");
        return 0;
    }
    ain_metric_inc(st->m.starts);
    s_start_t *s = AIN_NEW(s_start_t);
    *s = (s_start_t){st, req, env->user, account};
    char acc[24], usr[24];
    snprintf(acc, sizeof acc, "%" PRIu64, account);
    snprintf(usr, sizeof usr, "%" PRIu64, env->user);
    const char *params[] = {acc, usr};
    if (ain_pg_query(st->pg, env->deadline_ms, AIN__Q_OWNED, 2, params, s_on_owned, s) < 0) {
        free(s);
        ain_request_fail(req, AIN_STATUS_BUSY, "the database queue is full");
    }
    return 0;
}

/* The fallback poll: push is a hint, never the source of truth. */
static void s_on_stale(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__sync_t *st = arg;
    if (!o->result || PQntuples(o->result) == 0)
        return;
    ain_metric_add(st->m.polled, PQntuples(o->result));
    s_enq_t *e = AIN_NEW(s_enq_t);
    e->st = st;
    s_enqueue_rows(e, o->result, "low", 0);
}

void ain__sync_poll(ain_actor_t *actor, void *arg)
{
    (void)actor;
    ain__sync_t *st = arg;
    ain_metric_set(st->m.http_pending, (int64_t)ain__http_pending(st->http));
    if (!st->pg || ain_pg_ready(st->pg) == 0)
        return;
    char secs[16], batch[16];
    snprintf(secs, sizeof secs, "%d", st->poll_s);
    snprintf(batch, sizeof batch, "%d", S_POLL_BATCH);
    const char *params[] = {secs, batch};
    ain_pg_query(st->pg, ain_clock_wall_ms() + AIN__SYNC_POLL_TICK_MS, AIN__Q_STALE, 2, params,
                 s_on_stale, st);
}
