/* bus.c: the event bus, an XSUB/XPUB pair forwarding in both directions.
 *
 * Events flow from publishers (XSUB side, "bus in") to subscribers (XPUB
 * side, "bus out"); subscriptions flow back the other way, so publishers
 * only send what somebody subscribed to. XPUB_NODROP turns a subscriber
 * that cannot keep up into EAGAIN here: the event is dropped for everybody
 * and counted, and the broker's loop never blocks on a slow subscriber.
 */
#include <errno.h>
#include <string.h>

#include "broker/internal.h"
#include "proto/body.h"
#include "proto/envelope.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/frames.h"
#include "runtime/proc.h"

#define S_BATCH 1024

int ain__bus_bind(ain_broker_t *self, int which, const char *endpoint)
{
    void *socket = which == AIN_BROKER_BUS_IN ? self->xsub : self->xpub;
    if (zmq_bind(socket, endpoint) < 0) {
        ain_error(self->log, "cannot bind bus %s %s: %s", which == AIN_BROKER_BUS_IN ? "in" : "out",
                  endpoint, zmq_strerror(errno));
        return -1;
    }
    ain_info(self->log, "bus %s on %s", which == AIN_BROKER_BUS_IN ? "in" : "out", endpoint);
    return 0;
}

/* Forwards whole messages from `from` to `to`; returns how many. */
static int s_forward(ain_broker_t *self, void *from, void *to, ain_metric_t *dropped)
{
    int n = 0;
    for (; n < S_BATCH; n++) {
        ain_frames_t f;
        if (ain_frames_recv(&f, from, ZMQ_DONTWAIT) < 0)
            break;
        /* With CURVE, an event from a key removed since its handshake. */
        if (from == self->xsub && self->access.on && !ain__access_may_publish(self, &f.part[0])) {
            ain_frames_close(&f);
            continue;
        }
        /* The first frame decides: once it is accepted, the rest are too. */
        if (f.truncated ||
            ain_send_frame(to, &f.part[0],
                           f.count > 1 ? ZMQ_SNDMORE | ZMQ_DONTWAIT : ZMQ_DONTWAIT) < 0) {
            ain_metric_inc(dropped);
        } else {
            if (to == self->xpub)
                ain_metric_inc(self->m.bus_out);
            for (int i = 1; i < f.count; i++)
                ain_send_frame(to, &f.part[i], i + 1 < f.count ? ZMQ_SNDMORE : 0);
        }
        ain_frames_close(&f);
    }
    return n;
}

/* The bus's own heartbeat: subscribers that see a gap in `seq`, another
 * `epoch` (this broker restarted) or silence know that they may have
 * missed events, and fetch them from the event log (edge/catchup.c). */
void ain__bus_beat(ain_broker_t *self, int64_t now)
{
    if (now < self->next_beat_ms)
        return;
    self->next_beat_ms = now + self->heartbeat_ms;
    if (!self->beat_epoch)
        self->beat_epoch = ain_random_u64() | 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_u64(&pk, "epoch", self->beat_epoch);
    ain_mp_pack_kv_u64(&pk, "seq", ++self->beat_seq);
    ain_envelope_t env = {AIN_MSG_BUS_BEAT,         0,      0, 0, 0, AIN_STATUS_OK,
                          (const uint8_t *)sb.data, sb.size};
    msgpack_sbuffer packed;
    msgpack_sbuffer_init(&packed);
    ain_envelope_pack(&env, &packed);
    if (ain_send_bytes(self->xpub, AIN_TOPIC_BEAT, strlen(AIN_TOPIC_BEAT),
                       ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0)
        ain_send_bytes(self->xpub, packed.data, packed.size, 0);
    else
        ain_metric_inc(self->m.bus_dropped);
    msgpack_sbuffer_destroy(&packed);
    msgpack_sbuffer_destroy(&sb);
}

int ain__bus_forward_up(ain_broker_t *self)
{
    int n = s_forward(self, self->xsub, self->xpub, self->m.bus_dropped);
    ain_metric_add(self->m.bus_in, n);
    return n;
}

int ain__bus_forward_down(ain_broker_t *self)
{
    int n = s_forward(self, self->xpub, self->xsub, self->m.bus_dropped);
    ain_metric_add(self->m.bus_subscriptions, n);
    return n;
}
