/* catchup.c: catching the pump's open streams up from the event log after
 * its bus link lost events.
 *
 * ZeroMQ reconnects a SUB socket by itself and sends its subscriptions
 * again, but what the broker published while the link was down is gone for
 * this edge: an open stream would silently miss those events (issue 13).
 * Every event is in its user's log (actors/events) before it is on the bus,
 * so the pump fetches them, without the client reconnecting. link.c says
 * when (a gap in the broker's bus heartbeat, a reconnect, silence).
 *
 * Catching up: every live stream holds (edge/streams.c), and for each user
 * with one, EVENT_REPLAY {after, limit} is asked of the events service (at
 * most S_INFLIGHT users at once, each at most S_PAGES pages, answers
 * matched by correlation id on the pump's own client socket, so the pump
 * never blocks on a round trip). The replayed events go straight to the
 * user's streams, then the held live events above the last replayed id.
 * `after` is the last id the user was sent before the last beat that
 * arrived in sequence (streams.c), so a loss is never skipped; an event
 * delivered between that beat and the loss may be sent twice, with the
 * same id. A user whose missed events are no longer in the log (or beyond
 * S_PAGES pages, or when the log cannot be read) gets `reset`, as a resume
 * does (edge/sse.c), and then the held events.
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

#define S_INFLIGHT 16
#define S_PAGE     256
#define S_PAGES    4
#define S_RESET    "data: {\"type\":\"reset\",\"reason\":\"%s\"}\n\n"

typedef struct {
    bool used;
    bool sent; /* false: the client could not send yet (its link not back); retried */
    uint64_t corr;
    int64_t deadline_ms; /* monotonic */
    int pages;
    ain__catchup_user_t u; /* u.after: the last id replayed so far */
} s_slot_t;

struct ain__catchup {
    ain_edge_t *edge;
    ain__streams_t *streams;
    ain_client_t *client; /* borrowed from link.c */
    const ain__catchup_metrics_t *m;
    int64_t call_ms;
    ain__catchup_user_t *queue;
    size_t queued, next;
    bool again;              /* another loss while catching up: start over when done */
    uint64_t again_fallback; /* ... from about then */
    s_slot_t slots[S_INFLIGHT];
};

void ain__catchup_register(ain_metrics_t *reg, ain__catchup_metrics_t *m)
{
    m->link_up = ain_metrics_gauge(reg, "bus.link_up");
    m->link_lost = ain_metrics_counter(reg, "bus.link_lost");
    m->broker_up = ain_metrics_gauge(reg, "broker.reachable");
    m->users = ain_metrics_counter(reg, "sse.catchup_users");
    m->events = ain_metrics_counter(reg, "sse.catchup_events");
    m->resets = ain_metrics_counter(reg, "sse.catchup_resets");
}

ain__catchup_t *ain__catchup_new(ain_edge_t *edge, ain__streams_t *streams, ain_client_t *client,
                                 const ain__catchup_metrics_t *m)
{
    ain__catchup_t *self = AIN_NEW(ain__catchup_t);
    self->edge = edge;
    self->streams = streams;
    self->client = client;
    self->m = m;
    self->call_ms = edge->call_timeout_ms;
    return self;
}

void ain__catchup_destroy(ain__catchup_t **self_p)
{
    ain__catchup_t *self = *self_p;
    if (!self)
        return;
    free(self->queue);
    free(self);
    *self_p = NULL;
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

/* Sends the request for `slot`'s current page; false if the client could not (no
 * connection to the broker yet: ZMQ_IMMEDIATE). */
static bool s_send(ain__catchup_t *self, s_slot_t *slot)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, slot->u.since ? 3 : 2);
    ain_mp_pack_kv_str(&pk, "after", slot->u.after);
    ain_mp_pack_kv_u64(&pk, "limit", S_PAGE);
    if (slot->u.since) { /* a time, on the first page only (cleared once sent): then ids */
        ain_mp_pack_str(&pk, "since");
        msgpack_pack_true(&pk);
    }
    ain_envelope_t env = {AIN_MSG_EVENT_REPLAY,
                          0,
                          slot->u.user,
                          ain_clock_wall_ms() + self->call_ms,
                          0,
                          AIN_STATUS_OK,
                          (const uint8_t *)sb.data,
                          sb.size};
    slot->sent = ain_client_send(self->client, "events", &env) == 0;
    if (slot->sent) {
        slot->corr = env.corr;
        slot->u.since = false;
    }
    msgpack_sbuffer_destroy(&sb);
    return slot->sent;
}

/* Asks for the next page of `slot`'s user. The bus link and the broker link
 * reconnect on their own, in either order: when the bus is back first, the
 * request cannot be sent yet, and is tried again on every tick until the
 * page's deadline, rather than giving the stream up for a reset. */
static void s_ask(ain__catchup_t *self, s_slot_t *slot, int64_t now)
{
    slot->used = true;
    slot->pages++;
    slot->deadline_ms = now + self->call_ms;
    s_send(self, slot);
}

void ain__catchup_start(ain__catchup_t *self, uint64_t fallback_ms)
{
    if (self->queue) {
        /* The users caught up now may have lost more: another pass after this one. */
        self->again = true;
        self->again_fallback = fallback_ms;
        return;
    }
    self->queue = ain__streams_catchup_begin(self->streams, fallback_ms, &self->queued);
    self->next = 0;
    ain_info(self->edge->log, "bus link lost events: catching up the streams of %zu users",
             self->queued);
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

bool ain__catchup_on_reply(ain__catchup_t *self, const ain_reply_t *reply, int64_t now)
{
    for (int i = 0; i < S_INFLIGHT; i++) {
        if (self->slots[i].used && self->slots[i].sent && self->slots[i].corr == reply->env.corr) {
            s_on_reply(self, &self->slots[i], reply, now);
            return true;
        }
    }
    return false; /* not ours, or after its deadline */
}

/* Fills free slots from the queue; expires slots past their deadline;
 * ends the pass when all is done. */
int64_t ain__catchup_tick(ain__catchup_t *self, int64_t now)
{
    bool busy = false;
    for (int i = 0; i < S_INFLIGHT; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->used && now >= slot->deadline_ms)
            s_end_user(self, slot, "log_unavailable", now);
        else if (slot->used && !slot->sent)
            s_send(self, slot);
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
            ain__catchup_start(self, self->again_fallback);
        }
    }
    return self->queue ? 50 : INT64_MAX;
}
