/* broker.c: the broker's sockets, poll loop and MDP routing.
 *
 * A client REQUEST becomes a slot in the request table (requests.c), waits
 * in its service's queue (services.c) and is sent to a worker with credit
 * left, carrying the slot's token as the "client address". The worker's
 * REPLY names the token; the broker forwards the body to the client and
 * frees the slot. Every way a request can end without a worker's answer
 * (queue full, deadline passed, malformed, worker died) ends in an explicit
 * status reply to the client: nothing is dropped silently.
 *
 * Frames are moved, never copied, except the request body, which is kept
 * (by reference) until the reply so it can be re-dispatched.
 */
#include "broker/broker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "proto/body.h"
#include "proto/envelope.h"
#include "proto/mpread.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/bus.h"
#include "runtime/clock.h"
#include "runtime/curve.h"
#include "runtime/endpoint.h"
#include "runtime/frames.h"
#include "runtime/signal.h"

#define S_BATCH      512 /* router messages handled per wake-up */
#define S_TICK_MS    50  /* liveness and deadline sweeps */
#define S_ROUTER_HWM 100000

/* ------------------------------------------------------------ replies */

void ain__broker_send_client(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header,
                             const char *service, zmq_msg_t *body, int nbody)
{
    if (ain_send_frame(self->router, client, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        ain_metric_inc(self->m.send_failed);
        ain_debug(self->log, "reply to a departed client dropped: %s", zmq_strerror(errno));
        for (int i = 0; i < nbody; i++) {
            zmq_msg_close(&body[i]);
            zmq_msg_init(&body[i]);
        }
        return;
    }
    if (header && zmq_msg_size(header) > 0) {
        ain_send_frame(self->router, header, ZMQ_SNDMORE);
    } else {
        ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
        ain_send_bytes(self->router, AIN_MDPC, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
        ain_send_str(self->router, service, ZMQ_SNDMORE);
    }
    for (int i = 0; i < nbody; i++)
        ain_send_frame(self->router, &body[i], i + 1 < nbody ? ZMQ_SNDMORE : 0);
    ain_metric_inc(self->m.msgs_out);
}

/* A status reply built by the broker: the request's envelope fields if it
 * had one, else an UNDECODABLE reply; body {message}. */
static void s_status_body(ain_broker_t *self, const ain_envelope_t *req, int status,
                          const char *why, zmq_msg_t *out)
{
    static const ain_envelope_t s_unknown = {AIN_MSG_UNDECODABLE, 0,    0, 0, 0,
                                             AIN_STATUS_OK,       NULL, 0};
    msgpack_packer pk;
    self->body.size = 0;
    msgpack_packer_init(&pk, &self->body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_str(&pk, "message", why);
    ain_envelope_t reply;
    ain_envelope_reply_to(req ? req : &s_unknown, (ain_status_t)status, self->body.data,
                          self->body.size, &reply);
    self->sbuf.size = 0;
    ain_envelope_pack(&reply, &self->sbuf);
    zmq_msg_init_size(out, self->sbuf.size);
    memcpy(zmq_msg_data(out), self->sbuf.data, self->sbuf.size);
}

static void s_reply_direct(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header,
                           const char *service, const ain_envelope_t *req, int status,
                           const char *why)
{
    zmq_msg_t body;
    s_status_body(self, req, status, why, &body);
    ain__broker_send_client(self, client, header, service, &body, 1);
}

static void s_detach(ain_broker_t *self, uint32_t index)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    ain__worker_t *w = r->worker;
    if (r->state != AIN__REQ_INFLIGHT || !w)
        return;
    if (r->wprev != AIN__NO_SLOT)
        ain__requests_get(&self->requests, r->wprev)->wnext = r->wnext;
    else
        w->inflight_head = r->wnext;
    if (r->wnext != AIN__NO_SLOT)
        ain__requests_get(&self->requests, r->wnext)->wprev = r->wprev;
    w->inflight--;
    r->worker = NULL;
    ain__worker_update(w);
}

static void s_release(ain_broker_t *self, uint32_t index)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    self->held_bytes -= r->bytes;
    ain__requests_free(&self->requests, index);
}

void ain__broker_reply_status(ain_broker_t *self, uint32_t index, int status, const char *why)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    ain_envelope_t req = {r->type,  r->corr,       r->user, r->deadline_ms,
                          r->trace, AIN_STATUS_OK, NULL,    0};
    s_detach(self, index);
    s_reply_direct(self, &r->client, &r->header, r->service->name, r->has_envelope ? &req : NULL,
                   status, why);
    s_release(self, index);
}

/* ------------------------------------------------------------ dispatch */

/* Sends request `index` to `w`, in compact framing to a native worker
 * ([w][AINW01 0x02 token][envelope]), else as MDP
 * ([w][""][MDPW01][0x02][token][""][body...]). The body goes as a reference
 * copy: the slot keeps it for a re-dispatch. */
static int s_send_request(ain_broker_t *self, ain__worker_t *w, uint32_t index)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    uint8_t header[AIN_WIRE_WORKER_HEADER_LEN], *token = header + AIN_MDP_HEADER_LEN + 1;
    if (ain_send_bytes(self->router, w->id, w->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    ain__requests_token(&self->requests, index, token);
    if (w->native) {
        memcpy(header, AIN_WIRE_WORKER, AIN_MDP_HEADER_LEN);
        header[AIN_MDP_HEADER_LEN] = AIN_MDPW_REQUEST;
        ain_send_bytes(self->router, header, sizeof header, ZMQ_SNDMORE);
    } else {
        uint8_t cmd = AIN_MDPW_REQUEST;
        ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
        ain_send_bytes(self->router, AIN_MDPW, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
        ain_send_bytes(self->router, &cmd, 1, ZMQ_SNDMORE);
        ain_send_bytes(self->router, token, AIN_MDP_TOKEN_BYTES, ZMQ_SNDMORE);
        ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
    }
    ain_send_copy(self->router, &r->body, r->nbody > 1 ? ZMQ_SNDMORE : 0);
    for (int i = 0; i < r->nbody - 1; i++)
        ain_send_copy(self->router, &r->extra[i], i + 2 < r->nbody ? ZMQ_SNDMORE : 0);
    ain_metric_inc(self->m.msgs_out);
    r->state = AIN__REQ_INFLIGHT;
    r->worker = w;
    r->dispatches++;
    r->wprev = AIN__NO_SLOT;
    r->wnext = w->inflight_head;
    if (w->inflight_head != AIN__NO_SLOT)
        ain__requests_get(&self->requests, w->inflight_head)->wprev = index;
    w->inflight_head = index;
    w->inflight++;
    w->requests++;
    w->next_heartbeat_ms = self->now_ms + self->heartbeat_ms;
    ain__worker_update(w);
    return 0;
}

void ain__broker_dispatch(ain_broker_t *self, ain__service_t *svc)
{
    int64_t now = self->wall_ms;
    while (svc->qlen > 0) {
        ain__worker_t *w = ain__service_pick(svc);
        if (!w)
            return;
        uint32_t index = ain__queue_pop(svc);
        ain__request_t *r = ain__requests_get(&self->requests, index);
        r->state = AIN__REQ_QUEUED;
        if (r->deadline_ms <= now) {
            svc->expired++;
            ain_metric_inc(self->m.expired);
            ain__broker_reply_status(self, index, AIN_STATUS_TIMEOUT, "deadline passed in queue");
        } else if (svc->kind == AIN__KIND_NATIVE && !r->has_envelope) {
            svc->invalid++;
            ain_metric_inc(self->m.invalid);
            ain__broker_reply_status(self, index, AIN_STATUS_INVALID,
                                     "service needs an Ainbox envelope");
        } else if (s_send_request(self, w, index) < 0) {
            ain__queue_push_front(svc, index);
            ain__broker_worker_gone(self, w, "cannot send to it");
        }
    }
}

void ain__broker_send_command(ain_broker_t *self, ain__worker_t *w, int command)
{
    uint8_t cmd = (uint8_t)command;
    if (ain_send_bytes(self->router, w->id, w->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
    ain_send_bytes(self->router, AIN_MDPW, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
    ain_send_bytes(self->router, &cmd, 1, 0);
    w->next_heartbeat_ms = self->now_ms + self->heartbeat_ms;
}

/* DISCONNECT to a routing id we do not (or no longer) know as a worker. */
static void s_disconnect_id(ain_broker_t *self, zmq_msg_t *id)
{
    uint8_t cmd = AIN_MDPW_DISCONNECT;
    if (ain_send_frame(self->router, id, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
    ain_send_bytes(self->router, AIN_MDPW, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
    ain_send_bytes(self->router, &cmd, 1, 0);
}

/* Re-queues (once) or answers the request a dead worker held. Returns 1 if
 * it was re-queued, 0 if answered. */
static int s_rescue(ain_broker_t *self, ain__service_t *svc, uint32_t index)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    int status = AIN_STATUS_UNAVAILABLE;
    const char *why = "worker died holding a non-idempotent request";
    if (r->idempotent && r->dispatches >= 2) {
        why = "worker died; already re-dispatched once";
    } else if (r->idempotent && r->deadline_ms <= self->wall_ms) {
        status = AIN_STATUS_TIMEOUT;
        why = "worker died after the deadline";
    } else if (r->idempotent) {
        s_detach(self, index);
        r->state = AIN__REQ_QUEUED;
        if (ain__queue_push_front(svc, index) == 0)
            return 1;
        why = "worker died and the service queue is full";
    }
    ain__broker_reply_status(self, index, status, why);
    return 0;
}

void ain__broker_worker_gone(ain_broker_t *self, ain__worker_t *w, const char *why)
{
    ain__service_t *svc = w->service;
    int redispatched = 0, lost = 0;
    while (w->inflight_head != AIN__NO_SLOT) {
        if (s_rescue(self, svc, w->inflight_head))
            redispatched++;
        else
            lost++;
    }
    svc->redispatched += (uint64_t)redispatched;
    svc->lost += (uint64_t)lost;
    ain_metric_add(self->m.redispatched, redispatched);
    ain_metric_add(self->m.lost, lost);
    ain_metric_inc(self->m.workers_left);
    ain_info(self->log, "worker %s of %s gone (%s): %d re-dispatched, %d answered with an error",
             w->key, svc->name, why, redispatched, lost);
    ain__workers_remove(&self->services, w, self->now_ms);
    ain__broker_dispatch(self, svc);
}

/* ------------------------------------------------------------ clients */

/* Where the parts of a client request are, in either framing. */
typedef struct {
    char service[AIN_SERVICE_NAME_MAX + 1];
    size_t slen;
    int first_body; /* index of the first body frame */
    bool compact;
} s_client_req_t;

/* Finds service and body in [id][""][MDPC01][service][body...] or
 * [id][AINC01 service][envelope]. Returns NULL, or why it is malformed. */
static const char *s_parse_client(ain_frames_t *f, bool compact, s_client_req_t *req)
{
    const char *name;
    req->compact = compact;
    if (compact) {
        if (f->count != 3 || f->truncated)
            return "a compact request is one header and one envelope frame";
        name = (const char *)ain_frame_data(&f->part[1]) + AIN_MDP_HEADER_LEN;
        req->slen = ain_frame_size(&f->part[1]) - AIN_MDP_HEADER_LEN;
        req->first_body = 2;
    } else {
        if (f->count < 5)
            return "request without a body";
        if (f->truncated || f->count - 4 > AIN_MDP_MAX_BODY_FRAMES)
            return "more body frames than the broker accepts (8)";
        name = ain_frame_data(&f->part[3]);
        req->slen = ain_frame_size(&f->part[3]);
        req->first_body = 4;
    }
    if (!ain_mdp_service_valid(name, req->slen))
        return "invalid service name (1-64 printable characters)";
    memcpy(req->service, name, req->slen);
    req->service[req->slen] = '\0';
    return NULL;
}

/* Answers a malformed client request INVALID in its own framing, echoing
 * its service frame as MDP requires of a reply. */
static void s_refuse_malformed(ain_broker_t *self, ain_frames_t *f, bool compact, const char *why)
{
    zmq_msg_t body;
    s_status_body(self, NULL, AIN_STATUS_INVALID, why, &body);
    if (ain_send_frame(self->router, &f->part[0], ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        return;
    }
    if (compact) {
        ain_send_frame(self->router, &f->part[1], ZMQ_SNDMORE);
    } else {
        ain_send_bytes(self->router, "", 0, ZMQ_SNDMORE);
        ain_send_bytes(self->router, AIN_MDPC, AIN_MDP_HEADER_LEN, ZMQ_SNDMORE);
        ain_send_frame(self->router, &f->part[3], ZMQ_SNDMORE);
    }
    ain_send_frame(self->router, &body, 0);
}

/* Takes the client frames of a request into slot `r`. */
static void s_take_request(ain_frames_t *f, const s_client_req_t *req, ain__request_t *r)
{
    ain_frames_take(f, 0, &r->client);
    if (req->compact)
        ain_frames_take(f, 1, &r->header);
    r->nbody = f->count - req->first_body;
    ain_frames_take(f, req->first_body, &r->body);
    if (r->nbody > 1) {
        r->extra = ain_calloc((size_t)r->nbody - 1, sizeof(zmq_msg_t));
        for (int i = req->first_body + 1; i < f->count; i++)
            ain_frames_take(f, i, &r->extra[i - req->first_body - 1]);
    }
    r->bytes = zmq_msg_size(&r->body);
    for (int i = 0; i < r->nbody - 1; i++)
        r->bytes += zmq_msg_size(&r->extra[i]);
}

/* Reads the envelope into the slot if the body is one. Returns the status
 * the request must be refused with, or AIN_STATUS_OK. */
static int s_read_envelope(ain_broker_t *self, ain__request_t *r, const char *service,
                           const char **why)
{
    ain_envelope_t env;
    *why = "body is not an Ainbox envelope";
    if (r->nbody != 1)
        return AIN_STATUS_INVALID;
    int st = ain_envelope_decode(zmq_msg_data(&r->body), zmq_msg_size(&r->body),
                                 AIN_ENVELOPE_MAX_BYTES, &env, why);
    if (st == AIN_STATUS_OK)
        st = ain_envelope_check_request(&env, why);
    if (st != AIN_STATUS_OK)
        return st;
    const ain_msgtype_t *type = ain_msgtype_lookup(env.type);
    r->has_envelope = true;
    r->type = env.type;
    r->corr = env.corr;
    r->user = env.user;
    r->trace = env.trace;
    r->deadline_ms = env.deadline_ms;
    r->idempotent = (type->flags & AIN_MSGF_IDEMPOTENT) != 0;
    if (!ain_msgtype_served_by(type, service)) {
        *why = "message type not served by this service";
        return AIN_STATUS_INVALID;
    }
    if (r->bytes > self->max_bytes) {
        *why = "request larger than AINBOX_MSG_MAX_BYTES";
        return AIN_STATUS_TOO_LARGE;
    }
    return AIN_STATUS_OK;
}

/* Admits a request to `svc`'s queue, or refuses it with a status. */
static void s_admit(ain_broker_t *self, ain__service_t *svc, uint32_t index, int st,
                    const char *why)
{
    ain__request_t *r = ain__requests_get(&self->requests, index);
    r->service = svc;
    svc->requests++;
    if (!r->has_envelope) {
        /* A plain MDP request: opaque body, the broker's default deadline,
         * and MDP's assumption that workers are idempotent. */
        r->deadline_ms = self->wall_ms + self->default_timeout_ms;
        r->idempotent = true;
        if (r->bytes > self->max_bytes)
            st = AIN_STATUS_TOO_LARGE, why = "request larger than AINBOX_MSG_MAX_BYTES";
        else if (svc->kind != AIN__KIND_NATIVE)
            st = AIN_STATUS_OK;
    }
    if (st == AIN_STATUS_OK && r->deadline_ms <= self->wall_ms)
        st = AIN_STATUS_TIMEOUT, why = "deadline passed before arrival";
    if (st == AIN_STATUS_OK && self->held_bytes > self->memory_max)
        st = AIN_STATUS_BUSY, why = "broker memory budget full";
    if (st == AIN_STATUS_OK && ain__queue_push(svc, index) < 0)
        st = AIN_STATUS_BUSY, why = "service queue full";
    if (st != AIN_STATUS_OK) {
        ain_metric_inc(st == AIN_STATUS_BUSY        ? self->m.busy
                       : st == AIN_STATUS_TIMEOUT   ? self->m.expired
                       : st == AIN_STATUS_TOO_LARGE ? self->m.too_large
                                                    : self->m.invalid);
        if (st == AIN_STATUS_BUSY)
            svc->busy++;
        else if (st == AIN_STATUS_TIMEOUT)
            svc->expired++;
        else
            svc->invalid++;
        ain__broker_reply_status(self, index, st, why);
        return;
    }
    ain__broker_dispatch(self, svc);
}

/* Requests the broker answers itself, or refuses before taking a slot.
 * Returns true if the request was dealt with. */
static bool s_answer_here(ain_broker_t *self, ain_frames_t *f, const s_client_req_t *req)
{
    zmq_msg_t *header = req->compact ? &f->part[1] : NULL;
    int nbody = f->count - req->first_body;
    zmq_msg_t *body = &f->part[req->first_body];
    /* The broker's own service checks its types itself, once decoded (admin.c). */
    bool mmi = strncmp(req->service, AIN_MMI_PREFIX, strlen(AIN_MMI_PREFIX)) == 0;
    const char *denied = mmi && self->access.on
                             ? ain__access_may_request(self, &f->part[1], req->service, false, 0, 0)
                             : NULL;
    if (mmi) {
        ain__admin_mmi(self, &f->part[0], req->service, req->slen, body, nbody, denied != NULL);
    } else if (strcmp(req->service, AIN_BROKER_SERVICE) == 0) {
        ain__admin_request(self, &f->part[0], header, &f->part[1],
                           nbody == 1 ? ain_frame_data(body) : "",
                           nbody == 1 ? ain_frame_size(body) : 0);
    } else if (self->stopping) {
        s_reply_direct(self, &f->part[0], header, req->service, NULL, AIN_STATUS_UNAVAILABLE,
                       "broker is shutting down");
    } else {
        return false;
    }
    return true;
}

static void s_on_client(ain_broker_t *self, ain_frames_t *f, bool compact)
{
    s_client_req_t req;
    const char *why = s_parse_client(f, compact, &req);
    if (why) {
        ain_metric_inc(self->m.invalid);
        ain_warn(self->log, "malformed client request (%d frames): %s", f->count, why);
        s_refuse_malformed(self, f, compact, why);
        return;
    }
    ain_metric_inc(self->m.requests);
    if (s_answer_here(self, f, &req))
        return;
    uint32_t index;
    ain__request_t *r = ain__requests_alloc(&self->requests, &index);
    if (!r) {
        ain_metric_inc(self->m.busy);
        s_reply_direct(self, &f->part[0], compact ? &f->part[1] : NULL, req.service, NULL,
                       AIN_STATUS_BUSY, "broker holds AINBOX_REQUESTS_MAX requests");
        return;
    }
    s_take_request(f, &req, r);
    self->held_bytes += r->bytes; /* released with the slot, whatever becomes of it */
    int st = s_read_envelope(self, r, req.service, &why);
    ain__service_t *svc = self->last_service;
    if (!svc || strcmp(svc->name, req.service) != 0) /* most traffic goes to few services */
        svc = ain__services_get(&self->services, req.service, req.slen, true);
    self->last_service = svc;
    const char *denied =
        svc && st == AIN_STATUS_OK && self->access.on
            ? ain__access_may_request(self, &r->body, svc->name, r->has_envelope, r->type, r->user)
            : NULL;
    if (denied) {
        r->service = svc;
        ain__broker_reply_status(self, index, AIN_STATUS_DENIED, denied);
        return;
    }
    if (!svc) {
        ain_envelope_t env = {r->type, r->corr, r->user, 0, r->trace, AIN_STATUS_OK, NULL, 0};
        s_reply_direct(self, &r->client, &r->header, req.service, r->has_envelope ? &env : NULL,
                       AIN_STATUS_UNAVAILABLE, "broker tracks AINBOX_SERVICES_MAX services");
        s_release(self, index);
        return;
    }
    s_admit(self, svc, index, st, why);
}

/* ------------------------------------------------------------ workers */

/* Reads the READY extension {credit, instance, heartbeat_ms?, ...}: 0
 * (native), or -1 if the frame is there but malformed. A worker that does
 * not state its heartbeat interval leaves *heartbeat_ms at 0. */
static int s_ready_extension(zmq_msg_t *frame, uint32_t *credit, uint64_t *instance,
                             int64_t *heartbeat_ms)
{
    ain_body_t body;
    uint64_t c = 0, inst = 0, hb = 0;
    int rc = -1;
    if (ain_body_parse(&body, ain_frame_data(frame), ain_frame_size(frame)) == AIN_STATUS_OK &&
        ain_mp_get_u64(body.root, "credit", &c) == 1 && c >= 1 && c <= 65535 &&
        ain_mp_get_u64(body.root, "instance", &inst) >= 0 &&
        ain_mp_get_u64(body.root, "heartbeat_ms", &hb) >= 0 && hb <= AIN_MDP_HEARTBEAT_MAX_MS) {
        *credit = (uint32_t)c;
        *instance = inst;
        *heartbeat_ms = (int64_t)hb;
        rc = 0;
    }
    ain_body_release(&body);
    return rc;
}

/* READY: [id][""][MDPW01][0x01][service]([extension]) */
static void s_on_ready(ain_broker_t *self, ain_frames_t *f)
{
    const void *name = ain_frame_data(&f->part[4]);
    size_t len = ain_frame_size(&f->part[4]);
    uint32_t credit = 1;
    uint64_t instance = 0;
    int64_t heartbeat_ms = 0;
    bool native = f->count == 6;
    ain__service_t *svc = NULL;
    const char *why = NULL;
    if (f->count > 6 ||
        (native && s_ready_extension(&f->part[5], &credit, &instance, &heartbeat_ms) < 0))
        why = "malformed READY";
    else if (!ain_mdp_service_valid(name, len) ||
             (len >= 4 && memcmp(name, AIN_MMI_PREFIX, 4) == 0) ||
             ain_frame_is_str(&f->part[4], AIN_BROKER_SERVICE))
        why = "invalid or reserved service name";
    else if (self->access.on && !ain__access_may_serve(self, &f->part[1], name, len))
        return; /* counted and logged; no DISCONNECT, which would make it retry at once: its
                   next heartbeat gets one, so a refused worker retries once a heartbeat */
    else if (!(svc = ain__services_get(&self->services, name, len, true)))
        why = "too many services";
    else if (svc->nworkers && svc->kind != (native ? AIN__KIND_NATIVE : AIN__KIND_PLAIN))
        why = "service already served by the other kind of worker";
    if (why) {
        ain_metric_inc(self->m.invalid);
        ain_warn(self->log, "refused a worker: %s", why);
        s_disconnect_id(self, &f->part[0]);
        return;
    }
    int64_t now = ain_clock_mono_ms();
    svc->kind = native ? AIN__KIND_NATIVE : AIN__KIND_PLAIN;
    ain__worker_t *w = ain__workers_add(&self->services, svc, ain_frame_data(&f->part[0]),
                                        ain_frame_size(&f->part[0]), native, credit, now);
    w->instance = instance;
    w->fd = zmq_msg_get(&f->part[1], ZMQ_SRCFD);
    const char *peer = zmq_msg_gets(&f->part[1], "Peer-Address");
    snprintf(w->peer, sizeof w->peer, "%s", peer ? peer : "local");
    w->rhythm_ms = heartbeat_ms;
    ain__liveness_heard(self, w, false);
    w->next_heartbeat_ms = now + self->heartbeat_ms;
    ain_metric_inc(self->m.workers_joined);
    ain_info(self->log, "worker %s joined %s (%s, credit %u, from %s, silent at most %lld ms)",
             w->key, svc->name, native ? "native" : "plain MDP", credit, w->peer,
             (long long)ain__liveness_window(self, w));
    ain__broker_dispatch(self, svc);
}

/* A worker's REPLY naming `token`, with its body frames. */
static void s_on_reply(ain_broker_t *self, ain__worker_t *w, const void *token, size_t len,
                       zmq_msg_t *body, int nbody)
{
    uint32_t index;
    ain__request_t *r = ain__requests_by_token(&self->requests, token, len, &index);
    if (!r || r->worker != w) {
        /* Answered after its deadline sweep, after a re-dispatch, or garbage. */
        ain_metric_inc(self->m.late_replies);
        ain_debug(self->log, "reply from %s matches no request in flight; dropped", w->key);
        return;
    }
    ain__service_t *svc = r->service;
    s_detach(self, index);
    w->replies++;
    svc->replies++;
    ain_metric_inc(self->m.replies);
    ain__broker_send_client(self, &r->client, &r->header, svc->name, body, nbody);
    s_release(self, index);
    ain__broker_dispatch(self, svc);
}

/* The worker a reply names through its token, if the reply really comes
 * from that worker: the token's slot knows who holds it, so the hot path
 * compares routing ids instead of looking one up. */
static ain__worker_t *s_replier(ain_broker_t *self, zmq_msg_t *id, const uint8_t *token)
{
    uint32_t index;
    ain__request_t *r = ain__requests_by_token(&self->requests, token, AIN_MDP_TOKEN_BYTES, &index);
    ain__worker_t *w = r ? r->worker : NULL;
    if (w && ain_frame_is(id, w->id, w->id_len))
        return w;
    return ain__workers_find(&self->services, ain_frame_data(id), ain_frame_size(id));
}

/* Compact REPLY from a native worker: [id][AINW01 0x03 token][envelope]. */
static void s_on_compact_reply(ain_broker_t *self, ain_frames_t *f)
{
    const uint8_t *header = ain_frame_data(&f->part[1]);
    bool shaped = f->count == 3 && ain_frame_size(&f->part[1]) == AIN_WIRE_WORKER_HEADER_LEN &&
                  header[AIN_MDP_HEADER_LEN] == AIN_MDPW_REPLY;
    const uint8_t *token = header + AIN_MDP_HEADER_LEN + 1;
    ain__worker_t *w = shaped ? s_replier(self, &f->part[0], token) : NULL;
    if (!w || !w->native) {
        ain_metric_inc(self->m.invalid);
        ain_warn(self->log, "malformed compact reply (%d frames) or unknown worker; dropped",
                 f->count);
        if (!w)
            s_disconnect_id(self, &f->part[0]);
        return;
    }
    ain__liveness_heard(self, w, false);
    s_on_reply(self, w, token, AIN_MDP_TOKEN_BYTES, &f->part[2], 1);
}

static void s_on_credit(ain_broker_t *self, ain__worker_t *w, ain_frames_t *f)
{
    ain_mpread_t rd;
    ain_mp_token_t t;
    if (f->count != 5 || !w->native)
        goto bad;
    ain_mpread_init(&rd, ain_frame_data(&f->part[4]), ain_frame_size(&f->part[4]));
    if (ain_mpread_next(&rd, &t) < 0 || t.kind != AIN_MP_UINT || t.v.u > 65535 ||
        ain_mpread_left(&rd) != 0)
        goto bad;
    w->credit = (uint32_t)t.v.u;
    ain__worker_update(w);
    ain__broker_dispatch(self, w->service);
    return;
bad:
    ain_metric_inc(self->m.invalid);
    ain_warn(self->log, "malformed CREDIT from %s; dropped", w->key);
}

/* [id][""][MDPW01][command]... */
static void s_on_worker(ain_broker_t *self, ain_frames_t *f)
{
    int command =
        ain_frame_size(&f->part[3]) == 1 ? *(const uint8_t *)ain_frame_data(&f->part[3]) : -1;
    ain__worker_t *w = ain__workers_find(&self->services, ain_frame_data(&f->part[0]),
                                         ain_frame_size(&f->part[0]));
    if (w)
        ain__liveness_heard(self, w, command == AIN_MDPW_HEARTBEAT && f->count == 4);
    if (command == AIN_MDPW_READY && !w && f->count >= 5) {
        s_on_ready(self, f);
    } else if (command == AIN_MDPW_DISCONNECT) {
        if (w)
            ain__broker_worker_gone(self, w, "it said DISCONNECT");
    } else if (!w) {
        /* MDP: a valid command from a peer we do not know gets DISCONNECT,
         * which makes a worker of a restarted broker register again. */
        s_disconnect_id(self, &f->part[0]);
    } else if (command == AIN_MDPW_REPLY && f->count >= 7 && ain_frame_size(&f->part[5]) == 0) {
        s_on_reply(self, w, ain_frame_data(&f->part[4]), ain_frame_size(&f->part[4]), &f->part[6],
                   f->count - 6);
    } else if (command == AIN_MDPW_CREDIT) {
        s_on_credit(self, w, f);
    } else if (command != AIN_MDPW_HEARTBEAT || f->count != 4) {
        ain_metric_inc(self->m.invalid);
        ain_warn(self->log, "protocol error from worker %s (command %d); disconnected", w->key,
                 command);
        ain__broker_send_command(self, w, AIN_MDPW_DISCONNECT);
        ain__broker_worker_gone(self, w, "protocol error");
    }
}

static bool s_has_prefix(zmq_msg_t *frame, const char *prefix)
{
    return ain_frame_size(frame) >= AIN_MDP_HEADER_LEN &&
           memcmp(ain_frame_data(frame), prefix, AIN_MDP_HEADER_LEN) == 0;
}

/* Routes one message by its framing: MDP client or worker (frame 1 empty,
 * frame 2 the protocol), or a compact native client or worker. */
static void s_route(ain_broker_t *self, ain_frames_t *f)
{
    bool mdp = f->count >= 4 && ain_frame_size(&f->part[1]) == 0;
    if (mdp && ain_frame_is_str(&f->part[2], AIN_MDPC))
        return s_on_client(self, f, false);
    if (mdp && ain_frame_is_str(&f->part[2], AIN_MDPW) && !f->truncated)
        return s_on_worker(self, f);
    if (f->count >= 2 && s_has_prefix(&f->part[1], AIN_WIRE_CLIENT))
        return s_on_client(self, f, true);
    if (f->count >= 2 && s_has_prefix(&f->part[1], AIN_WIRE_WORKER))
        return s_on_compact_reply(self, f);
    ain_metric_inc(self->m.dropped);
    ain_warn(self->log, "message in no protocol we speak (%d frames); dropped", f->count);
}

/* Handles up to S_BATCH messages; returns how many. */
static int s_on_router(ain_broker_t *self)
{
    int i = 0;
    for (; i < S_BATCH; i++) {
        ain_frames_t f;
        if (ain_frames_recv(&f, self->router, ZMQ_DONTWAIT) < 0)
            break;
        ain_metric_inc(self->m.msgs_in);
        s_route(self, &f);
        ain_frames_close(&f);
    }
    return i;
}

/* ------------------------------------------------------------ life cycle */

ain_broker_t *ain_broker_new(const ain_proc_t *proc)
{
    const ain_config_t *cfg = ain_proc_config(proc);
    ain_broker_t *self = AIN_NEW(ain_broker_t);
    self->proc = proc;
    self->log = ain_proc_logger(proc, "broker");
    self->metrics = ain_metrics_new();
    self->heartbeat_ms = ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS);
    self->liveness = (int)ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_LIVENESS);
    self->default_timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_REQUEST_TIMEOUT_MS);
    self->max_bytes = (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_MSG_MAX_BYTES);
    self->memory_max = (size_t)ain_config_int(cfg, AIN_CFG_AINBOX_BROKER_MEMORY_MAX);
    self->monitoring = ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING);
    self->report_interval_ms = ain_config_int(cfg, AIN_CFG_AINBOX_METRICS_INTERVAL_MS);
    ain__requests_init(&self->requests, (uint32_t)ain_config_int(cfg, AIN_CFG_AINBOX_REQUESTS_MAX));
    ain__services_init(&self->services, (uint32_t)ain_config_int(cfg, AIN_CFG_AINBOX_SERVICES_MAX),
                       (uint32_t)ain_config_int(cfg, AIN_CFG_AINBOX_QUEUE_MAX));
    msgpack_sbuffer_init(&self->sbuf);
    msgpack_sbuffer_init(&self->body);
    ain__admin_register_metrics(self);
    ain__access_init(self);

    self->router = ain_socket_new(ain_proc_zmq(proc), ZMQ_ROUTER, cfg);
    ain_socket_set(self->router, ZMQ_ROUTER_MANDATORY, 1);
    ain_socket_set(self->router, ZMQ_SNDHWM, S_ROUTER_HWM);
    ain_socket_set(self->router, ZMQ_RCVHWM, S_ROUTER_HWM);
    self->xsub = ain_socket_new(ain_proc_zmq(proc), ZMQ_XSUB, cfg);
    self->xpub = ain_socket_new(ain_proc_zmq(proc), ZMQ_XPUB, cfg);
    ain_socket_set(self->xpub, ZMQ_XPUB_NODROP, 1);
    ain_socket_set(self->xpub, ZMQ_SNDHWM, S_ROUTER_HWM);
    ain_socket_set(self->xsub, ZMQ_RCVHWM, S_ROUTER_HWM);
    /* Subscriptions in (XPUB) and out to the publishers (XSUB): a full pipe drops them silently
     * (runtime/bus.c). */
    ain_socket_set(self->xpub, ZMQ_RCVHWM, AIN_BUS_SUBS_HWM);
    ain_socket_set(self->xsub, ZMQ_SNDHWM, AIN_BUS_SUBS_HWM);
    ain__liveness_start(self);
    return self;
}

int ain_broker_bind(ain_broker_t *self, int which, const char *endpoint)
{
    if (ain_curve_applies(endpoint) && ain__access_start(self) < 0)
        return -1;
    if (which != AIN_BROKER_ROUTER)
        return ain__bus_bind(self, which, endpoint);
    if (zmq_bind(self->router, endpoint) < 0) {
        ain_error(self->log, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
        return -1;
    }
    ain_info(self->log, "MDP on %s", endpoint);
    return 0;
}

/* Without CURVE, anybody who reaches a port can act as any user: a bind
 * other hosts can reach is refused in production and warned about
 * elsewhere. */
static int s_check_exposure(ain_broker_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    static const ain_cfg_id_t binds[] = {AIN_CFG_AINBOX_BROKER_BIND, AIN_CFG_AINBOX_BUS_IN_BIND,
                                         AIN_CFG_AINBOX_BUS_OUT_BIND};
    if (ain__access_configured(self))
        return 0;
    bool production = strcmp(ain_config_str(cfg, AIN_CFG_NODE_ENV), "production") == 0;
    for (size_t b = 0; b < sizeof binds / sizeof binds[0]; b++)
        for (size_t i = 0; i < ain_config_count(cfg, binds[b]); i++) {
            const char *endpoint = ain_config_item(cfg, binds[b], i);
            if (ain_endpoint_loopback(endpoint))
                continue;
            if (production) {
                ain_error(self->log,
                          "%s %s is reachable from other hosts and CurveZMQ is off: refusing to "
                          "start with NODE_ENV=production (anyone reaching the port could act as "
                          "any user). Bind 127.0.0.1, or set AINBOX_CURVE_SECRET and "
                          "AINBOX_CURVE_ALLOW_DIR (ainbox keygen; see broker/README.md)",
                          ain_config_name(binds[b]), endpoint);
                return -1;
            }
            ain_warn(self->log,
                     "%s %s is reachable from other hosts without authentication "
                     "(development only; production refuses it)",
                     ain_config_name(binds[b]), endpoint);
        }
    return 0;
}

/* While the broker's own key is rotated, AINBOX_BROKER_BIND_NEXT (and its bus ports) serve the
 * next key: libzmq copies CURVE options into an endpoint when it is bound, so the endpoints bound
 * before keep the current key, and clients move from one to the other one by one. */
static int s_bind_next(ain_broker_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    const char *next = ain_config_str(cfg, AIN_CFG_AINBOX_CURVE_SECRET_NEXT);
    if (!next || ain_config_count(cfg, AIN_CFG_AINBOX_BROKER_BIND_NEXT) == 0)
        return 0;
    if (ain__access_start(self) < 0 || ain__access_rekey(self, next) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ain_config_count(cfg, AIN_CFG_AINBOX_BROKER_BIND_NEXT); i++) {
        const char *router = ain_config_item(cfg, AIN_CFG_AINBOX_BROKER_BIND_NEXT, i);
        char *in = ain_endpoint_derive(router, 1, "-bus-in");
        char *out = ain_endpoint_derive(router, 2, "-bus-out");
        rc = in && out && ain_broker_bind(self, AIN_BROKER_ROUTER, router) == 0 &&
                     ain_broker_bind(self, AIN_BROKER_BUS_IN, in) == 0 &&
                     ain_broker_bind(self, AIN_BROKER_BUS_OUT, out) == 0
                 ? 0
                 : -1;
        free(in);
        free(out);
    }
    if (rc == 0)
        ain_info(self->log, "the next key (AINBOX_CURVE_SECRET_NEXT) is served on %s",
                 ain_config_str(cfg, AIN_CFG_AINBOX_BROKER_BIND_NEXT));
    return rc;
}

int ain_broker_bind_config(ain_broker_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    static const struct {
        int which;
        ain_cfg_id_t setting;
    } binds[] = {{AIN_BROKER_ROUTER, AIN_CFG_AINBOX_BROKER_BIND},
                 {AIN_BROKER_BUS_IN, AIN_CFG_AINBOX_BUS_IN_BIND},
                 {AIN_BROKER_BUS_OUT, AIN_CFG_AINBOX_BUS_OUT_BIND}};
    if (s_check_exposure(self) < 0)
        return -1;
    for (size_t b = 0; b < sizeof binds / sizeof binds[0]; b++)
        for (size_t i = 0; i < ain_config_count(cfg, binds[b].setting); i++)
            if (ain_broker_bind(self, binds[b].which, ain_config_item(cfg, binds[b].setting, i)) <
                0)
                return -1;
    return s_bind_next(self);
}

void ain_broker_destroy(ain_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_broker_t *self = *self_p;
    ain__liveness_stop(self);
    ain__access_fini(self);
    ain__requests_fini(&self->requests);
    ain__services_fini(&self->services);
    zmq_close(self->router);
    zmq_close(self->xsub);
    zmq_close(self->xpub);
    msgpack_sbuffer_destroy(&self->sbuf);
    msgpack_sbuffer_destroy(&self->body);
    ain_metrics_destroy(&self->metrics);
    ain_log_destroy(&self->log);
    free(self);
    *self_p = NULL;
}

/* Waits for work, unless the last pass had some: then the sockets are
 * read again at once (an empty non-blocking read costs no system call), so
 * a busy broker does not pay a poll(2) per batch. */
static int s_wait(ain_broker_t *self, zmq_pollitem_t *items, int n, bool busy)
{
    if (busy) {
        /* Busy: only the router is looked at on every pass; the rest wait
         * for a pass that finds the router empty and polls everything. */
        items[0].revents = ZMQ_POLLIN;
        for (int i = 1; i < n; i++)
            items[i].revents = 0;
        return 0;
    }
    int64_t now = ain_clock_mono_ms();
    long timeout = self->next_tick_ms > now ? self->next_tick_ms - now : 0;
    if (zmq_poll(items, n, timeout) < 0 && errno != EINTR) {
        ain_error(self->log, "poll failed: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* One pass of the loop. `*busy` says whether the last pass did work, and
 * is set for the next. Returns 0, or -1 if polling failed. */
static int s_poll_once(ain_broker_t *self, zsock_t *pipe, bool *term, bool *busy)
{
    zmq_pollitem_t items[6] = {
        {self->router, 0, ZMQ_POLLIN, 0},
        {self->xsub, 0, ZMQ_POLLIN, 0},
        {self->xpub, 0, ZMQ_POLLIN, 0},
        {self->monitor, 0, ZMQ_POLLIN, 0},
    };
    int n = 4, zap = -1, piped = -1;
    if (self->access.zap)
        items[zap = n++] = (zmq_pollitem_t){self->access.zap, 0, ZMQ_POLLIN, 0};
    if (pipe)
        items[piped = n++] = (zmq_pollitem_t){zsock_resolve(pipe), 0, ZMQ_POLLIN, 0};
    if (s_wait(self, items, n, *busy) < 0)
        return -1;
    self->now_ms = ain_clock_mono_ms();
    self->wall_ms = ain_clock_wall_ms();
    int work = 0;
    if (items[0].revents & ZMQ_POLLIN)
        work += s_on_router(self);
    if (items[1].revents & ZMQ_POLLIN)
        work += ain__bus_forward_up(self);
    if (items[2].revents & ZMQ_POLLIN)
        work += ain__bus_forward_down(self);
    if (items[3].revents & ZMQ_POLLIN)
        ain__liveness_on_monitor(self);
    /* A busy pass looks only at the router; a handshake must not wait for a quiet moment. */
    if (zap >= 0 && ((items[zap].revents & ZMQ_POLLIN) || ain_socket_readable(self->access.zap)))
        ain__access_on_zap(self);
    if (piped >= 0 && (items[piped].revents & ZMQ_POLLIN)) {
        char *command = zstr_recv(pipe);
        *term = !command || strcmp(command, "$TERM") == 0;
        zstr_free(&command);
    }
    *busy = work > 0;
    int64_t now = self->now_ms;
    if (now >= self->next_tick_ms) {
        int soon = ain__liveness_tick(self, now);
        self->next_tick_ms = now + (soon ? soon : S_TICK_MS);
    }
    ain__bus_beat(self, now);
    ain__access_tick(self, now);
    if (self->monitoring && now >= self->next_report_ms) {
        ain__admin_report(self);
        self->next_report_ms = now + self->report_interval_ms;
    }
    return 0;
}

static bool s_keep_none(uint32_t index, void *arg)
{
    ain_broker_t *self = arg;
    ain__broker_reply_status(self, index, AIN_STATUS_UNAVAILABLE, "broker is shutting down");
    return false;
}

/* Stops in order: queued requests are answered, in-flight ones get time to
 * finish, then every worker is told DISCONNECT. */
static void s_shutdown(ain_broker_t *self)
{
    self->stopping = true;
    for (ain__service_t *svc = zhashx_first(self->services.services); svc;
         svc = zhashx_next(self->services.services))
        ain__queue_filter(svc, s_keep_none, self);
    long timeout = ain_config_int(ain_proc_config(self->proc), AIN_CFG_AINBOX_SHUTDOWN_TIMEOUT_MS);
    int64_t until = ain_clock_mono_ms() + timeout;
    bool term = false, busy = false;
    while (self->requests.used > 0 && ain_clock_mono_ms() < until)
        if (s_poll_once(self, NULL, &term, &busy) < 0)
            break;
    if (self->requests.used > 0)
        ain_warn(self->log, "stopping with %u requests unanswered", self->requests.used);
    for (ain__worker_t *w = zhashx_first(self->services.workers); w;
         w = zhashx_next(self->services.workers))
        ain__broker_send_command(self, w, AIN_MDPW_DISCONNECT);
}

int ain_broker_run(ain_broker_t *self, zsock_t *pipe)
{
    if (pipe)
        zsock_signal(pipe, 0);
    bool term = false, busy = false;
    int rc = 0;
    self->next_tick_ms = ain_clock_mono_ms() + S_TICK_MS;
    while (!term && rc == 0) {
        rc = s_poll_once(self, pipe, &term, &busy);
        if (!pipe && ain_signal_stop_requested())
            term = true;
    }
    ain_info(self->log, "stopping");
    s_shutdown(self);
    return rc;
}
