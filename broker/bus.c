/* bus.c: the event bus, an XSUB/XPUB pair forwarding in both directions.
 *
 * Events flow from publishers (XSUB side, "bus in") to subscribers (XPUB
 * side, "bus out"); subscriptions flow back the other way, so publishers
 * only send what somebody subscribed to. XPUB_NODROP turns a subscriber
 * that cannot keep up into EAGAIN here: the event is dropped for everybody
 * and counted, and the broker's loop never blocks on a slow subscriber.
 */
#include <errno.h>

#include "broker/internal.h"
#include "runtime/frames.h"

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
