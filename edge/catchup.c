/* catchup.c: the stream pump's watch on its bus link, and catching open
 * streams up from the event log when the link dropped.
 *
 * ZeroMQ reconnects a SUB socket by itself and sends its subscriptions
 * again, but what the broker published while the link was down is gone for
 * this edge: an open stream would silently miss those events (issue 13).
 * Every event is in its user's log (actors/events) before it is on the bus,
 * so the pump can fetch them, without the client reconnecting.
 *
 * Noticing a loss. The broker publishes BUS_BEAT {epoch, seq} on topic h/
 * every AINBOX_HEARTBEAT_MS. The link counts as having dropped when a beat
 * arrives after a gap in seq, from another epoch (a broker restart), after
 * the socket monitor saw the connection close, or after 3 intervals of
 * silence (a partition: no TCP reset, nothing arrives). Without a beat for
 * 3 intervals the link is also reported down (bus.link_up 0).
 *
 * Catching up, on the beat that shows the loss: every live stream holds
 * (edge/streams.c), and for each user with one, EVENT_REPLAY {after, limit}
 * is asked of the events service (at most S_INFLIGHT users at once, each
 * at most S_PAGES pages, answers matched by correlation id on this
 * thread's own client socket, so the pump never blocks on a round trip).
 * The replayed events go straight to the user's streams, then the held
 * live events above the last replayed id. `after` is the last id the user
 * was sent before the last beat that arrived in sequence (streams.c), so a
 * loss is never skipped; an event delivered between that beat and the loss
 * may be sent twice, with the same id. A user whose missed events are no
 * longer in the log (or beyond S_PAGES pages, or when the log cannot be
 * read) gets `reset`, as a resume does (edge/sse.c), and then the held
 * events.
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

#define S_INFLIGHT 16
#define S_PAGE     256
#define S_PAGES    4
#define S_SILENT   3 /* beat intervals without a beat: the link is down */
#define S_RESET    "data: {\"type\":\"reset\",\"reason\":\"%s\"}\n\n"

typedef struct {
    bool used;
    uint64_t corr;
    int64_t deadline_ms; /* monotonic */
    int pages;
    ain__catchup_user_t u; /* u.after: the last id replayed so far */
} s_slot_t;

struct ain__catchup {
    ain_edge_t *edge;
    ain__streams_t *streams;
    const ain__catchup_metrics_t *m;
    ain_client_t *client;
    void *monitor; /* PAIR: the SUB socket's monitor events */
    int64_t interval_ms, call_ms;
    /* the beat */
    bool have, dropped, down;
    uint64_t epoch, seq;
    int64_t last_beat_ms;   /* monotonic */
    int64_t last_good_wall; /* wall clock of the last beat in sequence */
    /* the catching up */
    ain__catchup_user_t *queue;
    size_t queued, next;
    bool again; /* another loss while catching up: start over when done */
    s_slot_t slots[S_INFLIGHT];
};

void ain__catchup_register(ain_metrics_t *reg, ain__catchup_metrics_t *m)
{
    m->link_up = ain_metrics_gauge(reg, "bus.link_up");
    m->link_lost = ain_metrics_counter(reg, "bus.link_lost");
    m->users = ain_metrics_counter(reg, "sse.catchup_users");
    m->events = ain_metrics_counter(reg, "sse.catchup_events");
    m->resets = ain_metrics_counter(reg, "sse.catchup_resets");
}

ain__catchup_t *ain__catchup_new(ain_edge_t *edge, ain__streams_t *streams, void *sub,
                                 const ain__catchup_metrics_t *m)
{
    const ain_proc_t *proc = edge->proc;
    const ain_config_t *cfg = ain_proc_config(proc);
    ain__catchup_t *self = AIN_NEW(ain__catchup_t);
    self->edge = edge;
    self->streams = streams;
    self->m = m;
    self->interval_ms = ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS);
    self->call_ms = edge->call_timeout_ms;
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
        ain_warn(edge->log, "stream pump: %s: open streams are not caught up after a bus loss",
                 !self->client ? "no broker client" : "no bus socket monitor");
    ain_metric_set(m->link_up, 1);
    return self;
}

void ain__catchup_destroy(ain__catchup_t **self_p, void *sub)
{
    ain__catchup_t *self = *self_p;
    if (!self)
        return;
    if (self->monitor) {
        zmq_socket_monitor(sub, NULL, 0);
        zmq_close(self->monitor);
    }
    ain_client_destroy(&self->client);
    free(self->queue);
    free(self);
    *self_p = NULL;
}

void *ain__catchup_client_socket(const ain__catchup_t *self)
{
    return self->client ? ain_client_socket(self->client) : NULL;
}

void *ain__catchup_monitor_socket(const ain__catchup_t *self)
{
    return self->monitor;
}

/* ------------------------------------------------------------ catching up */

static void s_end_user(ain__catchup_t *self, s_slot_t *slot, const char *reason, int64_t now)
{
    char reset[96];
    if (reason) {
        snprintf(reset, sizeof reset, S_RESET, reason);
        ain_metric_inc(self->m->resets);
    }
    ain__streams_catchup_end(self->streams, slot->u.user, reason ? reset : NULL, slot->u.after,
                             now);
    ain_metric_inc(self->m->users);
    slot->used = false;
}

/* Asks for the next page of `slot`'s user. */
static void s_ask(ain__catchup_t *self, s_slot_t *slot, int64_t now)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_str(&pk, "after", slot->u.after);
    ain_mp_pack_kv_u64(&pk, "limit", S_PAGE);
    ain_envelope_t env = {AIN_MSG_EVENT_REPLAY,
                          0,
                          slot->u.user,
                          ain_clock_wall_ms() + self->call_ms,
                          0,
                          AIN_STATUS_OK,
                          (const uint8_t *)sb.data,
                          sb.size};
    slot->used = true;
    slot->pages++;
    slot->deadline_ms = now + self->call_ms;
    if (ain_client_send(self->client, "events", &env) == 0)
        slot->corr = env.corr;
    else
        s_end_user(self, slot, "log_unavailable", now);
    msgpack_sbuffer_destroy(&sb);
}

static void s_start(ain__catchup_t *self, int64_t now)
{
    if (self->queue) {
        self->again = true; /* the users caught up now may have lost more: after this pass */
        return;
    }
    uint64_t fallback = (uint64_t)(self->last_good_wall - self->interval_ms);
    self->queue = ain__streams_catchup_begin(self->streams, fallback, &self->queued);
    self->next = 0;
    ain_info(self->edge->log, "bus link lost and back: catching up the streams of %zu users",
             self->queued);
    (void)now;
}

/* Writes one page; returns the number of events, or -1 if malformed. */
static int s_page(ain__catchup_t *self, s_slot_t *slot, const msgpack_object *events, int64_t now)
{
    msgpack_sbuffer text; /* a byte buffer, not msgpack */
    msgpack_sbuffer_init(&text);
    int n = 0;
    for (uint32_t i = 0; i < events->via.array.size; i++) {
        const msgpack_object *e = &events->via.array.ptr[i];
        const char *id, *data;
        size_t id_len, data_len;
        if (e->type != MSGPACK_OBJECT_MAP || ain_mp_get_str(e, "id", &id, &id_len) != 1 ||
            ain_mp_get_str(e, "data", &data, &data_len) != 1 || id_len == 0 ||
            id_len >= sizeof slot->u.after || memchr(id, '\n', id_len) ||
            memchr(data, '\n', data_len)) {
            n = -1;
            break;
        }
        text.size = 0;
        msgpack_sbuffer_write(&text, "id: ", 4);
        msgpack_sbuffer_write(&text, id, id_len);
        msgpack_sbuffer_write(&text, "\ndata: ", 7);
        msgpack_sbuffer_write(&text, data, data_len);
        msgpack_sbuffer_write(&text, "\n\n", 2);
        ain__streams_catchup_event(self->streams, slot->u.user, id, id_len, text.data, text.size,
                                   now);
        memcpy(slot->u.after, id, id_len);
        slot->u.after[id_len] = '\0';
        n++;
    }
    msgpack_sbuffer_destroy(&text);
    return n;
}

static void s_on_reply(ain__catchup_t *self, s_slot_t *slot, const ain_reply_t *reply, int64_t now)
{
    ain_body_t body;
    const msgpack_object *events = NULL;
    bool complete = false, reset = false;
    bool ok = reply->env.status == AIN_STATUS_OK &&
              ain_body_parse(&body, reply->env.body, reply->env.body_len) == AIN_STATUS_OK;
    if (ok) {
        events = ain_mp_get(body.root, "events");
        ok = events && events->type == MSGPACK_OBJECT_ARRAY &&
             ain_mp_get_bool(body.root, "complete", &complete) == 1 &&
             ain_mp_get_bool(body.root, "reset", &reset) == 1;
    }
    int n = ok && !reset ? s_page(self, slot, events, now) : 0;
    if (reply->env.status == AIN_STATUS_OK)
        ain_body_release(&body);
    if (n > 0)
        ain_metric_add(self->m->events, n);
    if (!ok || n < 0)
        s_end_user(self, slot, "log_unavailable", now);
    else if (reset)
        s_end_user(self, slot, "unknown_id", now);
    else if (complete)
        s_end_user(self, slot, NULL, now);
    else if (slot->pages >= S_PAGES)
        s_end_user(self, slot, "too_far_behind", now);
    else
        s_ask(self, slot, now);
}

void ain__catchup_on_replies(ain__catchup_t *self, int64_t now)
{
    ain_reply_t reply;
    while (self->client && ain_client_recv(self->client, &reply, 0) == 1) {
        for (int i = 0; i < S_INFLIGHT; i++) {
            if (self->slots[i].used && self->slots[i].corr == reply.env.corr) {
                s_on_reply(self, &self->slots[i], &reply, now);
                break;
            }
        }
        ain_reply_close(&reply); /* an answer after its deadline finds no slot */
    }
}

/* Fills free slots from the queue; expires slots past their deadline;
 * ends the pass when all is done. */
static void s_progress(ain__catchup_t *self, int64_t now)
{
    bool busy = false;
    for (int i = 0; i < S_INFLIGHT; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->used && now >= slot->deadline_ms)
            s_end_user(self, slot, "log_unavailable", now);
        if (!slot->used && self->queue && self->next < self->queued) {
            *slot = (s_slot_t){.u = self->queue[self->next++]};
            s_ask(self, slot, now);
        }
        busy |= slot->used;
    }
    if (self->queue && !busy && self->next >= self->queued) {
        free(self->queue);
        self->queue = NULL;
        if (self->again) {
            self->again = false;
            s_start(self, now);
        }
    }
}

/* ------------------------------------------------------------ the beat */

void ain__catchup_on_beat(ain__catchup_t *self, const ain_envelope_t *env, int64_t now)
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
    bool lost =
        self->have && (self->dropped || self->down || epoch != self->epoch || seq != self->seq + 1);
    if (self->down)
        ain_info(self->edge->log, "bus link back after %" PRId64 " ms", now - self->last_beat_ms);
    self->have = true;
    self->dropped = self->down = false;
    self->epoch = epoch;
    self->seq = seq;
    self->last_beat_ms = now;
    ain_metric_set(self->m->link_up, 1);
    if (lost && self->client) {
        ain_metric_inc(self->m->link_lost);
        s_start(self, now);
    } else if (!lost) {
        ain__streams_beat(self->streams);
        self->last_good_wall = ain_clock_wall_ms();
    }
}

void ain__catchup_on_monitor(ain__catchup_t *self)
{
    for (;;) {
        ain_frames_t f;
        if (ain_frames_recv(&f, self->monitor, ZMQ_DONTWAIT) < 0)
            return;
        uint16_t event = 0;
        if (f.count == 2 && ain_frame_size(&f.part[0]) == 6)
            memcpy(&event, ain_frame_data(&f.part[0]), 2);
        ain_frames_close(&f);
        if (event == ZMQ_EVENT_DISCONNECTED)
            self->dropped = true; /* events may be lost until ZeroMQ reconnects */
    }
}

int64_t ain__catchup_tick(ain__catchup_t *self, int64_t now)
{
    if (self->have && !self->down && now - self->last_beat_ms > S_SILENT * self->interval_ms) {
        self->down = true;
        ain_metric_set(self->m->link_up, 0);
        ain_warn(self->edge->log,
                 "no bus heartbeat for %" PRId64 " ms: the link to the broker is down; open "
                 "streams are caught up from the event log when it returns",
                 now - self->last_beat_ms);
    }
    if (self->client)
        s_progress(self, now);
    return self->queue ? 50 : self->interval_ms;
}
