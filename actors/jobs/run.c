/* run.c: claiming jobs, running them on their services, recording what came of them.
 *
 * The loop, without polling: a claim is sent when a pool has room and there may be work (a
 * NOTIFY from an enqueue or a reschedule, the timer of the next delayed job or lease end, a
 * previous claim that filled a pool). One claim and one batch of outcomes are in flight at a
 * time, so under load each statement carries many jobs (claims take every free slot; outcomes
 * that arrive while a batch is written go in the next). Each claimed job goes to its service as
 * JOB_RUN (runtime/call.h) with the lease's end (minus a guard) as deadline; the answer, or its
 * absence, becomes an outcome (policy.h) written with the lease generation of the claim, so a
 * holder whose lease ran out changes nothing. A failed write is sent again: outcomes are
 * idempotent under that fence.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/jobs/internal.h"
#include "actors/jobs/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

#define S_IDLE_MAX_MS   30000 /* a look at the queue at least this often (a lost NOTIFY) */
#define S_WAKE_MIN_MS   5
#define S_RETRY_MS      500  /* after a failed claim or outcome write */
#define S_FINISH_BATCH  1000 /* outcomes per statement */
#define S_REFUSED_DELAY 1000 /* a run we could not send (too many calls): again after this */

static void s_flush(ain__jobs_t *st);
static void s_claim(ain__jobs_t *st);

int ain__jobs_total_slots(const ain__jobs_t *st)
{
    return st->pools[0] + st->pools[1] + st->pools[2];
}

static double s_unit(ain__jobs_t *st)
{
    return (double)rand_r(&st->rand_state) / ((double)RAND_MAX + 1.0);
}

/* ------------------------------------------------------------ outcomes */

/* Queues an outcome for job (id, gen). `payload` (owned) replaces the job's on AGAIN. */
static void s_outcome(ain__jobs_t *st, uint64_t id, uint64_t gen, ain_jobs_decision_t d,
                      json_t *payload, const char *error)
{
    if (st->nout == st->out_cap) {
        st->out_cap = st->out_cap ? st->out_cap * 2 : 64;
        st->out = ain_realloc(st->out, st->out_cap * sizeof *st->out);
    }
    ain__jobs_outcome_t *o = &st->out[st->nout++];
    o->id = id;
    o->gen = gen;
    o->d = d;
    o->payload = payload;
    snprintf(o->error, sizeof o->error, "%s", error ? error : "");
    ain_metric_set(st->m.outcomes_waiting, (int64_t)(st->nout + st->nsending));
    s_flush(st);
}

static json_t *s_outcome_json(const ain__jobs_outcome_t *o)
{
    static const char *const ops[] = {"done", "dead", "again"};
    static const char *const counts[] = {"keep", "uncount", "reset"};
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer((json_int_t)o->id));
    json_object_set_new(j, "gen", json_integer((json_int_t)o->gen));
    json_object_set_new(j, "op", json_string(ops[o->d.op]));
    if (o->d.op == AIN_JOBS_AGAIN) {
        json_object_set_new(j, "delay_ms", json_integer(o->d.delay_ms));
        json_object_set_new(j, "attempts", json_string(counts[o->d.count]));
        if (o->payload)
            json_object_set(j, "payload", o->payload);
    }
    if (o->error[0])
        json_object_set_new(j, "error", json_string(o->error)); /* printable ASCII: policy.c */
    return j;
}

static void s_free_sending(ain__jobs_t *st)
{
    for (size_t i = 0; i < st->nsending; i++)
        json_decref(st->sending[i].payload);
    free(st->sending);
    st->sending = NULL;
    st->nsending = 0;
}

static void s_finish_retry(ain_actor_t *actor, void *arg)
{
    ain__jobs_t *st = arg;
    st->finish_timer = 0;
    s_flush(st);
}

static void s_finished(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__jobs_t *st = arg;
    st->finishing = false;
    if (st->stopping) {
        s_free_sending(st);
        return;
    }
    if (!o->result) {
        /* Unknown whether it committed: send the same outcomes again (fenced, so idempotent),
         * before the newer ones. */
        ain_metric_inc(st->m.db_errors);
        ain_warn(st->log, "jobs: recording %zu outcomes failed (sent again): %s", st->nsending,
                 o->error ? o->error : "?");
        size_t need = st->nout + st->nsending;
        if (need > st->out_cap) {
            st->out_cap = need;
            st->out = ain_realloc(st->out, st->out_cap * sizeof *st->out);
        }
        memmove(st->out + st->nsending, st->out, st->nout * sizeof *st->out);
        memcpy(st->out, st->sending, st->nsending * sizeof *st->out);
        st->nout = need;
        free(st->sending);
        st->sending = NULL;
        st->nsending = 0;
        if (!st->finish_timer)
            st->finish_timer = ain_actor_timer(st->actor, S_RETRY_MS, false, s_finish_retry, st);
        return;
    }
    int rows = PQntuples(o->result);
    for (int i = 0; i < rows; i++)
        if (strcmp(PQgetvalue(o->result, i, 1), "merged") == 0)
            ain_metric_inc(st->m.merged);
    /* Outcomes that changed nothing: their lease had moved on (expired, claimed again). */
    if ((size_t)rows < st->nsending)
        ain_metric_add(st->m.stale, (int64_t)(st->nsending - (size_t)rows));
    s_free_sending(st);
    ain_metric_set(st->m.outcomes_waiting, (int64_t)st->nout);
    s_flush(st);
    s_claim(st); /* claims wait while too many outcomes are unwritten */
}

/* Writes the waiting outcomes, up to S_FINISH_BATCH, unless a batch is being written. */
static void s_flush(ain__jobs_t *st)
{
    if (st->finishing || st->nout == 0 || !st->pg || st->finish_timer)
        return;
    size_t n = st->nout < S_FINISH_BATCH ? st->nout : S_FINISH_BATCH;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, s_outcome_json(&st->out[i]));
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    char stride[24];
    snprintf(stride, sizeof stride, "%lld", (long long)st->stride_ms);
    const char *params[] = {text, stride};
    if (ain_pg_query(st->pg, 0, AIN_Q_JOBS_FINISH, 2, params, s_finished, st) < 0) {
        free(text);
        if (!st->finish_timer)
            st->finish_timer = ain_actor_timer(st->actor, S_RETRY_MS, false, s_finish_retry, st);
        return;
    }
    free(text);
    st->finishing = true;
    ain_metric_inc(st->m.finishes);
    st->sending = ain_malloc(n * sizeof *st->sending);
    memcpy(st->sending, st->out, n * sizeof *st->out);
    st->nsending = n;
    memmove(st->out, st->out + n, (st->nout - n) * sizeof *st->out);
    st->nout -= n;
}

/* ------------------------------------------------------------ runs */

static void s_slot_free(ain__jobs_slot_t *slot)
{
    ain__jobs_t *st = slot->st;
    slot->busy = false;
    st->busy[slot->prio]--;
    ain_metric_set(st->m.busy[slot->prio], st->busy[slot->prio]);
    if (st->more[slot->prio])
        st->wanted = true;
}

static void s_count(ain__jobs_t *st, ain_jobs_result_t r, ain_jobs_decision_t d)
{
    if (r == AIN_JOBS_R_DONE)
        ain_metric_inc(st->m.processed);
    else if (r == AIN_JOBS_R_DELAY)
        ain_metric_inc(st->m.delayed);
    else if (r == AIN_JOBS_R_CONTINUE)
        ain_metric_inc(st->m.continued);
    else
        ain_metric_inc(st->m.failed);
    if (r == AIN_JOBS_R_LOST)
        ain_metric_inc(st->m.lost);
    if (d.op == AIN_JOBS_DEAD)
        ain_metric_inc(st->m.dead);
    else if (d.op == AIN_JOBS_AGAIN && (r == AIN_JOBS_R_RETRY || r == AIN_JOBS_R_LOST))
        ain_metric_inc(st->m.retried);
}

/* JOB_RUN's answer (or its absence: TIMEOUT at the lease's end, UNAVAILABLE). */
static void s_ran(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    ain__jobs_slot_t *slot = arg;
    ain__jobs_t *st = slot->st;
    ain_body_t body;
    bool parsed = false;
    if (reply && status == AIN_STATUS_OK)
        parsed = ain_body_parse(&body, reply->body, reply->body_len) == AIN_STATUS_OK;
    ain_jobs_result_t r;
    int64_t delay;
    const msgpack_object *payload;
    char error[160];
    ain_jobs_read_reply(reply && !parsed && status == AIN_STATUS_OK ? AIN_STATUS_INVALID : status,
                        parsed ? body.root : NULL, &r, &delay, &payload, error, sizeof error);
    ain_jobs_decision_t d = ain_jobs_decide(r, slot->attempt, slot->max_attempts, delay,
                                            st->base_ms, st->max_ms, s_unit(st));
    json_t *pj = d.op == AIN_JOBS_AGAIN && r == AIN_JOBS_R_CONTINUE && payload
                     ? ain_mpjson_from_object(payload)
                     : NULL;
    if (reply && status == AIN_STATUS_OK && r == AIN_JOBS_R_LOST)
        ain_warn(st->log, "jobs: job %llu (%s): %s", (unsigned long long)slot->id,
                 ain_jobs_prio_name(slot->prio), error);
    if (reply && status == AIN_STATUS_OK)
        ain_body_release(&body); /* parsed or not, it was passed to ain_body_parse */
    s_count(st, r, d);
    s_outcome(st, slot->id, slot->gen, d, pj, error);
    s_slot_free(slot);
    s_claim(st);
}

static ain__jobs_slot_t *s_free_slot(ain__jobs_t *st, int prio)
{
    for (int i = 0; i < st->pools[prio]; i++)
        if (!st->slots[prio][i].busy)
            return &st->slots[prio][i];
    return NULL;
}

/* Packs JOB_RUN's body for claimed row `i` into st->runbuf; NULL when the stored payload is
 * not JSON (cannot happen with jsonb; checked anyway). */
static msgpack_packer *s_run_body(ain__jobs_t *st, PGresult *res, int i, const ain__jobs_slot_t *s)
{
    json_t *payload = json_loads(PQgetvalue(res, i, 6), 0, NULL);
    if (!payload)
        return NULL;
    msgpack_packer *pk = &st->runpk;
    st->runbuf.size = 0;
    msgpack_pack_map(pk, 7);
    ain_mp_pack_kv_u64(pk, "id", s->id);
    ain_mp_pack_kv_str(pk, "kind", PQgetvalue(res, i, 1));
    ain_mp_pack_kv_u64(pk, "user", s->user);
    ain_mp_pack_str(pk, "account");
    if (PQgetisnull(res, i, 4))
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, strtoull(PQgetvalue(res, i, 4), NULL, 10));
    ain_mp_pack_str(pk, "payload");
    ain_mpjson_pack(pk, payload);
    ain_mp_pack_kv_i64(pk, "attempt", s->attempt);
    ain_mp_pack_kv_i64(pk, "lease_ms", st->lease_ms - st->guard_ms);
    json_decref(payload);
    return pk;
}

/* Sends claimed row `i` to its service. */
static void s_dispatch(ain__jobs_t *st, PGresult *res, int i)
{
    uint64_t id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
    uint64_t gen = strtoull(PQgetvalue(res, i, 9), NULL, 10);
    int prio = atoi(PQgetvalue(res, i, 5));
    int attempt = atoi(PQgetvalue(res, i, 7)), max = atoi(PQgetvalue(res, i, 8));
    ain_jobs_decision_t again = {AIN_JOBS_AGAIN, AIN_JOBS_UNCOUNT, 0};
    ain__jobs_slot_t *slot = prio >= 0 && prio < AIN_JOBS_PRIOS ? s_free_slot(st, prio) : NULL;
    if (!slot) { /* more rows than asked: a bug, but harmless: give it back */
        s_outcome(st, id, gen, again, NULL, NULL);
        return;
    }
    if (attempt > max) {
        /* Its runs were lost (lease expired) max times: a job that kills its workers. */
        char why[160];
        snprintf(why, sizeof why, "lost %d times: %.100s", max, PQgetvalue(res, i, 10));
        ain_jobs_decision_t dead = {AIN_JOBS_DEAD, AIN_JOBS_KEEP, 0};
        ain_metric_inc(st->m.dead);
        s_outcome(st, id, gen, dead, NULL, why);
        return;
    }
    *slot = (ain__jobs_slot_t){
        st, prio, true, id, gen, strtoull(PQgetvalue(res, i, 3), NULL, 10), attempt, max};
    msgpack_packer *pk = s_run_body(st, res, i, slot);
    msgpack_sbuffer *sb = pk ? &st->runbuf : NULL;
    int64_t deadline = st->claim_sent_ms + st->lease_ms - st->guard_ms;
    uint64_t call = sb ? ain_call(st->calls, PQgetvalue(res, i, 2), AIN_MSG_JOB_RUN, slot->user,
                                  sb->data, sb->size, deadline, s_ran, slot)
                       : 0;
    if (!call) {
        slot->busy = false;
        ain_metric_inc(st->m.refused);
        again.delay_ms = S_REFUSED_DELAY;
        s_outcome(st, id, gen, again, NULL, sb ? "too many runs in flight" : "bad payload");
        return;
    }
    st->busy[prio]++;
    ain_metric_set(st->m.busy[prio], st->busy[prio]);
    ain_metric_inc(st->m.claimed);
}

/* ------------------------------------------------------------ claims */

static void s_wake_fire(ain_actor_t *actor, void *arg)
{
    ain__jobs_t *st = arg;
    st->wake_timer = 0;
    st->wake_at = INT64_MAX;
    ain_metric_inc(st->m.wakeups);
    ain__jobs_wake(st);
}

/* Arms the wake-up timer for `at_ms` (wall clock) unless it is set for earlier. */
static void s_wake_at(ain__jobs_t *st, int64_t at_ms)
{
    int64_t now = ain_clock_wall_ms();
    if (at_ms > now + S_IDLE_MAX_MS)
        at_ms = now + S_IDLE_MAX_MS;
    if (st->wake_timer && st->wake_at <= at_ms)
        return;
    if (st->wake_timer)
        ain_actor_timer_cancel(st->actor, st->wake_timer);
    int64_t delay = at_ms - now < S_WAKE_MIN_MS ? S_WAKE_MIN_MS : at_ms - now;
    st->wake_at = at_ms;
    st->wake_timer = ain_actor_timer(st->actor, (int)delay, false, s_wake_fire, st);
}

static void s_next(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__jobs_t *st = arg;
    st->nexting = false;
    if (st->stopping)
        return;
    int64_t now = ain_clock_wall_ms(), at = now + S_IDLE_MAX_MS;
    if (o->result && PQntuples(o->result) == 1 && !PQgetisnull(o->result, 0, 0))
        at = strtoll(PQgetvalue(o->result, 0, 0), NULL, 10) + 1;
    /* Ready already, yet the claim did not get it: another claimer holds it locked, or it just
     * became ready. Look again soon, not at once (that would be polling). */
    if (at <= now + S_WAKE_MIN_MS)
        at = now + S_RETRY_MS;
    s_wake_at(st, at);
}

static void s_claim_retry(ain_actor_t *actor, void *arg)
{
    ain__jobs_t *st = arg;
    st->retry_timer = 0;
    ain__jobs_wake(st);
}

static void s_claimed(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__jobs_t *st = arg;
    int want[AIN_JOBS_PRIOS], got[AIN_JOBS_PRIOS] = {0, 0, 0};
    st->claiming = false;
    if (st->stopping)
        return;
    if (!o->result) {
        /* Rows we may have claimed come back when their lease runs out. */
        ain_metric_inc(st->m.db_errors);
        ain_warn(st->log, "jobs: claim failed: %s", o->error ? o->error : "?");
        if (!st->retry_timer)
            st->retry_timer = ain_actor_timer(st->actor, S_RETRY_MS, false, s_claim_retry, st);
        return;
    }
    /* What was asked, not what is free now: slots freed while the claim ran would make a full
     * answer look short (and send the actor to sleep with work waiting). */
    memcpy(want, st->asked, sizeof want);
    int rows = PQntuples(o->result);
    for (int i = 0; i < rows; i++) {
        int p = atoi(PQgetvalue(o->result, i, 5));
        if (p >= 0 && p < AIN_JOBS_PRIOS)
            got[p]++;
        s_dispatch(st, o->result, i);
    }
    /* A pool not asked (full) keeps what was known of it; one asked knows now. */
    bool any_more = false;
    char prios[16] = "{", *at = prios + 1;
    for (int p = 0; p < AIN_JOBS_PRIOS; p++) {
        if (want[p] > 0) {
            st->more[p] = got[p] >= want[p];
            at += sprintf(at, "%s%d", at > prios + 1 ? "," : "", p);
        }
        any_more |= st->more[p] && want[p] > 0;
    }
    strcpy(at, "}");
    if (!any_more && !st->wanted && !st->nexting && st->pg) {
        /* Nothing ready for the pools with room: sleep until their next delayed job or a lease
         * end. (A full pool is claimed for when one of its slots frees.) */
        const char *params[] = {prios};
        if (ain_pg_query(st->pg, 0, AIN_Q_JOBS_NEXT, 1, params, s_next, st) == 0)
            st->nexting = true;
        else
            s_wake_at(st, ain_clock_wall_ms() + S_RETRY_MS);
    }
    s_claim(st);
}

/* Claims for every pool with room, if there may be work and no claim is in flight. Waits while
 * many outcomes are unwritten (the database is slow): claiming more would only add to them. */
static void s_claim(ain__jobs_t *st)
{
    if (!st->pg || st->claiming || !st->wanted || st->retry_timer)
        return;
    if (st->nout + st->nsending > (size_t)ain__jobs_total_slots(st) + S_FINISH_BATCH)
        return;
    int want[AIN_JOBS_PRIOS], total = 0;
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        total += want[p] = st->pools[p] - st->busy[p];
    if (total == 0)
        return;
    char lease[24], n[AIN_JOBS_PRIOS][12];
    snprintf(lease, sizeof lease, "%lld", (long long)st->lease_ms);
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        snprintf(n[p], sizeof n[p], "%d", want[p]);
    const char *params[] = {st->owner, lease, n[0], n[1], n[2]};
    st->claim_sent_ms = ain_clock_wall_ms();
    if (ain_pg_query(st->pg, 0, AIN_Q_JOBS_CLAIM, 5, params, s_claimed, st) < 0) {
        if (!st->retry_timer)
            st->retry_timer = ain_actor_timer(st->actor, S_RETRY_MS, false, s_claim_retry, st);
        return;
    }
    st->claiming = true;
    st->wanted = false;
    memcpy(st->asked, want, sizeof want);
    ain_metric_inc(st->m.claims);
}

void ain__jobs_wake(ain__jobs_t *st)
{
    /* Work may have come for a full pool too: claim for it when one of its slots frees. */
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        if (st->busy[p] == st->pools[p])
            st->more[p] = true;
    st->wanted = true;
    s_claim(st);
}

/* ------------------------------------------------------------ notifications */

/* NOTIFY ain_jobs, payload: the earliest run_at (epoch ms) of what was queued; NULL after
 * the listening connection (re)connected. */
static void s_notified(ain_pg_t *pg, const char *payload, void *arg)
{
    ain__jobs_t *st = arg;
    int64_t at = payload ? strtoll(payload, NULL, 10) : 0;
    if (at > ain_clock_wall_ms() + S_WAKE_MIN_MS)
        s_wake_at(st, at);
    else
        ain__jobs_wake(st);
}

void ain__jobs_run_start(ain__jobs_t *st)
{
    st->wake_at = INT64_MAX;
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        st->more[p] = true; /* unknown yet */
    msgpack_sbuffer_init(&st->runbuf);
    msgpack_packer_init(&st->runpk, &st->runbuf, msgpack_sbuffer_write);
    ain_pg_listen(st->listen, "ain_jobs", s_notified, st);
}

void ain__jobs_run_stop(ain__jobs_t *st)
{
    /* Runs in flight end without callbacks; their jobs run again when the lease runs out, and
     * outcomes not yet written are lost the same way (the job runs again: at least once). */
    st->stopping = true;
    ain_calls_destroy(&st->calls);
    ain_pg_destroy(&st->listen);
    ain_pg_destroy(&st->pg); /* fails what is in flight; the callbacks see `stopping` */
    for (size_t i = 0; i < st->nout; i++)
        json_decref(st->out[i].payload);
    free(st->out);
    s_free_sending(st);
    msgpack_sbuffer_destroy(&st->runbuf);
}
