/* admin.c: what the broker answers itself: its admin service "broker"
 * (services, workers, stats, and the PING/STATS every native service
 * answers), MMI lookups (RFC 8), and its metrics registry, published on the
 * bus like every other process's. Only the public protocol reaches this:
 * ainbox-admin is just another client.
 */
#include <string.h>
#include <unistd.h>

#include "broker/internal.h"
#include "proto/body.h"
#include "proto/envelope.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/clock.h"
#include "runtime/frames.h"

void ain__admin_register_metrics(ain_broker_t *self)
{
    ain_metrics_t *r = self->metrics;
    ain__broker_metrics_t *m = &self->m;
    m->msgs_in = ain_metrics_counter(r, "messages.in");
    m->msgs_out = ain_metrics_counter(r, "messages.out");
    m->requests = ain_metrics_counter(r, "requests");
    m->replies = ain_metrics_counter(r, "replies");
    m->busy = ain_metrics_counter(r, "refused.busy");
    m->expired = ain_metrics_counter(r, "refused.expired");
    m->invalid = ain_metrics_counter(r, "refused.invalid");
    m->too_large = ain_metrics_counter(r, "refused.too_large");
    m->dropped = ain_metrics_counter(r, "dropped.unknown_protocol");
    m->send_failed = ain_metrics_counter(r, "dropped.client_gone");
    m->late_replies = ain_metrics_counter(r, "dropped.late_replies");
    m->redispatched = ain_metrics_counter(r, "redispatched");
    m->lost = ain_metrics_counter(r, "worker_lost_requests");
    m->mmi = ain_metrics_counter(r, "mmi");
    m->admin = ain_metrics_counter(r, "admin");
    m->workers_joined = ain_metrics_counter(r, "workers.joined");
    m->workers_left = ain_metrics_counter(r, "workers.left");
    m->workers_dead_fast = ain_metrics_counter(r, "workers.died");
    m->workers_expired = ain_metrics_counter(r, "workers.expired");
    m->services = ain_metrics_gauge(r, "services");
    m->workers = ain_metrics_gauge(r, "workers");
    m->queued = ain_metrics_gauge(r, "queued");
    m->inflight = ain_metrics_gauge(r, "inflight");
    m->held_bytes = ain_metrics_gauge(r, "held_bytes");
    m->bus_in = ain_metrics_counter(r, "bus.in");
    m->bus_out = ain_metrics_counter(r, "bus.out");
    m->bus_dropped = ain_metrics_counter(r, "bus.dropped");
    m->bus_subscriptions = ain_metrics_counter(r, "bus.subscription_changes");
    m->auth_handshakes_refused = ain_metrics_counter(r, "auth.refused.handshake");
    m->auth_requests_refused = ain_metrics_counter(r, "auth.refused.request");
    m->auth_registers_refused = ain_metrics_counter(r, "auth.refused.register");
    m->auth_publishes_refused = ain_metrics_counter(r, "auth.refused.publish");
    m->auth_keys = ain_metrics_gauge(r, "auth.keys");
    m->auth_reloads = ain_metrics_counter(r, "auth.reloads");
}

static void s_refresh_gauges(ain_broker_t *self)
{
    uint64_t queued = 0, inflight = 0;
    for (ain__service_t *svc = zhashx_first(self->services.services); svc;
         svc = zhashx_next(self->services.services)) {
        queued += svc->qlen;
        for (ain__worker_t *w = svc->workers; w; w = w->next)
            inflight += w->inflight;
    }
    ain_metric_set(self->m.services, (int64_t)zhashx_size(self->services.services));
    ain_metric_set(self->m.workers, (int64_t)zhashx_size(self->services.workers));
    ain_metric_set(self->m.queued, (int64_t)queued);
    ain_metric_set(self->m.inflight, (int64_t)inflight);
    ain_metric_set(self->m.held_bytes, (int64_t)self->held_bytes);
}

static const char *s_kind(int kind)
{
    return kind == AIN__KIND_NATIVE ? "native" : kind == AIN__KIND_PLAIN ? "plain" : "unknown";
}

static void s_pack_identity(ain_broker_t *self, msgpack_packer *pk, int extra)
{
    msgpack_pack_map(pk, 5 + (size_t)extra);
    ain_mp_pack_kv_str(pk, "service", AIN_BROKER_SERVICE);
    ain_mp_pack_kv_str(pk, "host", ain_proc_host(self->proc));
    ain_mp_pack_kv_u64(pk, "pid", (uint64_t)getpid());
    ain_mp_pack_kv_u64(pk, "instance", ain_proc_instance(self->proc));
    ain_mp_pack_kv_i64(pk, "uptime_ms", ain_proc_uptime_ms(self->proc));
}

static void s_pack_stats(ain_broker_t *self, msgpack_packer *pk)
{
    s_refresh_gauges(self);
    s_pack_identity(self, pk, 1);
    ain_mp_pack_str(pk, "metrics");
    ain_metrics_pack(self->metrics, pk);
}

static void s_pack_services(ain_broker_t *self, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    ain_mp_pack_str(pk, "services");
    msgpack_pack_array(pk, zhashx_size(self->services.services));
    for (ain__service_t *svc = zhashx_first(self->services.services); svc;
         svc = zhashx_next(self->services.services)) {
        uint64_t credit = 0, inflight = 0;
        for (ain__worker_t *w = svc->workers; w; w = w->next) {
            credit += w->credit;
            inflight += w->inflight;
        }
        msgpack_pack_map(pk, 13);
        ain_mp_pack_kv_str(pk, "name", svc->name);
        ain_mp_pack_kv_str(pk, "kind", s_kind(svc->kind));
        ain_mp_pack_kv_u64(pk, "workers", svc->nworkers);
        ain_mp_pack_kv_u64(pk, "credit", credit);
        ain_mp_pack_kv_u64(pk, "inflight", inflight);
        ain_mp_pack_kv_u64(pk, "queued", svc->qlen);
        ain_mp_pack_kv_u64(pk, "requests", svc->requests);
        ain_mp_pack_kv_u64(pk, "replies", svc->replies);
        ain_mp_pack_kv_u64(pk, "busy", svc->busy);
        ain_mp_pack_kv_u64(pk, "expired", svc->expired);
        ain_mp_pack_kv_u64(pk, "invalid", svc->invalid);
        ain_mp_pack_kv_u64(pk, "redispatched", svc->redispatched);
        ain_mp_pack_kv_u64(pk, "lost", svc->lost);
    }
}

static void s_pack_workers(ain_broker_t *self, msgpack_packer *pk)
{
    int64_t now = ain_clock_mono_ms();
    msgpack_pack_map(pk, 1);
    ain_mp_pack_str(pk, "workers");
    msgpack_pack_array(pk, zhashx_size(self->services.workers));
    for (ain__worker_t *w = zhashx_first(self->services.workers); w;
         w = zhashx_next(self->services.workers)) {
        msgpack_pack_map(pk, 12);
        ain_mp_pack_kv_str(pk, "id", w->key);
        ain_mp_pack_kv_str(pk, "service", w->service->name);
        ain_mp_pack_kv_str(pk, "kind", w->native ? "native" : "plain");
        ain_mp_pack_kv_u64(pk, "credit", w->credit);
        ain_mp_pack_kv_u64(pk, "inflight", w->inflight);
        ain_mp_pack_kv_str(pk, "peer", w->peer);
        ain_mp_pack_kv_u64(pk, "instance", w->instance);
        ain_mp_pack_kv_i64(pk, "age_ms", now - w->since_ms);
        ain_mp_pack_kv_i64(pk, "idle_ms", now - w->heard_ms);
        ain_mp_pack_kv_i64(pk, "window_ms", ain__liveness_window(self, w));
        ain_mp_pack_kv_u64(pk, "requests", w->requests);
        ain_mp_pack_kv_u64(pk, "replies", w->replies);
    }
}

/* Sends `env` to `client` as the broker service, in the client's framing. */
static void s_send_envelope(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header,
                            const ain_envelope_t *env)
{
    zmq_msg_t frame;
    self->sbuf.size = 0;
    ain_envelope_pack(env, &self->sbuf);
    zmq_msg_init_size(&frame, self->sbuf.size);
    memcpy(zmq_msg_data(&frame), self->sbuf.data, self->sbuf.size);
    ain__broker_send_client(self, client, header, AIN_BROKER_SERVICE, &frame, 1);
}

void ain__admin_request(ain_broker_t *self, zmq_msg_t *client, zmq_msg_t *header, zmq_msg_t *meta,
                        const void *data, size_t len)
{
    ain_envelope_t req, reply;
    const char *why = NULL;
    int st = ain_envelope_decode(data, len, self->max_bytes, &req, &why);
    if (st == AIN_STATUS_OK)
        st = ain_envelope_check_request(&req, &why);
    if (st == AIN_STATUS_OK &&
        !ain_msgtype_served_by(ain_msgtype_lookup(req.type), AIN_BROKER_SERVICE)) {
        st = AIN_STATUS_INVALID;
        why = "message type not served by the broker";
    }
    const char *denied =
        st == AIN_STATUS_OK && self->access.on
            ? ain__access_may_request(self, meta, AIN_BROKER_SERVICE, true, req.type, req.user)
            : NULL;
    if (denied) /* counted and logged there */
        st = AIN_STATUS_DENIED, why = denied;
    ain_metric_inc(self->m.admin);
    msgpack_packer pk;
    self->body.size = 0;
    msgpack_packer_init(&pk, &self->body, msgpack_sbuffer_write);
    if (st != AIN_STATUS_OK) {
        static const ain_envelope_t s_unknown = {AIN_MSG_UNDECODABLE, 0, 0, 0, 0, 0, NULL, 0};
        if (!denied)
            ain_metric_inc(self->m.invalid);
        msgpack_pack_map(&pk, 1);
        ain_mp_pack_kv_str(&pk, "message", why);
        ain_envelope_reply_to(why && req.type ? &req : &s_unknown, (ain_status_t)st,
                              self->body.data, self->body.size, &reply);
        s_send_envelope(self, client, header, &reply);
        return;
    }
    switch (req.type) {
    case AIN_MSG_PING:
        s_pack_identity(self, &pk, 0);
        break;
    case AIN_MSG_BROKER_SERVICES:
        s_pack_services(self, &pk);
        break;
    case AIN_MSG_BROKER_WORKERS:
        s_pack_workers(self, &pk);
        break;
    default:
        s_pack_stats(self, &pk);
        break; /* STATS, BROKER_STATS */
    }
    ain_envelope_reply_to(&req, AIN_STATUS_OK, self->body.data, self->body.size, &reply);
    s_send_envelope(self, client, header, &reply);
}

void ain__admin_mmi(ain_broker_t *self, zmq_msg_t *client, const char *service, size_t slen,
                    zmq_msg_t *body, int nbody, bool denied)
{
    /* 403 is not in RFC 8, whose codes follow HTTP's: a CURVE key without the right to ask. */
    const char *code = denied ? "403" : "501";
    ain_metric_inc(self->m.mmi);
    if (!denied && strcmp(service, AIN_MMI_SERVICE) == 0 && nbody >= 1) {
        ain__service_t *svc = ain__services_get(&self->services, ain_frame_data(&body[0]),
                                                ain_frame_size(&body[0]), false);
        code = svc && svc->nworkers > 0 ? "200" : "404";
    }
    zmq_msg_t answer;
    zmq_msg_init_size(&answer, 3);
    memcpy(zmq_msg_data(&answer), code, 3);
    ain__broker_send_client(self, client, NULL, service, &answer, 1);
}

void ain__admin_report(ain_broker_t *self)
{
    char topic[AIN_TOPIC_MAX];
    if (ain_topic_metrics(topic, sizeof topic, ain_proc_host(self->proc), "broker") < 0)
        return;
    msgpack_packer pk;
    self->body.size = 0;
    msgpack_packer_init(&pk, &self->body, msgpack_sbuffer_write);
    s_pack_stats(self, &pk);
    ain_envelope_t env = {
        AIN_MSG_METRICS_REPORT, 0, 0, 0, 0, AIN_STATUS_OK, (const uint8_t *)self->body.data,
        self->body.size};
    self->sbuf.size = 0;
    ain_envelope_pack(&env, &self->sbuf);
    if (ain_send_str(self->xpub, topic, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0)
        ain_send_bytes(self->xpub, self->sbuf.data, self->sbuf.size, 0);
}
