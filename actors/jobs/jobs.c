/* jobs.c: the jobs actor (see jobs.h): requests (enqueue, operators' views) and its life cycle.
 *
 * Claiming and running jobs is run.c's; the queue's SQL is the migration's (0004_jobs.sql).
 */
#include "actors/jobs/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/jobs/internal.h"
#include "actors/jobs/queries.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

#define S_BATCH_MAX    1000
#define S_KIND_MAX     64
#define S_SERVICE_MAX  64
#define S_UNIQUE_MAX   256
#define S_ROUNDS       3 /* enqueue rounds for jobs whose unique twin was claimed meanwhile */
#define S_STATS_MS     5000
#define S_DLQ_LIST_DEF 50

/* One request waiting on the database. */
typedef struct {
    ain__jobs_t *st;
    ain_request_t *req;
    bool batch;
    int rounds;
    json_t *jobs;  /* ENQUEUE: the normalized jobs still to answer */
    size_t n;      /* ENQUEUE: jobs in the request */
    int64_t *ids;  /* ENQUEUE: per job, 0 while unknown */
    bool *created; /* ENQUEUE: per job */
    size_t *index; /* ENQUEUE: position in the request of each entry of `jobs` */
} s_call_t;

static void s_call_free(s_call_t *c)
{
    json_decref(c->jobs);
    free(c->ids);
    free(c->created);
    free(c->index);
    free(c);
}

/* True (having answered) if the database is not configured here. */
static bool s_unconfigured(ain__jobs_t *st, ain_request_t *req)
{
    if (st->pg)
        return false;
    ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "the job queue is not configured (DATABASE_URL)");
    return true;
}

/* True (having answered) if the outcome failed. */
static bool s_db_failed(s_call_t *c, const ain_pg_outcome_t *o)
{
    if (o->result)
        return false;
    ain_metric_inc(c->st->m.db_errors);
    ain_warn(c->st->log, "jobs: database: %s", o->error ? o->error : "failed");
    ain_request_fail(c->req, o->sqlstate && o->sqlstate[0] ? AIN_STATUS_ERROR : AIN_STATUS_AGAIN,
                     "the job queue did not answer");
    return true;
}

static int s_query(s_call_t *c, const char *sql, int n, const char *const *params, ain_pg_fn *fn)
{
    if (ain_pg_query(c->st->pg, ain_request_envelope(c->req)->deadline_ms, sql, n, params, fn, c) ==
        0)
        return 0;
    ain_request_fail(c->req, AIN_STATUS_BUSY, "too many database queries waiting");
    s_call_free(c);
    return -1;
}

static void s_invalid(ain__jobs_t *st, ain_request_t *req, const char *why)
{
    ain_metric_inc(st->m.invalid);
    ain_request_fail(req, AIN_STATUS_INVALID, why);
}

/* ------------------------------------------------------------ JOB_ENQUEUE */

/* A service name: what the broker would route to. */
static bool s_service_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' ||
              *s == '.'))
            return false;
    return true;
}

/* Reads one job of a request into a JSON object for ain_jobs_enqueue. Returns NULL with *why
 * set when it is not acceptable. `env_user`: 0 (a trusted service) or the job's user. */
static json_t *s_read_job(ain__jobs_t *st, const msgpack_object *o, uint64_t env_user,
                          const char **why)
{
    char kind[S_KIND_MAX + 1], service[S_SERVICE_MAX + 1], unique[S_UNIQUE_MAX + 1],
        prio[8] = "medium";
    uint64_t user = 0, account = 0;
    int64_t delay = 0, max = st->max_attempts;
    int has_account, has_unique;
    *why = "a job is {kind, user, account?, priority?, unique?, payload?: map, delay_ms?, "
           "max_attempts?, service?}";
    if (!o || o->type != MSGPACK_OBJECT_MAP || ain_mp_get_text(o, "kind", kind, sizeof kind) != 1 ||
        !kind[0] || ain_mp_get_u64(o, "user", &user) != 1 ||
        (has_account = ain_mp_get_u64(o, "account", &account)) < 0 ||
        ain_mp_get_text(o, "priority", prio, sizeof prio) < 0 ||
        (has_unique = ain_mp_get_text(o, "unique", unique, sizeof unique)) < 0 ||
        ain_mp_get_i64(o, "delay_ms", &delay) < 0 || ain_mp_get_i64(o, "max_attempts", &max) < 0)
        return NULL;
    int got_service = ain_mp_get_text(o, "service", service, sizeof service);
    if (got_service < 0 || (got_service == 1 && !s_service_ok(service))) {
        *why = "service must be a service name ([a-z0-9_.-], at most 64)";
        return NULL;
    }
    if (got_service == 0)
        snprintf(service, sizeof service, "sync");
    /* The broker routes JOB_RUN only to the services proto/msgtypes.def names for it. */
    if (!ain_msgtype_served_by(ain_msgtype_lookup(AIN_MSG_JOB_RUN), service)) {
        *why = "service must be one that answers JOB_RUN (proto/msgtypes.def)";
        return NULL;
    }
    if (!prio[0]) /* absent (ain_mp_get_text empties it) */
        snprintf(prio, sizeof prio, "medium");
    int p = ain_jobs_prio(prio, strlen(prio));
    if (p < 0) {
        *why = "priority must be high, medium or low";
        return NULL;
    }
    if (delay < 0 || delay > AIN_JOBS_DELAY_MAX || max < 1 || max > 100) {
        *why = "delay_ms must be 0..30 days, max_attempts 1..100";
        return NULL;
    }
    const msgpack_object *payload = ain_mp_get(o, "payload");
    if (payload && payload->type != MSGPACK_OBJECT_MAP && payload->type != MSGPACK_OBJECT_NIL) {
        *why = "payload must be a map";
        return NULL;
    }
    if (env_user != 0 && env_user != user) {
        *why = "a job's user must be the envelope's (or the envelope user 0: a trusted service)";
        return NULL;
    }
    json_t *jkind = json_string(kind), *junique = has_unique == 1 ? json_string(unique) : NULL;
    if (!jkind || (has_unique == 1 && !junique)) { /* jansson takes only UTF-8 */
        json_decref(jkind);
        json_decref(junique);
        *why = "kind and unique must be UTF-8 text";
        return NULL;
    }
    json_t *j = json_object();
    json_object_set_new(j, "kind", jkind);
    json_object_set_new(j, "service", json_string(service));
    json_object_set_new(j, "user", json_integer((json_int_t)user));
    if (has_account == 1)
        json_object_set_new(j, "account", json_integer((json_int_t)account));
    json_object_set_new(j, "priority", json_integer(p));
    if (junique && unique[0])
        json_object_set_new(j, "unique", junique);
    else
        json_decref(junique);
    if (payload && payload->type == MSGPACK_OBJECT_MAP) {
        /* Strings that are not UTF-8 become null (mpjson.h): JSON holds only UTF-8. */
        json_object_set_new(j, "payload", ain_mpjson_from_object(payload));
    }
    json_object_set_new(j, "delay_ms", json_integer(delay));
    json_object_set_new(j, "max_attempts", json_integer(max));
    return j;
}

static void s_enqueue_answer(s_call_t *c)
{
    msgpack_packer *pk = ain_actor_body(c->st->actor);
    if (c->batch) {
        msgpack_pack_map(pk, 1);
        ain_mp_pack_str(pk, "results");
        msgpack_pack_array(pk, (uint32_t)c->n);
    }
    for (size_t i = 0; i < c->n; i++) {
        msgpack_pack_map(pk, 2);
        ain_mp_pack_kv_i64(pk, "id", c->ids[i]);
        ain_mp_pack_str(pk, "created");
        c->created[i] ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
}

static void s_enqueue_send(s_call_t *c);

static void s_enqueued(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    if (s_db_failed(c, o)) {
        s_call_free(c);
        return;
    }
    /* Rows come in input order (n = 1..): keep those still without an id for another round. */
    json_t *left = json_array();
    size_t nleft = 0, *index = ain_calloc(json_array_size(c->jobs) + 1, sizeof(size_t));
    int rows = PQntuples(o->result);
    for (int r = 0; r < rows; r++) {
        long n = strtol(PQgetvalue(o->result, r, 0), NULL, 10) - 1;
        if (n < 0 || (size_t)n >= json_array_size(c->jobs))
            continue;
        size_t at = c->index[n];
        if (PQgetisnull(o->result, r, 1)) {
            json_array_append(left, json_array_get(c->jobs, (size_t)n));
            index[nleft++] = at;
            continue;
        }
        c->ids[at] = strtoll(PQgetvalue(o->result, r, 1), NULL, 10);
        c->created[at] = PQgetvalue(o->result, r, 2)[0] == 't';
        ain_metric_inc(c->created[at] ? c->st->m.enqueued : c->st->m.duplicates);
    }
    json_decref(c->jobs);
    free(c->index);
    c->jobs = left;
    c->index = index;
    if (nleft == 0) {
        s_enqueue_answer(c);
        s_call_free(c);
    } else if (++c->rounds >= S_ROUNDS) {
        ain_request_fail(c->req, AIN_STATUS_AGAIN, "unique jobs kept changing; try again");
        s_call_free(c);
    } else {
        s_enqueue_send(c);
    }
}

static void s_enqueue_send(s_call_t *c)
{
    char *text = json_dumps(c->jobs, JSON_COMPACT);
    char stride[24];
    snprintf(stride, sizeof stride, "%lld", (long long)c->st->stride_ms);
    const char *params[] = {text, stride};
    s_query(c, AIN_Q_JOBS_ENQUEUE, 2, params, s_enqueued);
    free(text);
}

static int s_enqueue(ain_actor_t *actor, ain_request_t *req)
{
    ain__jobs_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req))
        return 0;
    ain_body_t body;
    const char *why = "body must be a job or {jobs: [job] (1..1000)}";
    json_t *jobs = NULL;
    bool batch = false;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
        body.root->type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *list = ain_mp_get(body.root, "jobs");
        batch = list != NULL;
        size_t n = !batch ? 1 : list->type == MSGPACK_OBJECT_ARRAY ? list->via.array.size : 0;
        if (n >= 1 && n <= S_BATCH_MAX) {
            jobs = json_array();
            for (size_t i = 0; i < n && jobs; i++) {
                json_t *j =
                    s_read_job(st, batch ? &list->via.array.ptr[i] : body.root, env->user, &why);
                if (j)
                    json_array_append_new(jobs, j);
                else {
                    json_decref(jobs);
                    jobs = NULL;
                }
            }
        }
    }
    ain_body_release(&body);
    if (!jobs) {
        s_invalid(st, req, why);
        return 0;
    }
    s_call_t *c = AIN_NEW(s_call_t);
    c->st = st;
    c->req = req;
    c->batch = batch;
    c->jobs = jobs;
    c->n = json_array_size(jobs);
    c->ids = ain_calloc(c->n, sizeof *c->ids);
    c->created = ain_calloc(c->n, sizeof *c->created);
    c->index = ain_calloc(c->n, sizeof *c->index);
    for (size_t i = 0; i < c->n; i++)
        c->index[i] = i;
    s_enqueue_send(c);
    return 0;
}

/* ------------------------------------------------------------ operators */

/* True (having answered) unless the envelope user is 0: these are operators' requests (the
 * broker takes them only from an admin key when CURVE is on). */
static bool s_not_operator(ain__jobs_t *st, ain_request_t *req)
{
    if (ain_request_envelope(req)->user == 0)
        return false;
    ain_request_fail(req, AIN_STATUS_DENIED, "operators only (envelope user 0)");
    return true;
}

static s_call_t *s_call_new(ain__jobs_t *st, ain_request_t *req)
{
    s_call_t *c = AIN_NEW(s_call_t);
    c->st = st;
    c->req = req;
    return c;
}

static int64_t s_col(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Sets the shared figures' gauges from a stats row. */
static void s_gauges(ain__jobs_t *st, PGresult *res)
{
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        ain_metric_set(st->m.depth[p], s_col(res, 0, p));
    ain_metric_set(st->m.running, s_col(res, 0, 3));
    ain_metric_set(st->m.delayed_now, s_col(res, 0, 4));
    ain_metric_set(st->m.oldest_ms, s_col(res, 0, 5));
    ain_metric_set(st->m.dead_now, s_col(res, 0, 6));
}

static void s_pack_prios(msgpack_packer *pk, const char *key, const int64_t v[AIN_JOBS_PRIOS])
{
    ain_mp_pack_str(pk, key);
    msgpack_pack_map(pk, AIN_JOBS_PRIOS);
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        ain_mp_pack_kv_i64(pk, ain_jobs_prio_name(p), v[p]);
}

static void s_stats_done(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    ain__jobs_t *st = c->st;
    if (s_db_failed(c, o) || PQntuples(o->result) != 1) {
        if (o->result)
            ain_request_fail(c->req, AIN_STATUS_ERROR, "no stats row");
        s_call_free(c);
        return;
    }
    s_gauges(st, o->result);
    int64_t pending[AIN_JOBS_PRIOS], workers[AIN_JOBS_PRIOS], busy[AIN_JOBS_PRIOS];
    for (int p = 0; p < AIN_JOBS_PRIOS; p++) {
        pending[p] = s_col(o->result, 0, p);
        workers[p] = st->pools[p];
        busy[p] = st->busy[p];
    }
    static const char *const names[] = {"enqueued",  "processed", "failed", "retried", "delayed",
                                        "continued", "dead",      "stale",  "merged",  "lost"};
    ain_metric_t *counters[] = {st->m.enqueued, st->m.processed, st->m.failed, st->m.retried,
                                st->m.delayed,  st->m.continued, st->m.dead,   st->m.stale,
                                st->m.merged,   st->m.lost};
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 10);
    s_pack_prios(pk, "pending", pending);
    ain_mp_pack_kv_i64(pk, "running", s_col(o->result, 0, 3));
    ain_mp_pack_kv_i64(pk, "delayed", s_col(o->result, 0, 4));
    ain_mp_pack_kv_i64(pk, "oldest_ms", s_col(o->result, 0, 5));
    ain_mp_pack_kv_i64(pk, "dead", s_col(o->result, 0, 6));
    s_pack_prios(pk, "workers", workers);
    s_pack_prios(pk, "busy", busy);
    ain_mp_pack_kv_str(pk, "owner", st->owner);
    ain_mp_pack_kv_i64(pk, "lease_ms", st->lease_ms);
    ain_mp_pack_str(pk, "counters");
    msgpack_pack_map(pk, sizeof names / sizeof names[0]);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ain_mp_pack_kv_i64(pk, names[i], ain_metric_get(counters[i]));
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
    s_call_free(c);
}

static int s_stats(ain_actor_t *actor, ain_request_t *req)
{
    ain__jobs_t *st = ain_actor_state(actor);
    if (s_unconfigured(st, req) || s_not_operator(st, req))
        return 0;
    s_query(s_call_new(st, req), AIN_Q_JOBS_STATS, 0, NULL, s_stats_done);
    return 0;
}

static void s_dlq_listed(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    if (s_db_failed(c, o)) {
        s_call_free(c);
        return;
    }
    PGresult *r = o->result;
    int rows = PQntuples(r);
    msgpack_packer *pk = ain_actor_body(c->st->actor);
    msgpack_pack_map(pk, 2);
    ain_mp_pack_kv_i64(pk, "total", rows ? s_col(r, 0, 0) : 0);
    ain_mp_pack_str(pk, "jobs");
    msgpack_pack_array(pk, (uint32_t)rows);
    for (int i = 0; i < rows; i++) {
        msgpack_pack_map(pk, 13);
        ain_mp_pack_kv_i64(pk, "id", s_col(r, i, 1));
        ain_mp_pack_kv_str(pk, "kind", PQgetvalue(r, i, 2));
        ain_mp_pack_kv_str(pk, "service", PQgetvalue(r, i, 3));
        ain_mp_pack_kv_i64(pk, "user", s_col(r, i, 4));
        ain_mp_pack_str(pk, "account");
        PQgetisnull(r, i, 5) ? msgpack_pack_nil(pk) : msgpack_pack_int64(pk, s_col(r, i, 5));
        ain_mp_pack_kv_str(pk, "priority", ain_jobs_prio_name((int)s_col(r, i, 6)));
        ain_mp_pack_str(pk, "unique");
        PQgetisnull(r, i, 7) ? msgpack_pack_nil(pk) : ain_mp_pack_str(pk, PQgetvalue(r, i, 7));
        ain_mp_pack_str(pk, "payload");
        json_t *payload = json_loads(PQgetvalue(r, i, 8), 0, NULL);
        if (payload)
            ain_mpjson_pack(pk, payload);
        else
            msgpack_pack_nil(pk);
        json_decref(payload);
        ain_mp_pack_kv_i64(pk, "attempts", s_col(r, i, 9));
        ain_mp_pack_kv_i64(pk, "max_attempts", s_col(r, i, 10));
        ain_mp_pack_kv_str(pk, "error", PQgetvalue(r, i, 11));
        ain_mp_pack_kv_i64(pk, "created_ms", s_col(r, i, 12));
        ain_mp_pack_kv_i64(pk, "failed_ms", s_col(r, i, 13));
    }
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
    s_call_free(c);
}

static int s_dlq_list(ain_actor_t *actor, ain_request_t *req)
{
    ain__jobs_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req) || s_not_operator(st, req))
        return 0;
    ain_body_t body;
    int64_t limit = S_DLQ_LIST_DEF;
    int got = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK)
        got = ain_mp_get_i64(body.root, "limit", &limit);
    ain_body_release(&body);
    if (got < 0 || limit < 1 || limit > S_BATCH_MAX) {
        s_invalid(st, req, "body must be {limit?: 1..1000}");
        return 0;
    }
    char n[24];
    snprintf(n, sizeof n, "%lld", (long long)limit);
    const char *params[] = {n};
    s_query(s_call_new(st, req), AIN_Q_JOBS_DLQ_LIST, 1, params, s_dlq_listed);
    return 0;
}

static void s_dlq_changed(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    s_call_t *c = arg;
    if (s_db_failed(c, o)) {
        s_call_free(c);
        return;
    }
    bool retry = PQnfields(o->result) == 2;
    msgpack_packer *pk = ain_actor_body(c->st->actor);
    msgpack_pack_map(pk, retry ? 2 : 1);
    ain_mp_pack_kv_i64(pk, retry ? "retried" : "purged", s_col(o->result, 0, 0));
    if (retry)
        ain_mp_pack_kv_i64(pk, "merged", s_col(o->result, 0, 1));
    ain_request_reply_packed(c->req, AIN_STATUS_OK);
    if (retry)
        ain_info(c->st->log, "jobs: dead-letter queue: %lld jobs back in the queue",
                 (long long)s_col(o->result, 0, 0));
    s_call_free(c);
}

/* DLQ_RETRY and DLQ_PURGE: {id} or {all: true}. */
static int s_dlq_change(ain_actor_t *actor, ain_request_t *req, const char *sql)
{
    ain__jobs_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (s_unconfigured(st, req) || s_not_operator(st, req))
        return 0;
    ain_body_t body;
    uint64_t id = 0;
    bool all = false;
    int got_id = -1, got_all = -1;
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK) {
        got_id = ain_mp_get_u64(body.root, "id", &id);
        got_all = ain_mp_get_bool(body.root, "all", &all);
    }
    ain_body_release(&body);
    if (got_id < 0 || got_all < 0 || (got_id == 1) == all || (got_id == 1 && id == 0)) {
        s_invalid(st, req, "body must be {id} or {all: true}");
        return 0;
    }
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)id);
    const char *params[] = {all ? NULL : n};
    s_query(s_call_new(st, req), sql, 1, params, s_dlq_changed);
    return 0;
}

static int s_dlq_retry(ain_actor_t *actor, ain_request_t *req)
{
    return s_dlq_change(actor, req, AIN_Q_JOBS_DLQ_RETRY);
}

static int s_dlq_purge(ain_actor_t *actor, ain_request_t *req)
{
    return s_dlq_change(actor, req, AIN_Q_JOBS_DLQ_PURGE);
}

/* ------------------------------------------------------------ start, stop */

static void s_tick_done(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    ain__jobs_t *st = arg;
    if (o->result && PQntuples(o->result) == 1)
        s_gauges(st, o->result);
}

/* The shared figures (depth, oldest, dead) for the metrics; a count over the queue, so not on
 * every pass (AIN: S_STATS_MS). */
static void s_tick(ain_actor_t *actor, void *arg)
{
    ain__jobs_t *st = arg;
    ain_metric_set(st->m.pg_ready, st->pg ? ain_pg_ready(st->pg) : 0);
    if (st->pg && !st->stopping)
        ain_pg_query(st->pg, ain_clock_wall_ms() + S_STATS_MS, AIN_Q_JOBS_STATS, 0, NULL,
                     s_tick_done, st);
}

static void s_metrics_init(ain__jobs_metrics_t *m, ain_metrics_t *reg)
{
    m->enqueued = ain_metrics_counter(reg, "jobs.enqueued");
    m->duplicates = ain_metrics_counter(reg, "jobs.duplicates");
    m->claimed = ain_metrics_counter(reg, "jobs.claimed");
    m->processed = ain_metrics_counter(reg, "jobs.processed");
    m->failed = ain_metrics_counter(reg, "jobs.failed");
    m->retried = ain_metrics_counter(reg, "jobs.retried");
    m->delayed = ain_metrics_counter(reg, "jobs.delayed");
    m->continued = ain_metrics_counter(reg, "jobs.continued");
    m->dead = ain_metrics_counter(reg, "jobs.dead");
    m->stale = ain_metrics_counter(reg, "jobs.stale");
    m->merged = ain_metrics_counter(reg, "jobs.merged");
    m->lost = ain_metrics_counter(reg, "jobs.lost");
    m->refused = ain_metrics_counter(reg, "jobs.refused");
    m->invalid = ain_metrics_counter(reg, "jobs.invalid");
    m->db_errors = ain_metrics_counter(reg, "jobs.db_errors");
    m->claims = ain_metrics_counter(reg, "jobs.claims");
    m->finishes = ain_metrics_counter(reg, "jobs.finishes");
    m->wakeups = ain_metrics_counter(reg, "jobs.wakeups");
    static const char *const depth[] = {"jobs.depth.high", "jobs.depth.medium", "jobs.depth.low"};
    static const char *const busy[] = {"jobs.busy.high", "jobs.busy.medium", "jobs.busy.low"};
    for (int p = 0; p < AIN_JOBS_PRIOS; p++) {
        m->depth[p] = ain_metrics_gauge(reg, depth[p]);
        m->busy[p] = ain_metrics_gauge(reg, busy[p]);
    }
    m->running = ain_metrics_gauge(reg, "jobs.running");
    m->delayed_now = ain_metrics_gauge(reg, "jobs.delayed_now");
    m->oldest_ms = ain_metrics_gauge(reg, "jobs.oldest_age_ms");
    m->dead_now = ain_metrics_gauge(reg, "jobs.dead_now");
    m->outcomes_waiting = ain_metrics_gauge(reg, "jobs.outcomes_waiting");
    m->pg_ready = ain_metrics_gauge(reg, "jobs.pg.ready_connections");
}

static int s_settings(ain__jobs_t *st, const ain_config_t *cfg)
{
    const char *pools = ain_config_str(cfg, AIN_CFG_AINBOX_JOBS_WORKERS);
    if (!pools || ain_jobs_pools_parse(pools, st->pools) < 0) {
        ain_error(st->log, "AINBOX_JOBS_WORKERS must be HIGH/MEDIUM/LOW, each 0..%d, not all 0",
                  AIN_JOBS_POOL_MAX);
        return -1;
    }
    st->lease_ms = ain_config_int(cfg, AIN_CFG_AINBOX_JOBS_LEASE_MS);
    /* The run must end before the lease does, so no other claim can overlap it: a tenth of the
     * lease, at most 5 s, is left between JOB_RUN's deadline and the lease's end. */
    st->guard_ms = st->lease_ms / 10 < 5000 ? st->lease_ms / 10 : 5000;
    st->max_attempts = (int)ain_config_int(cfg, AIN_CFG_AINBOX_JOBS_MAX_ATTEMPTS);
    st->base_ms = ain_config_int(cfg, AIN_CFG_AINBOX_JOBS_BACKOFF_MS);
    st->max_ms = ain_config_int(cfg, AIN_CFG_AINBOX_JOBS_BACKOFF_MAX_MS);
    st->stride_ms = ain_config_int(cfg, AIN_CFG_AINBOX_JOBS_FAIR_STRIDE_MS);
    return 0;
}

static int s_start(ain_actor_t *actor)
{
    const ain_proc_t *proc = ain_actor_proc(actor);
    const ain_config_t *cfg = ain_proc_config(proc);
    ain__jobs_t *st = AIN_NEW(ain__jobs_t);
    st->actor = actor;
    st->log = ain_actor_log(actor);
    s_metrics_init(&st->m, ain_actor_metrics(actor));
    if (s_settings(st, cfg) < 0) {
        free(st);
        return -1;
    }
    snprintf(st->owner, sizeof st->owner, "%s/%ld/%llu", ain_proc_host(proc), (long)getpid(),
             (unsigned long long)ain_proc_instance(proc));
    st->rand_state = (unsigned)(ain_clock_mono_us() ^ (uint64_t)getpid());
    const char *db = ain_config_str(cfg, AIN_CFG_DATABASE_URL);
    if (!db && ain_actor_unconfigured(actor, "DATABASE_URL is not set") < 0) {
        free(st);
        return -1;
    }
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        st->slots[p] = ain_calloc((size_t)st->pools[p] + 1, sizeof(ain__jobs_slot_t));
    ain_actor_set_state(actor, st);
    if (db) {
        st->calls = ain_calls_new(actor, (size_t)ain__jobs_total_slots(st) + 16);
        if (!st->calls) {
            ain_error(st->log, "jobs: cannot make a client to the broker");
            for (int p = 0; p < AIN_JOBS_PRIOS; p++)
                free(st->slots[p]);
            free(st);
            return -1;
        }
        st->pg = ain_pg_new(actor, db, (int)ain_config_int(cfg, AIN_CFG_AINBOX_PG_POOL));
        st->listen = ain_pg_new(actor, db, 1);
        ain__jobs_run_start(st);
    }
    ain_actor_timer(actor, S_STATS_MS, true, s_tick, st);
    ain_info(st->log, "jobs: workers %d/%d/%d, lease %lld ms, owner %s", st->pools[0], st->pools[1],
             st->pools[2], (long long)st->lease_ms, st->owner);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    ain__jobs_t *st = ain_actor_state(actor);
    ain__jobs_run_stop(st);
    for (int p = 0; p < AIN_JOBS_PRIOS; p++)
        free(st->slots[p]);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_JOB_ENQUEUE, s_enqueue}, {AIN_MSG_JOBS_STATS, s_stats},
    {AIN_MSG_DLQ_LIST, s_dlq_list},   {AIN_MSG_DLQ_RETRY, s_dlq_retry},
    {AIN_MSG_DLQ_PURGE, s_dlq_purge}, {0, NULL},
};

const ain_actor_def_t ain_jobs_actor = {
    .service = "jobs",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
    /* Requests wait on the database without holding the thread. */
    .credit = 256,
};
