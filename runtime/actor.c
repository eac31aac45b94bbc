/* actor.c: the actor skeleton (see actor.h for what it promises).
 *
 * One poll loop per actor: its pipe (bundle) or the signal flag (process),
 * the worker socket, an optional bus subscriber, timers. Requests are taken
 * in batches per wake-up so a busy actor pays one poll per batch.
 */
#include "runtime/actor.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/frames.h"
#include "runtime/signal.h"
#include "runtime/worker.h"

#define S_BATCH               256 /* messages taken per socket per wake-up */
#define S_SWEEP_MS            100 /* how often unanswered requests are checked */
#define S_UNANSWERED_GRACE_MS 1000

/* A request lives from intake until its owner's one ain_request_reply*
 * call. The skeleton may answer it first (its deadline is long past, the
 * actor broke or stops): the reply goes out, the request moves from `held`
 * to `orphans` and stays allocated, so the handler that still holds it
 * finds it answered (ain_request_answered) and its late reply only frees
 * it. Nothing ever frees a request under the handler holding it. */
struct _ain_request_t {
    ain_actor_t *actor;
    ain_work_t work; /* address and envelope bytes; env.body points into it */
    ain_envelope_t env;
    bool answered; /* by the skeleton, on the handler's behalf */
    ain_request_t *prev, *next;
};

typedef struct s_timer_t {
    ain_actor_t *actor;
    ain_timer_fn *fn;
    void *arg;
    bool repeat;
    int id;
    struct s_timer_t *prev, *next;
} s_timer_t;

typedef struct {
    int id; /* 0 = free */
    int fd;
    void *socket; /* a ZeroMQ socket instead of fd (ain_actor_watch_socket) */
    short events;
    bool urgent; /* polled before each request (ain_actor_watch_urgent) */
    ain_fd_fn *fn;
    void *arg;
} s_watch_t;

typedef struct {
    ain_metric_t *requests, *invalid, *expired, *unserved, *unanswered, *busy;
    ain_metric_t *late, *orphans;
    ain_metric_t *outstanding, *reconnects, *busy_us, *rss;
    ain_metric_t *bus_published, *bus_dropped, *bus_received, *bus_invalid;
    ain_metric_t *log_errors, *log_warnings;
    ain_metric_t *status[AIN_STATUS_COUNT];
} s_metrics_t;

struct _ain_actor_t {
    const ain_actor_def_t *def;
    const ain_proc_t *proc;
    zsock_t *pipe;
    void *state;
    ain_log_t *log;
    ain_metrics_t *metrics;
    s_metrics_t m;
    ain_worker_t *worker;
    ain_bus_pub_t *pub;
    ain_bus_sub_t *sub;
    void *timers;
    s_timer_t *timer_list;
    s_watch_t watches[AIN_ACTOR_MAX_WATCHES];
    int nwatches, next_watch_id, nurgent;
    ain_request_t *held;    /* requests handed out and not yet answered */
    ain_request_t *orphans; /* answered by the skeleton, still held by a handler */
    unsigned held_count, orphan_count, credit;
    size_t max_bytes;
    msgpack_sbuffer reply_buf, body_buf;
    msgpack_packer body_pk;
    bool draining, broken, stopped;
    int64_t wall_ms; /* wall clock at the start of the current batch */
    int64_t drain_until;
    int64_t next_sweep;
    char disabled[200]; /* what it cannot do and why (PING says it), "" if nothing */
};

/* ------------------------------------------------------------- accessors */

void *ain_actor_state(const ain_actor_t *self)
{
    return self->state;
}

void ain_actor_set_state(ain_actor_t *self, void *state)
{
    self->state = state;
}

ain_log_t *ain_actor_log(const ain_actor_t *self)
{
    return self->log;
}

ain_metrics_t *ain_actor_metrics(const ain_actor_t *self)
{
    return self->metrics;
}

const ain_proc_t *ain_actor_proc(const ain_actor_t *self)
{
    return self->proc;
}

const char *ain_actor_service(const ain_actor_t *self)
{
    return self->def->service;
}

const ain_envelope_t *ain_request_envelope(const ain_request_t *req)
{
    return &req->env;
}

ain_log_ctx_t ain_request_log_ctx(const ain_request_t *req)
{
    ain_log_ctx_t ctx = {req->env.corr, req->env.user, req->env.trace};
    return ctx;
}

msgpack_packer *ain_actor_body(ain_actor_t *self)
{
    self->body_buf.size = 0;
    return &self->body_pk;
}

/* ------------------------------------------------------------ requests */

static void s_list_remove(ain_request_t **head, ain_request_t *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        *head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void s_list_push(ain_request_t **head, ain_request_t *req)
{
    req->prev = NULL;
    req->next = *head;
    if (*head)
        (*head)->prev = req;
    *head = req;
}

static void s_unlink(ain_actor_t *self, ain_request_t *req)
{
    if (req->answered) {
        s_list_remove(&self->orphans, req);
        self->orphan_count--;
        ain_metric_set(self->m.orphans, self->orphan_count);
    } else {
        s_list_remove(&self->held, req);
        self->held_count--;
        ain_metric_set(self->m.outstanding, self->held_count);
    }
}

static void s_free_request(ain_request_t *req)
{
    zmq_msg_close(&req->work.address);
    zmq_msg_close(&req->work.body);
    free(req);
}

/* Sends the one reply `req` gets. */
static void s_send_reply(ain_actor_t *self, ain_request_t *req, ain_status_t status,
                         const void *body, size_t len)
{
    ain_envelope_t reply;
    ain_envelope_reply_to(&req->env, status, body, len, &reply);
    self->reply_buf.size = 0;
    ain_envelope_pack(&reply, &self->reply_buf);
    ain_worker_reply(self->worker, &req->work, self->reply_buf.data, self->reply_buf.size);
    ain_metric_inc(self->m.status[status < AIN_STATUS_COUNT ? status : AIN_STATUS_ERROR]);
}

void ain_request_reply(ain_request_t *req, ain_status_t status, const void *body, size_t len)
{
    ain_actor_t *self = req->actor;
    if (req->answered)
        ain_metric_inc(self->m.late); /* the skeleton answered it already: only free it */
    else
        s_send_reply(self, req, status, body, len);
    s_unlink(self, req);
    s_free_request(req);
}

bool ain_request_answered(const ain_request_t *req)
{
    return req->answered;
}

/* Answers `req` on its handler's behalf and keeps it, as an orphan, until
 * the handler's own reply call frees it (or the actor ends). */
static void s_orphan(ain_actor_t *self, ain_request_t *req, ain_status_t status,
                     const char *message)
{
    msgpack_packer *pk = ain_actor_body(self);
    msgpack_pack_map(pk, 1);
    ain_mp_pack_kv_str(pk, "message", message);
    s_send_reply(self, req, status, self->body_buf.data, self->body_buf.size);
    s_unlink(self, req);
    req->answered = true;
    s_list_push(&self->orphans, req);
    self->orphan_count++;
    ain_metric_set(self->m.orphans, self->orphan_count);
}

/* Answers every held request with `status` on its handlers' behalf. */
static void s_orphan_all(ain_actor_t *self, ain_status_t status, const char *message)
{
    while (self->held)
        s_orphan(self, self->held, status, message);
}

void ain_request_reply_packed(ain_request_t *req, ain_status_t status)
{
    ain_actor_t *self = req->actor;
    ain_request_reply(req, status, self->body_buf.data, self->body_buf.size);
}

void ain_request_fail(ain_request_t *req, ain_status_t status, const char *message)
{
    msgpack_packer *pk = ain_actor_body(req->actor);
    msgpack_pack_map(pk, 1);
    ain_mp_pack_kv_str(pk, "message", message);
    ain_request_reply_packed(req, status);
}

int ain_actor_unconfigured(ain_actor_t *self, const char *why)
{
    const ain_config_t *cfg = ain_proc_config(ain_actor_proc(self));
    if (strcmp(ain_config_str(cfg, AIN_CFG_NODE_ENV), "production") == 0) {
        ain_error(ain_actor_log(self), "%s", why);
        return -1;
    }
    ain_warn(ain_actor_log(self), "disabled (%s): every request answers UNAVAILABLE", why);
    ain_actor_set_disabled(self, why);
    return 0;
}

void ain_actor_set_disabled(ain_actor_t *self, const char *why)
{
    snprintf(self->disabled, sizeof self->disabled, "%s", why ? why : "");
}

void ain_request_refuse(ain_request_t *req, ain_status_t status, const char *code,
                        const char *message)
{
    msgpack_packer *pk = ain_actor_body(req->actor);
    msgpack_pack_map(pk, 2);
    ain_mp_pack_kv_str(pk, "code", code);
    ain_mp_pack_kv_str(pk, "message", message);
    ain_request_reply_packed(req, status);
}

/* Answers requests held past their deadline plus a grace period: the work
 * they wait for outlived the deadline it was given (or a handler lost
 * them, our bug), but the caller must not wait. The handler keeps its
 * request: its late reply is counted and only frees it. */
static void s_sweep_unanswered(ain_actor_t *self, int64_t now_mono)
{
    if (now_mono < self->next_sweep)
        return;
    self->next_sweep = now_mono + S_SWEEP_MS;
    int64_t wall = ain_clock_wall_ms();
    ain_request_t *req = self->held;
    while (req) {
        ain_request_t *next = req->next;
        if (req->env.deadline_ms + S_UNANSWERED_GRACE_MS < wall) {
            ain_log_ctx_t ctx = ain_request_log_ctx(req);
            ain_log_write(self->log, AIN_LOG_ERROR, &ctx, "request type %u never answered",
                          req->env.type);
            ain_metric_inc(self->m.unanswered);
            s_orphan(self, req, AIN_STATUS_TIMEOUT, "handler did not answer in time");
        }
        req = next;
    }
}

/* --------------------------------------------------------- built-ins */

static void s_pack_identity(ain_actor_t *self, msgpack_packer *pk, int extra)
{
    bool disabled = self->disabled[0] != '\0';
    msgpack_pack_map(pk, 5 + (size_t)extra + disabled);
    if (disabled) /* for GET /health: a readiness check says what does not work */
        ain_mp_pack_kv_str(pk, "disabled", self->disabled);
    ain_mp_pack_kv_str(pk, "service", self->def->service);
    ain_mp_pack_kv_str(pk, "host", ain_proc_host(self->proc));
    ain_mp_pack_kv_u64(pk, "pid", (uint64_t)getpid());
    ain_mp_pack_kv_u64(pk, "instance", ain_proc_instance(self->proc));
    ain_mp_pack_kv_i64(pk, "uptime_ms", ain_proc_uptime_ms(self->proc));
}

static void s_refresh_gauges(ain_actor_t *self)
{
    ain_metric_set(self->m.rss, ain_proc_rss_bytes());
    ain_metric_set(self->m.reconnects, (int64_t)ain_worker_reconnects(self->worker));
    ain_metric_set(self->m.bus_published, (int64_t)ain_bus_pub_sent(self->pub));
    ain_metric_set(self->m.bus_dropped, (int64_t)ain_bus_pub_dropped(self->pub));
    if (self->sub)
        ain_metric_set(self->m.bus_invalid, (int64_t)ain_bus_sub_invalid(self->sub));
    ain_metric_set(self->m.log_errors, (int64_t)ain_log_errors(self->log));
    ain_metric_set(self->m.log_warnings, (int64_t)ain_log_warnings(self->log));
}

/* The STATS body, also published as METRICS_REPORT. */
static void s_pack_stats(ain_actor_t *self, msgpack_packer *pk)
{
    s_refresh_gauges(self);
    s_pack_identity(self, pk, 1);
    ain_mp_pack_str(pk, "metrics");
    ain_metrics_pack(self->metrics, pk);
}

static int s_builtin(ain_actor_t *self, ain_request_t *req)
{
    msgpack_packer *pk = ain_actor_body(self);
    if (req->env.type == AIN_MSG_PING)
        s_pack_identity(self, pk, 0);
    else
        s_pack_stats(self, pk);
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

static ain_handler_fn *s_find_handler(const ain_actor_t *self, uint16_t type)
{
    for (const ain_handler_t *h = self->def->handlers; h && h->fn; h++)
        if (h->type == type)
            return h->fn;
    if (type == AIN_MSG_PING || type == AIN_MSG_STATS)
        return s_builtin;
    return NULL;
}

/* ----------------------------------------------------------- intake */

/* Takes `work` into a request the skeleton holds until it is answered. */
static ain_request_t *s_hold(ain_actor_t *self, ain_work_t *work, const ain_envelope_t *env)
{
    ain_request_t *req = AIN_NEW(ain_request_t);
    req->actor = self;
    req->work = *work;
    req->env = *env;
    s_list_push(&self->held, req);
    self->held_count++;
    ain_metric_set(self->m.outstanding, self->held_count);
    return req;
}

static void s_intake(ain_actor_t *self, ain_work_t *work)
{
    ain_metric_inc(self->m.requests);
    /* What cannot be decoded is answered as UNDECODABLE (its corr is not
     * known); a decoded envelope that is not a valid request keeps its own
     * type and corr, so the caller can match the refusal. */
    ain_envelope_t env = {AIN_MSG_UNDECODABLE, 0, 0, 0, 0, AIN_STATUS_OK, NULL, 0}, decoded;
    const char *why = NULL;
    ain_status_t st = ain_envelope_decode(ain_frame_data(&work->body), zmq_msg_size(&work->body),
                                          self->max_bytes, &decoded, &why);
    if (st == AIN_STATUS_OK) {
        env = decoded;
        st = ain_envelope_check_request(&env, &why);
    }
    ain_request_t *req = s_hold(self, work, &env);
    if (st != AIN_STATUS_OK) {
        ain_metric_inc(self->m.invalid);
        ain_warn(self->log, "invalid request: %s", why);
        ain_request_fail(req, st, why);
        return;
    }

    ain_handler_fn *fn = s_find_handler(self, env.type);
    if (self->held_count > 2 * self->credit) {
        ain_metric_inc(self->m.busy); /* a broker that ignores our credit */
        ain_request_fail(req, AIN_STATUS_BUSY, "actor holds too many requests");
    } else if (env.deadline_ms <= self->wall_ms) {
        ain_metric_inc(self->m.expired);
        ain_request_fail(req, AIN_STATUS_TIMEOUT, "deadline passed before handling");
    } else if (!fn) {
        ain_metric_inc(self->m.unserved);
        ain_request_fail(req, AIN_STATUS_INVALID, "message type not served here");
    } else if (fn(self, req) < 0) {
        ain_error(self->log, "handler for type %u failed: actor is broken", env.type);
        self->broken = true;
    }
}

/* ------------------------------------------------------- bus, timers */

int ain_actor_subscribe(ain_actor_t *self, const char *prefix)
{
    if (!self->sub)
        self->sub = ain_bus_sub_new(self->proc);
    return ain_bus_subscribe(self->sub, prefix);
}

int ain_actor_publish(ain_actor_t *self, const char *topic, const ain_envelope_t *env)
{
    return ain_bus_publish(self->pub, topic, env);
}

static void s_timer_unlink(ain_actor_t *self, s_timer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->timer_list = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

static void s_timer_fire(int timer_id, void *arg)
{
    s_timer_t *t = arg;
    ain_actor_t *self = t->actor;
    ain_timer_fn *fn = t->fn;
    void *fn_arg = t->arg;
    if (!t->repeat) {
        zmq_timers_cancel(self->timers, timer_id);
        s_timer_unlink(self, t);
    }
    fn(self, fn_arg);
}

int ain_actor_timer(ain_actor_t *self, int delay_ms, bool repeat, ain_timer_fn *fn, void *arg)
{
    s_timer_t *t = AIN_NEW(s_timer_t);
    t->actor = self;
    t->fn = fn;
    t->arg = arg;
    t->repeat = repeat;
    t->id = zmq_timers_add(self->timers, (size_t)(delay_ms > 0 ? delay_ms : 1), s_timer_fire, t);
    t->next = self->timer_list;
    if (self->timer_list)
        self->timer_list->prev = t;
    self->timer_list = t;
    return t->id;
}

void ain_actor_timer_cancel(ain_actor_t *self, int timer_id)
{
    for (s_timer_t *t = self->timer_list; t; t = t->next) {
        if (t->id == timer_id) {
            zmq_timers_cancel(self->timers, timer_id);
            s_timer_unlink(self, t);
            return;
        }
    }
}

int ain_actor_watch(ain_actor_t *self, int fd, int events, ain_fd_fn *fn, void *arg)
{
    if (self->nwatches >= AIN_ACTOR_MAX_WATCHES)
        return -1;
    s_watch_t *w = &self->watches[self->nwatches++];
    *w = (s_watch_t){++self->next_watch_id, fd, NULL, (short)events, false, fn, arg};
    return w->id;
}

int ain_actor_watch_socket(ain_actor_t *self, void *socket, ain_fd_fn *fn, void *arg)
{
    if (self->nwatches >= AIN_ACTOR_MAX_WATCHES || !socket)
        return -1;
    s_watch_t *w = &self->watches[self->nwatches++];
    *w = (s_watch_t){++self->next_watch_id, -1, socket, ZMQ_POLLIN, false, fn, arg};
    return w->id;
}

static s_watch_t *s_find_watch(ain_actor_t *self, int id)
{
    for (int i = 0; i < self->nwatches; i++)
        if (self->watches[i].id == id)
            return &self->watches[i];
    return NULL;
}

void ain_actor_watch_set(ain_actor_t *self, int id, int fd, int events)
{
    s_watch_t *w = s_find_watch(self, id);
    if (w && !w->socket) {
        w->fd = fd;
        w->events = (short)events;
    }
}

void ain_actor_unwatch(ain_actor_t *self, int id)
{
    s_watch_t *w = s_find_watch(self, id);
    if (w) {
        self->nurgent -= w->urgent;
        *w = self->watches[--self->nwatches];
    }
}

/* Adds the active watches to the poll set; ids[i] names items[first+i]. */
static int s_add_watches(ain_actor_t *self, zmq_pollitem_t *items, int n, int *ids)
{
    int added = 0;
    for (int i = 0; i < self->nwatches; i++) {
        s_watch_t *w = &self->watches[i];
        if ((w->fd < 0 && !w->socket) || !w->events)
            continue;
        items[n + added] = (zmq_pollitem_t){w->socket, w->socket ? 0 : w->fd, w->events, 0};
        ids[added++] = w->id;
    }
    return added;
}

/* Calls the watches that fired. A callback may add, change or remove
 * watches: each is looked up again by id, and skipped if gone or moved. */
static int s_on_watches(ain_actor_t *self, zmq_pollitem_t *items, int count, const int *ids)
{
    int fired = 0;
    for (int i = 0; i < count; i++) {
        s_watch_t *w = items[i].revents ? s_find_watch(self, ids[i]) : NULL;
        if (!w || w->socket != items[i].socket || (!w->socket && w->fd != items[i].fd))
            continue;
        w->fn(self, w->fd, items[i].revents, w->arg);
        fired++;
    }
    return fired;
}

static void s_report_metrics(ain_actor_t *self, void *arg)
{
    char topic[AIN_TOPIC_MAX];
    if (ain_topic_metrics(topic, sizeof topic, ain_proc_host(self->proc), self->def->service) < 0)
        return;
    msgpack_packer *pk = ain_actor_body(self);
    s_pack_stats(self, pk);
    ain_envelope_t env = {
        AIN_MSG_METRICS_REPORT, 0, 0, 0, 0, AIN_STATUS_OK, (const uint8_t *)self->body_buf.data,
        self->body_buf.size};
    ain_actor_publish(self, topic, &env);
}

/* ------------------------------------------------------------ set-up */

static void s_register_metrics(ain_actor_t *self)
{
    ain_metrics_t *r = self->metrics;
    self->m.requests = ain_metrics_counter(r, "requests");
    self->m.invalid = ain_metrics_counter(r, "requests.invalid");
    self->m.expired = ain_metrics_counter(r, "requests.expired");
    self->m.unserved = ain_metrics_counter(r, "requests.unserved");
    self->m.unanswered = ain_metrics_counter(r, "requests.unanswered");
    self->m.busy = ain_metrics_counter(r, "requests.busy");
    self->m.late = ain_metrics_counter(r, "requests.late");
    self->m.orphans = ain_metrics_gauge(r, "requests.orphans");
    self->m.outstanding = ain_metrics_gauge(r, "requests.outstanding");
    self->m.busy_us = ain_metrics_counter(r, "busy.us");
    self->m.reconnects = ain_metrics_gauge(r, "worker.reconnects");
    self->m.rss = ain_metrics_gauge(r, "process.rss_bytes");
    self->m.bus_published = ain_metrics_gauge(r, "bus.published");
    self->m.bus_dropped = ain_metrics_gauge(r, "bus.dropped");
    self->m.bus_received = ain_metrics_counter(r, "bus.received");
    self->m.bus_invalid = ain_metrics_gauge(r, "bus.invalid");
    self->m.log_errors = ain_metrics_gauge(r, "log.errors");
    self->m.log_warnings = ain_metrics_gauge(r, "log.warnings");
    for (int s = 0; s < AIN_STATUS_COUNT; s++) {
        char name[AIN_METRIC_NAME_MAX] = "replies.";
        size_t n = strlen(name);
        for (const char *p = ain_status_name(s); *p && n < sizeof name - 1; p++)
            name[n++] = (char)tolower((unsigned char)*p);
        name[n] = '\0';
        self->m.status[s] = ain_metrics_counter(r, name);
    }
}

static ain_actor_t *s_new(const ain_actor_def_t *def, const ain_proc_t *proc, zsock_t *pipe)
{
    const ain_config_t *cfg = ain_proc_config(proc);
    ain_actor_t *self = AIN_NEW(ain_actor_t);
    self->def = def;
    self->proc = proc;
    self->pipe = pipe;
    self->log = ain_proc_logger(proc, def->service);
    self->metrics = ain_metrics_new();
    s_register_metrics(self);
    self->credit =
        def->credit ? def->credit : (unsigned)ain_config_int(cfg, AIN_CFG_AINBOX_WORKER_CREDIT);
    self->max_bytes = (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_MSG_MAX_BYTES);
    self->timers = zmq_timers_new();
    self->pub = ain_bus_pub_new(proc);
    msgpack_sbuffer_init(&self->reply_buf);
    msgpack_sbuffer_init(&self->body_buf);
    msgpack_packer_init(&self->body_pk, &self->body_buf, msgpack_sbuffer_write);
    return self;
}

static void s_destroy(ain_actor_t **self_p)
{
    ain_actor_t *self = *self_p;
    s_orphan_all(self, AIN_STATUS_UNAVAILABLE, "actor stopped");
    /* The handlers are gone (def->stop ran): nobody holds an orphan now. */
    while (self->orphans) {
        ain_request_t *req = self->orphans;
        s_unlink(self, req);
        s_free_request(req);
    }
    ain_worker_destroy(&self->worker);
    while (self->timer_list)
        s_timer_unlink(self, self->timer_list);
    zmq_timers_destroy(&self->timers);
    ain_bus_sub_destroy(&self->sub);
    ain_bus_pub_destroy(&self->pub);
    msgpack_sbuffer_destroy(&self->reply_buf);
    msgpack_sbuffer_destroy(&self->body_buf);
    ain_metrics_destroy(&self->metrics);
    ain_log_destroy(&self->log);
    free(self);
    *self_p = NULL;
}

/* ------------------------------------------------------------- loop */

static void s_begin_drain(ain_actor_t *self)
{
    if (self->draining)
        return;
    self->draining = true;
    long timeout = ain_config_int(ain_proc_config(self->proc), AIN_CFG_AINBOX_SHUTDOWN_TIMEOUT_MS);
    self->drain_until = ain_clock_mono_ms() + timeout;
    ain_worker_set_credit(self->worker, 0);
    ain_info(self->log, "stopping: finishing %u requests in flight", self->held_count);
}

static void s_on_pipe(ain_actor_t *self)
{
    char *command = zstr_recv(self->pipe);
    if (!command || strcmp(command, "$TERM") == 0)
        s_begin_drain(self);
    zstr_free(&command);
}

/* Each handler below takes a batch and returns how many it took. */
void ain_actor_watch_urgent(ain_actor_t *self, int id, bool urgent)
{
    s_watch_t *w = s_find_watch(self, id);
    if (w)
        w->urgent = urgent;
    self->nurgent = 0;
    for (int i = 0; i < self->nwatches; i++)
        self->nurgent += self->watches[i].urgent;
}

/* True if an urgent watch is ready now (one poll(2), no wait). */
static bool s_urgent_ready(const ain_actor_t *self)
{
    struct pollfd fds[AIN_ACTOR_MAX_WATCHES];
    nfds_t n = 0;
    for (int i = 0; i < self->nwatches; i++) {
        const s_watch_t *w = &self->watches[i];
        if (w->urgent && !w->socket && w->fd >= 0 && w->events)
            fds[n++] = (struct pollfd){w->fd,
                                       (short)(((w->events & ZMQ_POLLIN) ? POLLIN : 0) |
                                               ((w->events & ZMQ_POLLOUT) ? POLLOUT : 0)),
                                       0};
    }
    return n > 0 && poll(fds, n, 0) > 0;
}

/* Takes a batch of requests. With urgent watches, the batch stops as soon
 * as one is ready: whatever reached an urgent descriptor before a request
 * reached the broker socket is handled before that request (the cache
 * relies on this: an invalidation delivered before a read is applied
 * before the read). */
static int s_on_worker(ain_actor_t *self)
{
    int i = 0;
    int64_t t0 = ain_clock_mono_us();
    self->wall_ms = ain_clock_wall_ms(); /* read once per batch, not per request */
    for (; i < S_BATCH && !self->broken; i++) {
        ain_work_t work;
        if (self->nurgent > 0 && s_urgent_ready(self))
            break;
        int rc = ain_worker_recv(self->worker, &work);
        if (rc < 0)
            break;
        if (rc == 1)
            s_intake(self, &work);
    }
    if (i > 0)
        ain_metric_add(self->m.busy_us, ain_clock_mono_us() - t0);
    return i;
}

static int s_on_bus(ain_actor_t *self)
{
    int i = 0;
    for (; i < S_BATCH && !self->broken; i++) {
        ain_bus_msg_t msg;
        int rc = ain_bus_recv(self->sub, &msg);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        ain_metric_inc(self->m.bus_received);
        if (self->def->on_event && self->def->on_event(self, &msg) < 0) {
            ain_error(self->log, "bus event handler failed: actor is broken");
            self->broken = true;
        }
        ain_bus_msg_close(&msg);
    }
    return i;
}

/* Milliseconds until the loop must wake up anyway. */
static long s_timeout(ain_actor_t *self, int worker_ms)
{
    long t = worker_ms;
    long timers = zmq_timers_timeout(self->timers);
    if (timers >= 0 && timers < t)
        t = timers;
    if (self->held && t > S_SWEEP_MS)
        t = S_SWEEP_MS;
    if (!self->pipe && t > 100)
        t = 100; /* signals interrupt poll, but not if they land in another thread */
    return t < 0 ? 0 : t;
}

static bool s_should_stop(ain_actor_t *self)
{
    if (!self->pipe && ain_signal_stop_requested())
        s_begin_drain(self);
    if (!self->draining)
        return false;
    if (self->held_count == 0)
        return true;
    if (ain_clock_mono_ms() >= self->drain_until) {
        ain_warn(self->log, "stop timeout: %u requests still in flight get UNAVAILABLE",
                 self->held_count);
        return true;
    }
    return false;
}

/* Blocks in zmq_poll only when the last pass found nothing to do; a busy
 * actor re-reads its sockets at once (no system call when empty). */
/* Blocks in zmq_poll only when the last pass found nothing to do; a busy
 * actor re-reads its sockets at once (no system call when empty), or, if
 * it watches descriptors, polls them without waiting. */
static int s_wait(ain_actor_t *self, zmq_pollitem_t *items, int n, bool busy, int worker_ms)
{
    if (busy && self->nwatches == 0) {
        for (int i = 0; i < n; i++)
            items[i].revents = ain_socket_readable(items[i].socket) ? ZMQ_POLLIN : 0;
        return 0;
    }
    if (zmq_poll(items, n, busy ? 0 : s_timeout(self, worker_ms)) < 0 && errno != EINTR) {
        ain_error(self->log, "poll failed: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int s_loop(ain_actor_t *self)
{
    int worker_ms = ain_worker_tick(self->worker);
    bool busy = false;
    while (!self->broken && !s_should_stop(self)) {
        zmq_pollitem_t items[3 + AIN_ACTOR_MAX_WATCHES];
        int ids[AIN_ACTOR_MAX_WATCHES];
        int n = 0, i_pipe = -1, i_worker, i_sub = -1;
        if (self->pipe) {
            items[n] = (zmq_pollitem_t){zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0};
            i_pipe = n++;
        }
        items[n] = (zmq_pollitem_t){ain_worker_socket(self->worker), 0, ZMQ_POLLIN, 0};
        i_worker = n++;
        if (self->sub) {
            items[n] = (zmq_pollitem_t){ain_bus_sub_socket(self->sub), 0, ZMQ_POLLIN, 0};
            i_sub = n++;
        }
        int first_watch = n;
        n += s_add_watches(self, items, n, ids);
        if (s_wait(self, items, n, busy, worker_ms) < 0)
            return -1;
        int work = s_on_watches(self, items + first_watch, n - first_watch, ids);
        if (i_pipe >= 0 && (items[i_pipe].revents & ZMQ_POLLIN))
            s_on_pipe(self);
        if (items[i_worker].revents & ZMQ_POLLIN)
            work += s_on_worker(self);
        if (i_sub >= 0 && (items[i_sub].revents & ZMQ_POLLIN))
            work += s_on_bus(self);
        busy = work > 0;
        if (zmq_timers_timeout(self->timers) == 0)
            zmq_timers_execute(self->timers);
        worker_ms = ain_worker_tick(self->worker);
        s_sweep_unanswered(self, ain_clock_mono_ms());
    }
    return self->broken ? -1 : 0;
}

int ain_actor_run(const ain_actor_def_t *def, const ain_proc_t *proc, zsock_t *pipe)
{
    ain_actor_t *self = s_new(def, proc, pipe);
    if (def->start && def->start(self) < 0) {
        ain_error(self->log, "failed to start");
        s_destroy(&self);
        return -1;
    }
    const ain_config_t *cfg = ain_proc_config(proc);
    if (ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING))
        ain_actor_timer(self, (int)ain_config_int(cfg, AIN_CFG_AINBOX_METRICS_INTERVAL_MS), true,
                        s_report_metrics, NULL);
    self->worker = ain_worker_new(proc, def->service, self->credit, self->log);
    ain_info(self->log, "started: instance %" PRIu64 ", broker %s, credit %u",
             ain_proc_instance(proc), ain_proc_broker(proc), self->credit);
    if (pipe)
        zsock_signal(pipe, 0);
    int rc = s_loop(self);
    if (rc < 0)
        s_orphan_all(self, AIN_STATUS_UNAVAILABLE, "actor failed");
    if (def->stop)
        def->stop(self);
    ain_info(self->log, rc < 0 ? "stopped after a failure" : "stopped");
    s_destroy(&self);
    return rc;
}
