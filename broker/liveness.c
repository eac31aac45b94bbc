/* liveness.c: knowing when a worker is gone, and expiring requests.
 *
 * Three signals, fastest first:
 *   - DISCONNECT from the worker (an orderly stop, or an actor thread that
 *     failed): handled in broker.c at once;
 *   - the router's socket monitor reports a tcp connection closed (a worker
 *     process that died: the kernel closes its sockets). The event names a
 *     file descriptor; workers remember theirs (ZMQ_SRCFD) at READY. Since a
 *     number can be reused by a new connection before the event is read, the
 *     broker confirms by probing: a send to the worker's routing id fails
 *     with EHOSTUNREACH once libzmq has dropped the peer. A worker that still
 *     answers the probe stays, re-probed for a short window;
 *   - silence for AINBOX_HEARTBEAT_LIVENESS heartbeats (a host cut off or a
 *     frozen process), checked every tick. Whose heartbeats: RFC 7 does not
 *     negotiate the interval, and its reference peers beat every 2.5 s (3
 *     to 3.5 s in practice) where ours beat every AINBOX_HEARTBEAT_MS. Our
 *     workers state theirs at READY; for a plain MDP worker the broker
 *     assumes the reference interval until it has seen the worker's own
 *     rhythm (the longest gap before one of its HEARTBEATs), and uses
 *     that. Never less than ours; a learned one never more than S_LEARNED_MAX_MS.
 * Each tick also answers TIMEOUT for queued requests past their deadline,
 * and for in-flight ones well past it (a worker that never answers).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/frames.h"

#define S_SUSPECT_MS       100   /* how long a disconnect-suspect is re-probed */
#define S_REPROBE_MS       2     /* how often, meanwhile */
#define S_ABANDON_GRACE_MS 1000  /* in-flight past deadline + this: TIMEOUT */
#define S_SERVICE_IDLE_MS  60000 /* services with nothing for this long go */
/* The longest heartbeat interval learned from a plain MDP worker: four
 * times the reference peers' 2.5 s; a peer beating slower than this is
 * dead after liveness x 10 s of silence whatever its rhythm. */
#define S_LEARNED_MAX_MS 10000

int ain__liveness_start(ain_broker_t *self)
{
    snprintf(self->monitor_endpoint, sizeof self->monitor_endpoint, "inproc://ain-monitor-%p",
             (void *)self);
    if (zmq_socket_monitor(self->router, self->monitor_endpoint, ZMQ_EVENT_DISCONNECTED) < 0)
        return -1;
    self->monitor = zmq_socket(ain_proc_zmq(self->proc), ZMQ_PAIR);
    ain_socket_set(self->monitor, ZMQ_LINGER, 0);
    return zmq_connect(self->monitor, self->monitor_endpoint);
}

void ain__liveness_stop(ain_broker_t *self)
{
    zmq_socket_monitor(self->router, NULL, 0);
    zmq_close(self->monitor);
    self->monitor = NULL;
}

int64_t ain__liveness_window(const ain_broker_t *self, const ain__worker_t *w)
{
    int64_t interval = w->rhythm_ms;
    if (interval == 0) /* not stated, not seen yet */
        interval = w->native ? self->heartbeat_ms : AIN_MDP_RFC7_HEARTBEAT_MS;
    if (interval < self->heartbeat_ms)
        interval = self->heartbeat_ms;
    return interval * self->liveness;
}

void ain__liveness_heard(ain_broker_t *self, ain__worker_t *w, bool heartbeat)
{
    int64_t now = self->now_ms;
    /* A worker sends HEARTBEAT when it has been quiet for its interval, so
     * the gap before one is (at least) that interval. The longest such gap
     * is kept: a worker whose replies came fast is still allowed its
     * idle rhythm afterwards. A native worker's stated interval stands. */
    if (heartbeat && !w->native && w->heard_ms > 0) {
        int64_t gap = now - w->heard_ms;
        if (gap > S_LEARNED_MAX_MS)
            gap = S_LEARNED_MAX_MS;
        if (gap > w->rhythm_ms)
            w->rhythm_ms = gap;
    }
    w->heard_ms = now;
    w->expiry_ms = now + ain__liveness_window(self, w);
}

/* Sends a HEARTBEAT as a probe. Returns false if the peer is gone. */
static bool s_probe(ain_broker_t *self, ain__worker_t *w)
{
    uint8_t cmd = AIN_MDPW_HEARTBEAT;
    if (ain_send_bytes(self->router, w->id, w->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return errno != EHOSTUNREACH;
    ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
    ain_send_bytes(self->router, AIN_MDPW, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
    ain_send_bytes(self->router, &cmd, 1, 0);
    return true;
}

/* The workers using `fd` (all workers if fd < 0), collected first because
 * removing a worker while iterating the registry is not allowed. Returns a
 * malloc'ed array the caller frees, and its length in *n. */
static ain__worker_t **s_collect(ain_broker_t *self, int fd, int *n)
{
    size_t size = zhashx_size(self->services.workers);
    ain__worker_t **out = ain_calloc(size + 1, sizeof *out);
    *n = 0;
    for (ain__worker_t *w = zhashx_first(self->services.workers); w;
         w = zhashx_next(self->services.workers))
        if (fd < 0 || w->fd == fd)
            out[(*n)++] = w;
    return out;
}

void ain__liveness_on_monitor(ain_broker_t *self)
{
    for (;;) {
        ain_frames_t f;
        if (ain_frames_recv(&f, self->monitor, ZMQ_DONTWAIT) < 0)
            return;
        uint16_t event = 0;
        int32_t fd = -1;
        if (f.count == 2 && ain_frame_size(&f.part[0]) == 6) {
            memcpy(&event, ain_frame_data(&f.part[0]), 2);
            memcpy(&fd, (const uint8_t *)ain_frame_data(&f.part[0]) + 2, 4);
        }
        ain_frames_close(&f);
        if (event != ZMQ_EVENT_DISCONNECTED || fd < 0)
            continue;
        int n;
        ain__worker_t **victims = s_collect(self, fd, &n);
        int64_t now = self->now_ms;
        for (int i = 0; i < n; i++) {
            if (!s_probe(self, victims[i])) {
                ain_metric_inc(self->m.workers_dead_fast);
                ain__broker_worker_gone(self, victims[i], "connection closed");
            } else {
                /* libzmq may not have dropped the peer yet: look again soon. */
                victims[i]->suspect_until_ms = now + S_SUSPECT_MS;
                self->next_tick_ms = now + S_REPROBE_MS;
            }
        }
        free(victims);
    }
}

/* Heartbeats, expiry and probes of suspects. Returns how many suspects
 * are still being watched. */
static int s_check_workers(ain_broker_t *self, int64_t now)
{
    int n, suspects = 0;
    ain__worker_t **all = s_collect(self, -1, &n);
    for (int i = 0; i < n; i++) {
        ain__worker_t *w = all[i];
        if (now >= w->expiry_ms) {
            ain_metric_inc(self->m.workers_expired);
            ain__broker_worker_gone(self, w, "silent for too many heartbeats");
        } else if (w->suspect_until_ms > now && !s_probe(self, w)) {
            ain_metric_inc(self->m.workers_dead_fast);
            ain__broker_worker_gone(self, w, "connection closed");
        } else {
            suspects += w->suspect_until_ms > now;
            if (now >= w->next_heartbeat_ms)
                ain__broker_send_command(self, w, AIN_MDPW_HEARTBEAT);
        }
    }
    free(all);
    return suspects;
}

static bool s_keep_unexpired(uint32_t index, void *arg)
{
    ain_broker_t *self = arg;
    ain__request_t *r = ain__requests_get(&self->requests, index);
    if (r->deadline_ms > self->wall_ms)
        return true;
    r->service->expired++;
    ain_metric_inc(self->m.expired);
    ain__broker_reply_status(self, index, AIN_STATUS_TIMEOUT, "deadline passed in queue");
    return false;
}

static void s_expire(ain_broker_t *self)
{
    int64_t wall = self->wall_ms;
    for (ain__service_t *svc = zhashx_first(self->services.services); svc;
         svc = zhashx_next(self->services.services))
        ain__queue_filter(svc, s_keep_unexpired, self);
    for (ain__worker_t *w = zhashx_first(self->services.workers); w;
         w = zhashx_next(self->services.workers)) {
        uint32_t index = w->inflight_head;
        while (index != AIN__NO_SLOT) {
            ain__request_t *r = ain__requests_get(&self->requests, index);
            uint32_t next = r->wnext;
            if (r->deadline_ms + S_ABANDON_GRACE_MS < wall) {
                r->service->expired++;
                ain_metric_inc(self->m.expired);
                ain__broker_reply_status(self, index, AIN_STATUS_TIMEOUT,
                                         "worker did not answer by the deadline");
            }
            index = next;
        }
    }
    /* Abandoned requests gave credit back: use it. */
    for (ain__service_t *svc = zhashx_first(self->services.services); svc;
         svc = zhashx_next(self->services.services))
        ain__broker_dispatch(self, svc);
}

int ain__liveness_tick(ain_broker_t *self, int64_t now)
{
    int suspects = s_check_workers(self, now);
    s_expire(self);
    if (now >= self->next_gc_ms) {
        ain__services_gc(&self->services, now, S_SERVICE_IDLE_MS);
        self->last_service = NULL; /* it may have been one of those freed */
        self->next_gc_ms = now + S_SERVICE_IDLE_MS / 10;
    }
    return suspects ? S_REPROBE_MS : 0;
}
