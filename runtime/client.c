/* client.c: MDP/Client over a DEALER socket (see client.h). */
#include "runtime/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mdp.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/curve.h"
#include "runtime/frames.h"
#include "runtime/proc.h"

/* While the broker is unreachable, a call retries its send this often. */
#define S_RESEND_MS 10

struct _ain_client_t {
    void *socket;
    uint64_t next_corr;
    uint64_t trace_base; /* random per client; trace ids are base + corr */
    int default_timeout_ms;
    size_t max_bytes;
    msgpack_sbuffer sbuf; /* reused for every request */
    uint64_t dropped;
    int rcvtimeo;            /* the ZMQ_RCVTIMEO set on the socket now */
    const atomic_bool *gate; /* ain_client_set_gate: while true, calls fail at once */
};

void ain_reply_close(ain_reply_t *reply)
{
    zmq_msg_close(&reply->frame);
    zmq_msg_init(&reply->frame);
    memset(&reply->env, 0, sizeof reply->env);
}

ain_client_t *ain_client_new(void *zmq, const char *endpoint, const ain_config_t *cfg)
{
    void *socket = ain_socket_new(zmq, ZMQ_DEALER, cfg);
    if (!socket)
        return NULL;
    ain_socket_set(socket, ZMQ_IMMEDIATE, 1);
    if (ain_curve_connect(socket, endpoint, cfg) < 0) {
        zmq_close(socket);
        return NULL;
    }
    ain_client_t *self = AIN_NEW(ain_client_t);
    self->socket = socket;
    self->rcvtimeo = -1;
    self->next_corr = (ain_random_u64() >> 33) + 1;
    self->trace_base = ain_random_u64();
    self->default_timeout_ms =
        cfg ? (int)ain_config_int(cfg, AIN_CFG_AINBOX_REQUEST_TIMEOUT_MS) : 5000;
    self->max_bytes =
        cfg ? (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_MSG_MAX_BYTES) : AIN_ENVELOPE_MAX_BYTES;
    msgpack_sbuffer_init(&self->sbuf);
    return self;
}

void ain_client_destroy(ain_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_client_t *self = *self_p;
    zmq_close(self->socket);
    msgpack_sbuffer_destroy(&self->sbuf);
    free(self);
    *self_p = NULL;
}

void *ain_client_socket(const ain_client_t *self)
{
    return self->socket;
}

uint64_t ain_client_dropped(const ain_client_t *self)
{
    return self->dropped;
}

int ain_client_send(ain_client_t *self, const char *service, ain_envelope_t *env)
{
    if (env->corr == 0)
        env->corr = self->next_corr++;
    if (env->deadline_ms == 0)
        env->deadline_ms = ain_clock_wall_ms() + self->default_timeout_ms;
    if (env->trace == 0) /* unique enough to follow a request, without a syscall */
        env->trace = (self->trace_base + env->corr * 0x9e3779b97f4a7c15ULL) | 1;
    size_t slen = strlen(service);
    char header[AIN_MDP_HEADER_LEN + AIN_SERVICE_NAME_MAX];
    if (slen == 0 || slen > AIN_SERVICE_NAME_MAX) {
        errno = EINVAL;
        return -1;
    }
    memcpy(header, AIN_WIRE_CLIENT, AIN_MDP_HEADER_LEN);
    memcpy(header + AIN_MDP_HEADER_LEN, service, slen);
    self->sbuf.size = 0;
    ain_envelope_pack(env, &self->sbuf);
    /* Compact framing (proto/mdp.h): [AINC01 service][envelope]. */
    if (ain_send_bytes(self->socket, header, AIN_MDP_HEADER_LEN + slen,
                       ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    return ain_send_bytes(self->socket, self->sbuf.data, self->sbuf.size, 0);
}

static int s_wait(void *socket, int timeout_ms)
{
    zmq_pollitem_t item = {socket, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    return rc < 0 && errno == EINTR ? 0 : rc;
}

/* Reads one reply message: [AINC01 service][envelope] (our framing) or
 * [""][MDPC01][service][envelope]. Waits up to `timeout_ms`. Returns 1
 * with `reply` filled, 0 if the message was dropped, -1 if nothing came. */
static int s_read_reply(ain_client_t *self, ain_reply_t *reply, int timeout_ms)
{
    /* A blocking receive with a timeout, not zmq_poll: measured, waiting
     * in zmq_poll halved the round trips a client thread could make. */
    if (timeout_ms != self->rcvtimeo) {
        ain_socket_set(self->socket, ZMQ_RCVTIMEO, timeout_ms);
        self->rcvtimeo = timeout_ms;
    }
    ain_frames_t f;
    if (ain_frames_recv(&f, self->socket, 0) < 0)
        return -1;
    int rc = 0;
    const char *why = NULL;
    bool compact = f.count == 2 && ain_frame_size(&f.part[0]) > AIN_MDP_HEADER_LEN &&
                   memcmp(ain_frame_data(&f.part[0]), AIN_WIRE_CLIENT, AIN_MDP_HEADER_LEN) == 0;
    bool mdp =
        f.count == 4 && ain_frame_size(&f.part[0]) == 0 && ain_frame_is_str(&f.part[1], AIN_MDPC);
    if (compact || mdp) {
        ain_frames_take(&f, f.count - 1, &reply->frame);
        if (ain_envelope_decode(ain_frame_data(&reply->frame), ain_frame_size(&reply->frame),
                                self->max_bytes, &reply->env, &why) == AIN_STATUS_OK)
            rc = 1;
        else
            ain_reply_close(reply);
    }
    if (rc == 0)
        self->dropped++;
    ain_frames_close(&f);
    return rc;
}

int ain_client_recv(ain_client_t *self, ain_reply_t *reply, int timeout_ms)
{
    zmq_msg_init(&reply->frame);
    int64_t until = ain_clock_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = until - ain_clock_mono_ms();
        int rc = s_read_reply(self, reply, left > 0 ? (int)left : 0);
        if (rc == 1)
            return 1;
        if (rc == -1 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (rc == -1 && left <= 0)
            return 0;
    }
}

ain_status_t ain_client_call(ain_client_t *self, const char *service, uint16_t type, uint64_t user,
                             const void *body, size_t len, int timeout_ms, ain_reply_t *reply)
{
    if (timeout_ms <= 0)
        timeout_ms = self->default_timeout_ms;
    int64_t start = ain_clock_mono_ms(), until = start + timeout_ms;
    ain_envelope_t env = {type,          0,    user, ain_clock_wall_ms() + timeout_ms, 0,
                          AIN_STATUS_OK, body, len};
    /* An empty reply on every path that returns no answer: callers read
     * env.body_len to tell "no answer" from an error body. */
    memset(&reply->env, 0, sizeof reply->env);
    zmq_msg_init(&reply->frame);
    if (self->gate && atomic_load(self->gate))
        return AIN_STATUS_UNAVAILABLE;
    while (ain_client_send(self, service, &env) < 0) {
        if (errno != EAGAIN || ain_clock_mono_ms() + S_RESEND_MS >= until)
            return AIN_STATUS_UNAVAILABLE;
        zmq_poll(NULL, 0, S_RESEND_MS);
    }
    for (;;) {
        int64_t left = until - ain_clock_mono_ms();
        if (left <= 0 || ain_client_recv(self, reply, (int)left) != 1)
            return AIN_STATUS_TIMEOUT;
        if (reply->env.corr == env.corr)
            return reply->env.status;
        self->dropped++; /* the late answer to an earlier call */
        ain_reply_close(reply);
    }
}

/* A three-digit MMI status frame ("200"), or 0. */
static int s_status_code(zmq_msg_t *frame)
{
    const char *d = ain_frame_data(frame);
    if (ain_frame_size(frame) != 3)
        return 0;
    for (int i = 0; i < 3; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
}

void ain_client_set_gate(ain_client_t *self, const atomic_bool *down)
{
    self->gate = down;
}

int ain_client_mmi_service(ain_client_t *self, const char *service, int timeout_ms)
{
    if (self->gate && atomic_load(self->gate))
        return -1;
    int64_t until = ain_clock_mono_ms() + timeout_ms;
    while (ain_send_bytes(self->socket, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN || ain_clock_mono_ms() + S_RESEND_MS >= until)
            return -1;
        zmq_poll(NULL, 0, S_RESEND_MS);
    }
    ain_send_bytes(self->socket, AIN_MDPC, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
    ain_send_str(self->socket, AIN_MMI_SERVICE, ZMQ_SNDMORE);
    ain_send_str(self->socket, service, 0);
    for (;;) {
        int64_t left = until - ain_clock_mono_ms();
        if (left <= 0 || s_wait(self->socket, (int)left) <= 0)
            return -1;
        ain_frames_t f;
        if (ain_frames_recv(&f, self->socket, ZMQ_DONTWAIT) < 0)
            continue;
        int code = 0;
        if (f.count == 4 && ain_frame_is_str(&f.part[2], AIN_MMI_SERVICE))
            code = s_status_code(&f.part[3]);
        ain_frames_close(&f);
        if (code)
            return code;
        self->dropped++;
    }
}
