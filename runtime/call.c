/* call.c: an actor's asynchronous requests to other services (call.h).
 *
 * One MDP client per owner, its DEALER socket watched by the actor's loop.
 * Pending calls live in a hash keyed by the envelope's correlation id: a
 * reply finds its call there or nowhere (ended, cancelled: dropped and
 * counted), so a late answer can never reach a freed argument. A timer
 * sweeps the calls past their deadline (TIMEOUT) and resends those the
 * broker could not take yet (ZMQ_IMMEDIATE: a send fails while no broker
 * is connected; like ain_client_call, we retry until the deadline rather
 * than fail at once, so a restarted broker is picked up). A callback
 * never runs inside ain_call: the caller's state is never re-entered.
 */
#include "runtime/call.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mdp.h"
#include "runtime/alloc.h"
#include "runtime/client.h"
#include "runtime/clock.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "runtime/proc.h"

#define S_SWEEP_MS    20
#define S_PENDING_DEF 4096
#define S_DRAIN_BATCH 256 /* replies taken per wake, so a flood cannot starve the loop */

typedef struct {
    uint64_t corr;
    char service[AIN_SERVICE_NAME_MAX + 1];
    uint16_t type;
    uint64_t user;
    int64_t deadline_ms;
    ain_call_fn *cb;
    void *arg;
    void *unsent; /* a copy of the body while the broker could not take it */
    size_t unsent_len;
} s_call_t;

struct _ain_calls_t {
    ain_actor_t *actor;
    ain_client_t *client;
    zhashx_t *calls; /* corr -> s_call_t */
    size_t max_pending;
    size_t unsent;
    uint64_t next_corr;
    int watch, timer;
    ain_metric_t *m_sent, *m_timeouts, *m_unavailable, *m_stray, *m_refused;
};

static size_t s_hash(const void *key)
{
    uint64_t k = (uint64_t)(uintptr_t)key;
    return (size_t)(k * 0x9e3779b97f4a7c15ULL >> 17);
}

static int s_compare(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void s_call_free(s_call_t *call)
{
    free(call->unsent);
    free(call);
}

/* Removes `call` from the table and runs its callback (once). */
static void s_finish(ain_calls_t *self, s_call_t *call, ain_status_t status,
                     const ain_envelope_t *reply)
{
    zhashx_delete(self->calls, (void *)(uintptr_t)call->corr);
    if (call->unsent)
        self->unsent--;
    call->cb(status, reply, call->arg);
    s_call_free(call);
}

static int s_send(ain_calls_t *self, s_call_t *call, const void *body, size_t len)
{
    ain_envelope_t env = {call->type, call->corr,    call->user, call->deadline_ms,
                          0,          AIN_STATUS_OK, body,       len};
    return ain_client_send(self->client, call->service, &env);
}

static void s_on_socket(ain_actor_t *actor, int fd, int revents, void *arg)
{
    ain_calls_t *self = arg;
    (void)actor;
    (void)fd;
    (void)revents;
    for (int i = 0; i < S_DRAIN_BATCH; i++) {
        ain_reply_t reply;
        if (ain_client_recv(self->client, &reply, 0) != 1)
            return;
        s_call_t *call = zhashx_lookup(self->calls, (void *)(uintptr_t)reply.env.corr);
        if (call)
            s_finish(self, call, reply.env.status, &reply.env);
        else
            ain_metric_inc(self->m_stray); /* its call ended: nobody waits for it */
        ain_reply_close(&reply);
    }
}

static void s_sweep(ain_actor_t *actor, void *arg)
{
    ain_calls_t *self = arg;
    (void)actor;
    if (zhashx_size(self->calls) == 0)
        return;
    int64_t now = ain_clock_wall_ms();
    /* Collect first: callbacks may add or cancel calls. */
    uint64_t due[64];
    size_t ndue = 0;
    for (s_call_t *c = zhashx_first(self->calls); c && ndue < 64; c = zhashx_next(self->calls)) {
        if (c->deadline_ms <= now) {
            due[ndue++] = c->corr;
        } else if (c->unsent && s_send(self, c, c->unsent, c->unsent_len) == 0) {
            free(c->unsent);
            c->unsent = NULL;
            self->unsent--;
            ain_metric_inc(self->m_sent);
        }
    }
    for (size_t i = 0; i < ndue; i++) {
        s_call_t *c = zhashx_lookup(self->calls, (void *)(uintptr_t)due[i]);
        if (!c)
            continue;
        bool never_sent = c->unsent != NULL;
        ain_metric_inc(never_sent ? self->m_unavailable : self->m_timeouts);
        s_finish(self, c, never_sent ? AIN_STATUS_UNAVAILABLE : AIN_STATUS_TIMEOUT, NULL);
    }
}

ain_calls_t *ain_calls_new(ain_actor_t *actor, size_t max_pending)
{
    const ain_proc_t *proc = ain_actor_proc(actor);
    ain_client_t *client =
        ain_client_new(ain_proc_zmq(proc), ain_proc_broker(proc), ain_proc_config(proc));
    if (!client)
        return NULL;
    ain_calls_t *self = AIN_NEW(ain_calls_t);
    self->actor = actor;
    self->client = client;
    self->max_pending = max_pending ? max_pending : S_PENDING_DEF;
    self->next_corr = (ain_random_u64() >> 20) + 1;
    self->calls = zhashx_new();
    zhashx_set_key_hasher(self->calls, s_hash);
    zhashx_set_key_comparator(self->calls, s_compare);
    zhashx_set_key_duplicator(self->calls, NULL);
    zhashx_set_key_destructor(self->calls, NULL);
    ain_metrics_t *m = ain_actor_metrics(actor);
    self->m_sent = ain_metrics_counter(m, "calls.sent");
    self->m_timeouts = ain_metrics_counter(m, "calls.timeouts");
    self->m_unavailable = ain_metrics_counter(m, "calls.unavailable");
    self->m_stray = ain_metrics_counter(m, "calls.stray_replies");
    self->m_refused = ain_metrics_counter(m, "calls.refused");
    self->watch = ain_actor_watch_socket(actor, ain_client_socket(client), s_on_socket, self);
    self->timer = ain_actor_timer(actor, S_SWEEP_MS, true, s_sweep, self);
    if (self->watch < 0 || self->timer <= 0) {
        ain_calls_destroy(&self);
        return NULL;
    }
    return self;
}

void ain_calls_destroy(ain_calls_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_calls_t *self = *self_p;
    if (self->watch > 0)
        ain_actor_unwatch(self->actor, self->watch);
    if (self->timer > 0)
        ain_actor_timer_cancel(self->actor, self->timer);
    for (s_call_t *c = zhashx_first(self->calls); c; c = zhashx_next(self->calls))
        s_call_free(c);
    zhashx_destroy(&self->calls);
    ain_client_destroy(&self->client);
    free(self);
    *self_p = NULL;
}

uint64_t ain_call(ain_calls_t *self, const char *service, uint16_t type, uint64_t user,
                  const void *body, size_t len, int64_t deadline_ms, ain_call_fn *cb, void *arg)
{
    size_t slen = service ? strlen(service) : 0;
    if (!cb || slen == 0 || slen > AIN_SERVICE_NAME_MAX ||
        zhashx_size(self->calls) >= self->max_pending) {
        ain_metric_inc(self->m_refused);
        return 0;
    }
    if (deadline_ms <= 0) {
        const ain_config_t *cfg = ain_proc_config(ain_actor_proc(self->actor));
        deadline_ms = ain_clock_wall_ms() + ain_config_int(cfg, AIN_CFG_AINBOX_REQUEST_TIMEOUT_MS);
    }
    s_call_t *call = AIN_NEW(s_call_t);
    call->corr = self->next_corr++;
    memcpy(call->service, service, slen + 1);
    call->type = type;
    call->user = user;
    call->deadline_ms = deadline_ms;
    call->cb = cb;
    call->arg = arg;
    zhashx_insert(self->calls, (void *)(uintptr_t)call->corr, call);
    if (s_send(self, call, body, len) == 0) {
        ain_metric_inc(self->m_sent);
    } else {
        /* No broker connected right now: the sweep resends until the deadline. */
        call->unsent = ain_malloc(len ? len : 1);
        if (len)
            memcpy(call->unsent, body, len);
        call->unsent_len = len;
        self->unsent++;
    }
    return call->corr;
}

void ain_call_cancel(ain_calls_t *self, uint64_t id)
{
    s_call_t *call = zhashx_lookup(self->calls, (void *)(uintptr_t)id);
    if (!call)
        return;
    zhashx_delete(self->calls, (void *)(uintptr_t)id);
    if (call->unsent)
        self->unsent--;
    s_call_free(call);
}

size_t ain_calls_pending(const ain_calls_t *self)
{
    return zhashx_size(self->calls);
}
