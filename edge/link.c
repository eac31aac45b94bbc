/* link.c: the stream pump's watch on the edge's links to its broker.
 *
 * Two questions, answered on the pump thread without ever blocking it:
 *
 * Can requests reach the broker? Every heartbeat interval the pump PINGs
 * the broker on its own MDP client (the same endpoint as every civetweb
 * thread's). With no answer for S_SILENT intervals the broker counts as
 * unreachable: edge->broker_down is set, which gates every thread's client
 * (ain_client_set_gate), so requests are refused at once with a 503 that
 * says why, instead of each waiting for its deadline and blaming the
 * service it asked (issue 13). The next answer clears it.
 *
 * Did the bus lose events? The broker publishes BUS_BEAT {epoch, seq} on
 * topic h/ every interval (broker/bus.c). A beat after a gap in seq, from
 * another epoch (a broker restart), after the SUB socket's monitor saw its
 * connection close, or after S_SILENT intervals of silence (a partition
 * sends no reset) means events may be lost: catchup.c then fetches them
 * from the event log. Silence also sets bus.link_up to 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/client.h"
#include "runtime/clock.h"
#include "runtime/frames.h"

#define S_SILENT 3 /* heartbeat intervals without an answer: the link is down */

struct ain__link {
    ain_edge_t *edge;
    ain__streams_t *streams;
    ain__catchup_t *catchup;
    ain_client_t *client;
    void *monitor; /* PAIR: the SUB socket's monitor events */
    ain_metric_t *link_up, *link_lost, *broker_up;
    int64_t interval_ms;
    /* the bus beat */
    bool have, dropped, silent;
    uint64_t epoch, seq;
    int64_t last_beat_ms;   /* monotonic */
    int64_t last_good_wall; /* wall clock of the last beat in sequence */
    /* the MDP ping */
    uint64_t ping_corr; /* 0: none out */
    int64_t ping_sent_ms, last_pong_ms, next_ping_ms;
};

ain__link_t *ain__link_new(ain_edge_t *edge, ain__streams_t *streams, void *sub,
                           const ain__catchup_metrics_t *cm)
{
    const ain_proc_t *proc = edge->proc;
    const ain_config_t *cfg = ain_proc_config(proc);
    ain__link_t *self = AIN_NEW(ain__link_t);
    self->edge = edge;
    self->streams = streams;
    self->interval_ms = ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS);
    self->link_up = cm->link_up;
    self->link_lost = cm->link_lost;
    self->broker_up = cm->broker_up;
    self->client = ain_client_new(ain_proc_zmq(proc), ain_proc_broker(proc), cfg);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://ain-edge-bus-monitor-%p", (void *)self);
    if (zmq_socket_monitor(sub, endpoint, ZMQ_EVENT_DISCONNECTED) == 0) {
        self->monitor = zmq_socket(ain_proc_zmq(proc), ZMQ_PAIR);
        if (zmq_connect(self->monitor, endpoint) != 0) {
            zmq_close(self->monitor);
            self->monitor = NULL;
        }
    }
    if (!self->client || !self->monitor)
        ain_warn(edge->log, "stream pump: %s: broker losses go unnoticed",
                 !self->client ? "no broker client" : "no bus socket monitor");
    if (self->client)
        self->catchup = ain__catchup_new(edge, streams, self->client, cm);
    self->last_pong_ms = ain_clock_mono_ms(); /* reachable until shown otherwise */
    ain_metric_set(self->link_up, 1);
    ain_metric_set(self->broker_up, 1);
    return self;
}

void ain__link_destroy(ain__link_t **self_p, void *sub)
{
    ain__link_t *self = *self_p;
    if (!self)
        return;
    if (self->monitor) {
        zmq_socket_monitor(sub, NULL, 0);
        zmq_close(self->monitor);
    }
    atomic_store(&self->edge->broker_down, false);
    ain__catchup_destroy(&self->catchup);
    ain_client_destroy(&self->client);
    free(self);
    *self_p = NULL;
}

void *ain__link_client_socket(const ain__link_t *self)
{
    return self->client ? ain_client_socket(self->client) : NULL;
}

void *ain__link_monitor_socket(const ain__link_t *self)
{
    return self->monitor;
}

/* ------------------------------------------------------------ the bus beat */

void ain__link_on_beat(ain__link_t *self, const ain_envelope_t *env, int64_t now)
{
    ain_body_t body;
    uint64_t epoch, seq;
    bool ok = env->type == AIN_MSG_BUS_BEAT &&
              ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK;
    if (ok) {
        ok = ain_mp_get_u64(body.root, "epoch", &epoch) == 1 &&
             ain_mp_get_u64(body.root, "seq", &seq) == 1;
        ain_body_release(&body);
    }
    if (!ok)
        return;
    bool lost = self->have &&
                (self->dropped || self->silent || epoch != self->epoch || seq != self->seq + 1);
    if (self->silent)
        ain_info(self->edge->log, "bus link back after %" PRId64 " ms", now - self->last_beat_ms);
    self->have = true;
    self->dropped = self->silent = false;
    self->epoch = epoch;
    self->seq = seq;
    self->last_beat_ms = now;
    ain_metric_set(self->link_up, 1);
    if (!lost) {
        ain__streams_beat(self->streams);
        self->last_good_wall = ain_clock_wall_ms();
    } else if (self->catchup) {
        ain_metric_inc(self->link_lost);
        ain__catchup_start(self->catchup, (uint64_t)(self->last_good_wall - self->interval_ms));
    }
}

void ain__link_on_monitor(ain__link_t *self)
{
    for (;;) {
        ain_frames_t f;
        if (ain_frames_recv(&f, self->monitor, ZMQ_DONTWAIT) < 0)
            return;
        uint16_t event = 0;
        if (f.count == 2 && ain_frame_size(&f.part[0]) == 6)
            memcpy(&event, ain_frame_data(&f.part[0]), 2);
        ain_frames_close(&f);
        if (event == ZMQ_EVENT_DISCONNECTED) {
            self->dropped = true; /* events may be lost until ZeroMQ reconnects */
            ain__streams_loss(self->streams);
        }
    }
}

/* ------------------------------------------------------------ the MDP ping */

static void s_broker_is(ain__link_t *self, bool up, int64_t now)
{
    if (up == !atomic_load(&self->edge->broker_down))
        return;
    atomic_store(&self->edge->broker_down, !up);
    ain_metric_set(self->broker_up, up);
    if (up)
        ain_info(self->edge->log, "the broker answers again");
    else
        ain_warn(self->edge->log,
                 "the broker has not answered for %" PRId64 " ms: requests are refused at once "
                 "(503) until it does",
                 now - self->last_pong_ms);
}

static void s_ping(ain__link_t *self, int64_t now)
{
    if (now < self->next_ping_ms)
        return;
    self->next_ping_ms = now + self->interval_ms;
    if (self->ping_corr)
        return; /* the last one is still out: a lost one is simply never answered */
    ain_envelope_t env = {
        AIN_MSG_PING,  0,    0, ain_clock_wall_ms() + S_SILENT * self->interval_ms, 0,
        AIN_STATUS_OK, NULL, 0};
    if (ain_client_send(self->client, "broker", &env) == 0) {
        self->ping_corr = env.corr;
        self->ping_sent_ms = now;
    }
}

void ain__link_on_replies(ain__link_t *self, int64_t now)
{
    ain_reply_t reply;
    while (self->client && ain_client_recv(self->client, &reply, 0) == 1) {
        if (self->ping_corr && reply.env.corr == self->ping_corr) {
            self->ping_corr = 0;
            self->last_pong_ms = now;
            s_broker_is(self, true, now);
        } else if (self->catchup) {
            /* Not one of its pages: an answer after its deadline, dropped. */
            ain__catchup_on_reply(self->catchup, &reply, now);
        }
        ain_reply_close(&reply);
    }
}

int64_t ain__link_tick(ain__link_t *self, int64_t now)
{
    int64_t silent_ms = S_SILENT * self->interval_ms;
    if (self->have && !self->silent && now - self->last_beat_ms > silent_ms) {
        self->silent = true;
        ain__streams_loss(self->streams);
        ain_metric_set(self->link_up, 0);
        ain_warn(self->edge->log,
                 "no bus heartbeat for %" PRId64 " ms: open streams are caught up from the event "
                 "log when the link returns",
                 now - self->last_beat_ms);
    }
    if (!self->client)
        return self->interval_ms;
    if (self->ping_corr && now - self->ping_sent_ms > silent_ms)
        self->ping_corr = 0; /* given up: the next one goes out */
    if (now - self->last_pong_ms > silent_ms)
        s_broker_is(self, false, now);
    s_ping(self, now);
    int64_t next = self->next_ping_ms - now;
    int64_t catching = self->catchup ? ain__catchup_tick(self->catchup, now) : INT64_MAX;
    return catching < next ? catching : next;
}
