/* bus.c: PUB and SUB ends of the event bus (see bus.h). */
#include "runtime/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/curve.h"
#include "runtime/frames.h"

/* Events a publisher may queue towards the broker before it drops. */
#define S_PUB_HWM 100000
/* Subscription changes queued on their way from a subscriber to the broker, or from the broker
 * to a publisher. ZeroMQ drops a subscription silently when its pipe is full (the default HWM,
 * 1,000, is a tenth of one edge's users), and a publisher that never saw a subscription drops
 * that user's events for good; a publisher reads them only when it next sends, so an idle one
 * lets them pile up. Sized for a few edges subscribing all their users at once (an entry is a
 * few dozen bytes). The broker's ends use the same figure. */
#define S_SUBS_HWM AIN_BUS_SUBS_HWM

struct _ain_bus_pub_t {
    void *socket;
    msgpack_sbuffer sbuf;
    uint64_t sent, dropped;
};

struct _ain_bus_sub_t {
    void *socket;
    size_t max_bytes;
    uint64_t invalid;
};

void ain_bus_msg_close(ain_bus_msg_t *msg)
{
    zmq_msg_close(&msg->topic);
    zmq_msg_close(&msg->frame);
}

ain_bus_pub_t *ain_bus_pub_new(const ain_proc_t *proc)
{
    ain_bus_pub_t *self = AIN_NEW(ain_bus_pub_t);
    self->socket = ain_socket_new(ain_proc_zmq(proc), ZMQ_PUB, ain_proc_config(proc));
    ain_socket_set(self->socket, ZMQ_SNDHWM, S_PUB_HWM);
    ain_socket_set(self->socket, ZMQ_RCVHWM, S_SUBS_HWM);
    /* Make a full queue visible as EAGAIN instead of a silent drop. */
    ain_socket_set(self->socket, ZMQ_XPUB_NODROP, 1);
    ain_curve_connect(self->socket, ain_proc_bus_in(proc), ain_proc_config(proc));
    msgpack_sbuffer_init(&self->sbuf);
    return self;
}

void ain_bus_pub_destroy(ain_bus_pub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zmq_close((*self_p)->socket);
    msgpack_sbuffer_destroy(&(*self_p)->sbuf);
    free(*self_p);
    *self_p = NULL;
}

int ain_bus_publish(ain_bus_pub_t *self, const char *topic, const ain_envelope_t *env)
{
    self->sbuf.size = 0;
    ain_envelope_pack(env, &self->sbuf);
    if (ain_send_str(self->socket, topic, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        self->dropped++;
        return -1;
    }
    ain_send_bytes(self->socket, self->sbuf.data, self->sbuf.size, 0);
    self->sent++;
    return 0;
}

uint64_t ain_bus_pub_sent(const ain_bus_pub_t *self)
{
    return self->sent;
}

uint64_t ain_bus_pub_dropped(const ain_bus_pub_t *self)
{
    return self->dropped;
}

ain_bus_sub_t *ain_bus_sub_new(const ain_proc_t *proc)
{
    ain_bus_sub_t *self = AIN_NEW(ain_bus_sub_t);
    const ain_config_t *cfg = ain_proc_config(proc);
    self->socket = ain_socket_new(ain_proc_zmq(proc), ZMQ_SUB, cfg);
    ain_socket_set(self->socket, ZMQ_RCVHWM, S_PUB_HWM);
    ain_socket_set(self->socket, ZMQ_SNDHWM, S_SUBS_HWM);
    self->max_bytes = (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_MSG_MAX_BYTES);
    ain_curve_connect(self->socket, ain_proc_bus_out(proc), cfg);
    return self;
}

void ain_bus_sub_destroy(ain_bus_sub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zmq_close((*self_p)->socket);
    free(*self_p);
    *self_p = NULL;
}

void *ain_bus_sub_socket(const ain_bus_sub_t *self)
{
    return self->socket;
}

int ain_bus_subscribe(ain_bus_sub_t *self, const char *prefix)
{
    return zmq_setsockopt(self->socket, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
}

int ain_bus_unsubscribe(ain_bus_sub_t *self, const char *prefix)
{
    return zmq_setsockopt(self->socket, ZMQ_UNSUBSCRIBE, prefix, strlen(prefix));
}

uint64_t ain_bus_sub_invalid(const ain_bus_sub_t *self)
{
    return self->invalid;
}

int ain_bus_recv(ain_bus_sub_t *self, ain_bus_msg_t *msg)
{
    ain_frames_t f;
    if (ain_frames_recv(&f, self->socket, ZMQ_DONTWAIT) < 0)
        return -1;
    const char *why = NULL;
    int rc = 0;
    if (f.count == 2 && ain_frame_size(&f.part[0]) <= AIN_TOPIC_MAX) {
        ain_frames_take(&f, 0, &msg->topic);
        ain_frames_take(&f, 1, &msg->frame);
        const ain_msgtype_t *type = NULL;
        if (ain_envelope_decode(ain_frame_data(&msg->frame), ain_frame_size(&msg->frame),
                                self->max_bytes, &msg->env, &why) == AIN_STATUS_OK &&
            (type = ain_msgtype_lookup(msg->env.type)) && (type->flags & AIN_MSGF_EVENT))
            rc = 1;
        else
            ain_bus_msg_close(msg);
    }
    if (rc == 0)
        self->invalid++;
    ain_frames_close(&f);
    return rc;
}
