/* pg.c: asynchronous libpq connections in an actor's loop (see pg.h).
 *
 * Each connection is a small state machine: DOWN (waiting to reconnect),
 * CONNECTING (PQconnectPoll steps), BUSY (one query in flight), IDLE. Its
 * socket is an actor watch whose events follow what libpq asks for. A
 * timer fails queries that waited too long for a connection and drops a
 * connection whose query outlived the server-side statement_timeout.
 *
 * Deadlines: a query carries its caller's deadline. Queued past it, it
 * fails without being sent; running past it, it fails at once and its
 * connection is dropped: the server notices the closed client within
 * client_connection_check_interval (set on every session) and ends the
 * statement, even one waiting on a lock. So a stalled database holds at
 * most one query per connection, none of them for a caller that left.
 * (libpq 15 has no asynchronous cancel; PQcancel would block the actor.)
 */
#include "runtime/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_CHECK_MS        200
#define S_GRACE_MS        2000 /* beyond statement_timeout before a connection is dropped */
#define S_BACKOFF_MIN_MS  100
#define S_BACKOFF_MAX_MS  5000
#define S_PREPARED_MAX    32   /* statements prepared per connection */
#define S_CLIENT_CHECK_MS 1000 /* the server checks this often that we are still there */

typedef struct s_query_t {
    const char *sql;
    int nparams;
    char **params;
    ain_pg_fn *fn;
    void *arg;
    int64_t queued_ms, started_ms;
    int64_t deadline_ms; /* wall clock; 0: none beyond AINBOX_PG_TIMEOUT_MS */
    struct s_query_t *next;
} s_query_t;

typedef enum { S_DOWN, S_CONNECTING, S_IDLE, S_BUSY } s_state_t;

typedef struct {
    ain_pg_t *pool;
    PGconn *conn;
    s_state_t state;
    bool preparing;  /* BUSY preparing the query's statement, not running it yet */
    bool abandoning; /* dropped because its query's caller stopped waiting */
    int watch;
    s_query_t *query; /* in flight (BUSY) */
    PGresult *result;
    const char *prepared[S_PREPARED_MAX]; /* by address: "a<i>" on this connection */
    int nprepared;
    int64_t backoff_ms;
    int reconnect_timer;
} s_conn_t;

struct _ain_pg_t {
    ain_actor_t *actor;
    ain_log_t *log;
    char *conninfo;
    s_conn_t *conns;
    int nconns;
    s_query_t *head, *tail;
    size_t queue_max;
    int64_t timeout_ms;
    bool finish_running; /* ain_pg_finish_running */
    int check_timer;
    bool destroying;
    char channel[64]; /* ain_pg_listen; "" when not listening */
    ain_pg_notify_fn *notify_fn;
    void *notify_arg;
    ain_pg_stats_t stats;
};

static void s_dispatch(ain_pg_t *self);
static void s_connect(s_conn_t *c);

/* ------------------------------------------------------------ queries */

static void s_free_query(s_query_t *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q);
}

PGresult *ain_pg_take(const ain_pg_outcome_t *outcome)
{
    if (!outcome->result)
        return NULL;
    *outcome->taken = true;
    return outcome->result;
}

/* Ends a query: success when `res` holds rows or a command's result.
 * Returns true if the callback took `res` (ain_pg_take). */
static bool s_finish(ain_pg_t *self, s_query_t *q, PGresult *res, const char *error)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool taken = false;
    ain_pg_outcome_t out = {NULL, error, "", &taken};
    if (res && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
        out.result = res;
        out.error = NULL;
    } else if (res) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        out.error = PQresultErrorMessage(res);
        out.sqlstate = state ? state : "";
    }
    if (!out.result)
        self->stats.failed++;
    if (strcmp(out.sqlstate, "57014") == 0)
        self->stats.timeouts++; /* query_canceled: statement_timeout */
    q->fn(self, &out, q->arg);
    s_free_query(q);
    return taken;
}

int ain_pg_query(ain_pg_t *self, int64_t deadline_ms, const char *sql, int nparams,
                 const char *const *params, ain_pg_fn *fn, void *arg)
{
    if (self->destroying || self->stats.queued >= self->queue_max)
        return -1;
    s_query_t *q = AIN_NEW(s_query_t);
    q->sql = sql;
    q->nparams = nparams;
    q->params = ain_calloc((size_t)nparams + 1, sizeof(char *));
    for (int i = 0; i < nparams; i++)
        q->params[i] = params[i] ? ain_strdup(params[i]) : NULL;
    q->fn = fn;
    q->arg = arg;
    q->queued_ms = ain_clock_mono_ms();
    q->deadline_ms = deadline_ms;
    if (self->tail)
        self->tail->next = q;
    else
        self->head = q;
    self->tail = q;
    self->stats.queued++;
    self->stats.queries++;
    s_dispatch(self);
    return 0;
}

static s_query_t *s_pop(ain_pg_t *self)
{
    s_query_t *q = self->head;
    if (q) {
        self->head = q->next;
        if (!self->head)
            self->tail = NULL;
        q->next = NULL;
        self->stats.queued--;
    }
    return q;
}

/* ------------------------------------------------------------ connections */

static void s_watch(s_conn_t *c, int events)
{
    ain_actor_watch_set(c->pool->actor, c->watch, c->conn ? PQsocket(c->conn) : -1, events);
}

static void s_reconnect_now(ain_actor_t *actor, void *arg)
{
    s_conn_t *c = arg;
    c->reconnect_timer = 0;
    s_connect(c);
}

/* Drops the connection; the query it held fails; reconnects later. */
static void s_broken(s_conn_t *c, const char *why)
{
    ain_pg_t *self = c->pool;
    bool abandoning = c->abandoning;
    c->abandoning = false;
    if (self->destroying || c->state == S_CONNECTING)
        ain_debug(self->log, "postgres: connection closed: %s", why);
    else if (abandoning)
        ain_info(self->log, "postgres: connection dropped: %s", why);
    else
        ain_warn(self->log, "postgres: connection lost: %s", why);
    s_query_t *q = c->query;
    c->query = NULL;
    if (c->result)
        PQclear(c->result);
    c->result = NULL;
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
    c->state = S_DOWN;
    c->preparing = false;
    c->nprepared = 0;
    s_watch(c, 0);
    if (q)
        s_finish(self, q, NULL,
                 abandoning ? "the caller's deadline passed during the query"
                            : "database connection lost during the query");
    if (!self->destroying && !c->reconnect_timer) {
        c->reconnect_timer =
            ain_actor_timer(self->actor, (int)c->backoff_ms, false, s_reconnect_now, c);
        c->backoff_ms = c->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
}

/* Sends `q` on idle connection `c`: as a statement prepared on this
 * connection (planned once, not per query), preparing it first if needed;
 * unprepared only when the connection holds S_PREPARED_MAX already. */
static void s_send(s_conn_t *c, s_query_t *q)
{
    char name[16];
    int i = 0, ok;
    while (i < c->nprepared && c->prepared[i] != q->sql)
        i++;
    snprintf(name, sizeof name, "a%d", i);
    c->query = q;
    c->state = S_BUSY;
    c->preparing = false;
    if (!q->started_ms)
        q->started_ms = ain_clock_mono_ms();
    const char *const *params = (const char *const *)q->params;
    if (i < c->nprepared) {
        ok = PQsendQueryPrepared(c->conn, name, q->nparams, params, NULL, NULL, 0);
    } else if (c->nprepared < S_PREPARED_MAX) {
        c->preparing = true;
        ok = PQsendPrepare(c->conn, name, q->sql, q->nparams, NULL);
    } else {
        ok = PQsendQueryParams(c->conn, q->sql, q->nparams, NULL, params, NULL, NULL, 0);
    }
    if (!ok) {
        s_broken(c, PQerrorMessage(c->conn));
        return;
    }
    int more = PQflush(c->conn);
    if (more < 0)
        s_broken(c, PQerrorMessage(c->conn));
    else
        s_watch(c, ZMQ_POLLIN | (more ? ZMQ_POLLOUT : 0));
}

static bool s_expired(const s_query_t *q, int64_t wall_ms)
{
    return q->deadline_ms && wall_ms >= q->deadline_ms;
}

/* Fails a query that was never sent: its caller stopped waiting. */
static void s_abandon_queued(ain_pg_t *self, s_query_t *q)
{
    self->stats.abandoned++;
    s_finish(self, q, NULL, "the caller's deadline passed before a database connection was free");
}

/* Gives queued queries to idle connections; expired ones fail unsent. A
 * callback may queue and dispatch again, so each state is read afresh. */
static void s_dispatch(ain_pg_t *self)
{
    int64_t wall = ain_clock_wall_ms();
    for (int i = 0; i < self->nconns; i++) {
        s_conn_t *c = &self->conns[i];
        while (c->state == S_IDLE && self->head) {
            s_query_t *q = s_pop(self);
            if (s_expired(q, wall))
                s_abandon_queued(self, q);
            else
                s_send(c, q);
        }
    }
}

/* Hands the notifications libpq has read to the listener. */
static void s_notifies(s_conn_t *c)
{
    ain_pg_t *self = c->pool;
    PGnotify *n;
    while (c->conn && (n = PQnotifies(c->conn)) != NULL) {
        if (self->notify_fn && !self->destroying)
            self->notify_fn(self, n->extra ? n->extra : "", self->notify_arg);
        PQfreemem(n);
    }
}

/* Reads what arrived; completes the query when libpq has all of it. */
static void s_on_busy(s_conn_t *c, int revents)
{
    if ((revents & ZMQ_POLLOUT) && PQflush(c->conn) == 0)
        s_watch(c, ZMQ_POLLIN);
    if (!(revents & ZMQ_POLLIN))
        return;
    if (!PQconsumeInput(c->conn)) {
        s_broken(c, PQerrorMessage(c->conn));
        return;
    }
    s_notifies(c);
    while (!PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        if (!res && c->preparing) {
            /* The statement is prepared (or refused): now run the query. */
            PGresult *prep = c->result;
            c->result = NULL;
            c->preparing = false;
            if (prep && PQresultStatus(prep) == PGRES_COMMAND_OK) {
                c->prepared[c->nprepared++] = c->query->sql;
                PQclear(prep);
                s_send(c, c->query);
                return;
            }
            c->result = prep; /* the query ends with the refusal */
        }
        if (!res) {
            s_query_t *q = c->query;
            PGresult *done = c->result;
            c->query = NULL;
            c->result = NULL;
            c->state = S_IDLE;
            s_watch(c, ZMQ_POLLIN); /* notices the server closing an idle connection */
            if (!s_finish(c->pool, q, done, "the query returned nothing") && done)
                PQclear(done);
            s_dispatch(c->pool);
            return;
        }
        /* One statement gives one result; keep the first error if any. */
        if (c->result && PQresultStatus(c->result) == PGRES_FATAL_ERROR)
            PQclear(res);
        else {
            if (c->result)
                PQclear(c->result);
            c->result = res;
        }
    }
}

static void s_on_setup(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    if (out->error)
        ain_warn(pg->log, "postgres: session setup failed: %s", out->error);
    else if (pg->channel[0] && pg->notify_fn)
        pg->notify_fn(pg, NULL, pg->notify_arg); /* listening again: look for what was missed */
}

/* Connected: make the session ours (statement timeout), then serve. */
static void s_ready(s_conn_t *c)
{
    ain_pg_t *self = c->pool;
    char sql[400];
    /* client_connection_check_interval (PostgreSQL 14+) lets the server end
     * a statement whose connection we dropped at its caller's deadline. */
    snprintf(sql, sizeof sql,
             "set statement_timeout = %ld; set application_name = 'ainbox'; "
             "select set_config('client_connection_check_interval', '%d', false) "
             "where current_setting('server_version_num')::int >= 140000",
             (long)self->timeout_ms, S_CLIENT_CHECK_MS);
    if (self->channel[0]) /* checked by ain_pg_listen: an identifier */
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "; listen %s", self->channel);
    PQsetnonblocking(c->conn, 1);
    c->backoff_ms = S_BACKOFF_MIN_MS;
    self->stats.reconnects++;
    s_query_t *q = AIN_NEW(s_query_t);
    q->sql = NULL;
    q->fn = s_on_setup;
    q->queued_ms = ain_clock_mono_ms();
    c->query = q;
    c->state = S_BUSY;
    q->started_ms = q->queued_ms;
    /* The setup text is not a constant: send it now, before q->sql matters. */
    if (!PQsendQuery(c->conn, sql) || PQflush(c->conn) < 0)
        s_broken(c, PQerrorMessage(c->conn));
    else
        s_watch(c, ZMQ_POLLIN);
}

static void s_on_connecting(s_conn_t *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        s_watch(c, ZMQ_POLLIN);
        break;
    case PGRES_POLLING_WRITING:
        s_watch(c, ZMQ_POLLOUT);
        break;
    case PGRES_POLLING_OK:
        s_ready(c);
        break;
    default:
        s_broken(c, PQerrorMessage(c->conn));
    }
}

static void s_on_io(ain_actor_t *actor, int fd, int revents, void *arg)
{
    s_conn_t *c = arg;
    if (c->state == S_CONNECTING)
        s_on_connecting(c);
    else if (c->state == S_BUSY)
        s_on_busy(c, revents);
    else if (c->state == S_IDLE && !PQconsumeInput(c->conn))
        s_broken(c, PQerrorMessage(c->conn)); /* the server closed an idle connection */
    else if (c->state == S_IDLE)
        s_notifies(c);
}

static void s_connect(s_conn_t *c)
{
    c->conn = PQconnectStart(c->pool->conninfo);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        s_broken(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        return;
    }
    c->state = S_CONNECTING;
    s_watch(c, ZMQ_POLLOUT);
}

/* ------------------------------------------------------------ timeouts */

/* Takes the queued queries that must fail now out of the queue, in order:
 * their caller's deadline passed, or they waited AINBOX_PG_TIMEOUT_MS. */
static s_query_t *s_take_expired(ain_pg_t *self, int64_t now, int64_t wall)
{
    s_query_t *expired = NULL, **tail = &expired, *keep = NULL, *last = NULL;
    for (s_query_t *q = self->head, *next; q; q = next) {
        next = q->next;
        q->next = NULL;
        if (s_expired(q, wall) || now - q->queued_ms > self->timeout_ms) {
            *tail = q;
            tail = &q->next;
            self->stats.queued--;
        } else {
            if (last)
                last->next = q;
            else
                keep = q;
            last = q;
        }
    }
    self->head = keep;
    self->tail = last;
    return expired;
}

static void s_check(ain_actor_t *actor, void *arg)
{
    ain_pg_t *self = arg;
    int64_t now = ain_clock_mono_ms(), wall = ain_clock_wall_ms();
    for (int i = 0; i < self->nconns; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->state != S_BUSY || !c->query)
            continue;
        if (s_expired(c->query, wall) && !self->finish_running) {
            self->stats.abandoned++;
            c->abandoning = true;
            s_broken(c, "its query's caller stopped waiting");
        } else if (now - c->query->started_ms > self->timeout_ms + S_GRACE_MS) {
            self->stats.timeouts++;
            s_broken(c, "no answer past statement_timeout");
        }
    }
    /* Callbacks may queue again: the expired are taken out first. */
    s_query_t *q = s_take_expired(self, now, wall);
    while (q) {
        s_query_t *next = q->next;
        if (s_expired(q, wall))
            s_abandon_queued(self, q);
        else
            s_finish(self, q, NULL, "no database connection in time");
        q = next;
    }
}

/* ------------------------------------------------------------ life cycle */

ain_pg_t *ain_pg_new(ain_actor_t *actor, const char *conninfo, int connections)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(actor));
    ain_pg_t *self = AIN_NEW(ain_pg_t);
    self->actor = actor;
    self->log = ain_actor_log(actor);
    self->conninfo = ain_strdup(conninfo);
    self->timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_PG_TIMEOUT_MS);
    self->queue_max = (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_PG_QUEUE_MAX);
    self->nconns = connections > 0 ? connections : 1;
    self->conns = ain_calloc((size_t)self->nconns, sizeof(s_conn_t));
    for (int i = 0; i < self->nconns; i++) {
        s_conn_t *c = &self->conns[i];
        c->pool = self;
        c->backoff_ms = S_BACKOFF_MIN_MS;
        c->watch = ain_actor_watch(actor, -1, 0, s_on_io, c);
        s_connect(c);
    }
    self->check_timer = ain_actor_timer(actor, S_CHECK_MS, true, s_check, self);
    return self;
}

void ain_pg_destroy(ain_pg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_pg_t *self = *self_p;
    self->destroying = true;
    for (int i = 0; i < self->nconns; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->conn)
            s_broken(c, "shutting down");
        if (c->reconnect_timer)
            ain_actor_timer_cancel(self->actor, c->reconnect_timer);
        ain_actor_unwatch(self->actor, c->watch);
    }
    while (self->head)
        s_finish(self, s_pop(self), NULL, "shutting down");
    ain_actor_timer_cancel(self->actor, self->check_timer);
    free(self->conns);
    free(self->conninfo);
    free(self);
    *self_p = NULL;
}

void ain_pg_finish_running(ain_pg_t *self)
{
    self->finish_running = true;
}

int ain_pg_listen(ain_pg_t *self, const char *channel, ain_pg_notify_fn *fn, void *arg)
{
    size_t n = strlen(channel);
    if (n == 0 || n >= sizeof self->channel)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!((channel[i] >= 'a' && channel[i] <= 'z') ||
              (channel[i] >= '0' && channel[i] <= '9') || channel[i] == '_'))
            return -1;
    memcpy(self->channel, channel, n + 1);
    self->notify_fn = fn;
    self->notify_arg = arg;
    return 0;
}

int ain_pg_ready(const ain_pg_t *self)
{
    int n = 0;
    for (int i = 0; i < self->nconns; i++)
        n += self->conns[i].state == S_IDLE || self->conns[i].state == S_BUSY;
    return n;
}

void ain_pg_stats(const ain_pg_t *self, ain_pg_stats_t *out)
{
    *out = self->stats;
}
