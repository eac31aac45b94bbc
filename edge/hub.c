/* hub.c: feeds server-sent-event streams from the bus.
 *
 * One thread owns a SUB socket subscribed to every user topic ("u/") and
 * copies each event, already formatted as SSE text, into the pending
 * buffer of each open stream of that user; the stream's own civetweb
 * thread writes it out (sse.c). A stream whose pending text would pass
 * S_PENDING_MAX is cut instead (its consumer stopped reading); the client
 * reconnects. The same thread publishes the edge's metrics.
 *
 * Subscribing to all of "u/" keeps this simple and makes a new stream
 * live at once; per-user subscriptions, which spare a host the events of
 * users it does not serve, come with the stream pump of the edge issue.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <czmq.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/bus.h"
#include "runtime/clock.h"

#define S_PENDING_MAX (64 * 1024)
#define S_POLL_MS     100

struct ain__stream {
    uint64_t user;
    char *pending;
    size_t len;
    bool cut;
    pthread_cond_t cond;
    ain__stream_t *next, *prev;
};

struct ain__hub {
    ain_edge_t *edge;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t started;
    int state;         /* 0 starting, 1 running, -1 failed */
    zhashx_t *by_user; /* "<user>" -> first stream */
    ain_metric_t *received, *invalid;
};

static void s_key(uint64_t user, char key[24])
{
    snprintf(key, 24, "%" PRIu64, user);
}

/* Appends `text` to every stream of `user`, under the lock. */
static void s_deliver(ain__hub_t *hub, uint64_t user, const char *text, size_t len)
{
    char key[24];
    s_key(user, key);
    pthread_mutex_lock(&hub->lock);
    for (ain__stream_t *s = zhashx_lookup(hub->by_user, key); s; s = s->next) {
        if (s->cut)
            continue;
        if (s->len + len > S_PENDING_MAX) {
            s->cut = true;
        } else {
            s->pending = ain_realloc(s->pending, s->len + len);
            memcpy(s->pending + s->len, text, len);
            s->len += len;
        }
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&hub->lock);
}

/* A USER_EVENT {id, data} as SSE text: "id: ...\ndata: ...\n\n". */
static void s_on_event(ain__hub_t *hub, ain_bus_msg_t *msg)
{
    uint64_t user;
    ain_body_t body;
    const char *id, *data;
    size_t id_len, data_len;
    /* Parse first: the body is released on every path below. */
    bool parsed = ain_body_parse(&body, msg->env.body, msg->env.body_len) == AIN_STATUS_OK;
    if (!parsed || msg->env.type != AIN_MSG_USER_EVENT ||
        ain_topic_parse_user(zmq_msg_data(&msg->topic), zmq_msg_size(&msg->topic), &user) < 0 ||
        ain_mp_get_str(body.root, "id", &id, &id_len) != 1 ||
        ain_mp_get_str(body.root, "data", &data, &data_len) != 1 || memchr(data, '\n', data_len) ||
        memchr(id, '\n', id_len)) {
        ain_metric_inc(hub->invalid);
        ain_body_release(&body);
        return;
    }
    char *text = ain_sprintf("id: %.*s\ndata: %.*s\n\n", (int)id_len, id, (int)data_len, data);
    s_deliver(hub, user, text, strlen(text));
    free(text);
    ain_body_release(&body);
    ain_metric_inc(hub->received);
}

static void s_publish_metrics(ain__hub_t *hub, ain_bus_pub_t *pub, msgpack_sbuffer *sb)
{
    const ain_proc_t *proc = hub->edge->proc;
    char topic[AIN_TOPIC_MAX];
    if (ain_topic_metrics(topic, sizeof topic, ain_proc_host(proc), "edge") < 0)
        return;
    msgpack_packer pk;
    sb->size = 0;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    ain_mp_pack_kv_str(&pk, "service", "edge");
    ain_mp_pack_kv_str(&pk, "host", ain_proc_host(proc));
    ain_mp_pack_kv_u64(&pk, "pid", (uint64_t)getpid());
    ain_mp_pack_kv_u64(&pk, "instance", ain_proc_instance(proc));
    ain_mp_pack_kv_i64(&pk, "uptime_ms", ain_proc_uptime_ms(proc));
    ain_mp_pack_str(&pk, "metrics");
    ain_metrics_pack(hub->edge->metrics, &pk);
    ain_envelope_t env = {AIN_MSG_METRICS_REPORT,    0,       0, 0, 0, AIN_STATUS_OK,
                          (const uint8_t *)sb->data, sb->size};
    ain_bus_publish(pub, topic, &env);
}

static void s_set_state(ain__hub_t *hub, int state)
{
    pthread_mutex_lock(&hub->lock);
    hub->state = state;
    pthread_cond_broadcast(&hub->started);
    pthread_mutex_unlock(&hub->lock);
}

static void *s_thread(void *arg)
{
    ain__hub_t *hub = arg;
    const ain_proc_t *proc = hub->edge->proc;
    const ain_config_t *cfg = ain_proc_config(proc);
    ain_bus_sub_t *sub = ain_bus_sub_new(proc);
    ain_bus_pub_t *pub = ain_bus_pub_new(proc);
    bool monitoring = ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING);
    int64_t interval = ain_config_int(cfg, AIN_CFG_AINBOX_METRICS_INTERVAL_MS);
    int64_t next_report = ain_clock_mono_ms() + interval;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    s_set_state(hub, ain_bus_subscribe(sub, AIN_TOPIC_USER) == 0 ? 1 : -1);
    while (!atomic_load(&hub->stop)) {
        zmq_pollitem_t item = {ain_bus_sub_socket(sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, S_POLL_MS) > 0) {
            ain_bus_msg_t msg;
            for (int i = 0, rc; i < 1024 && (rc = ain_bus_recv(sub, &msg)) >= 0; i++)
                if (rc == 1) {
                    s_on_event(hub, &msg);
                    ain_bus_msg_close(&msg);
                }
        }
        int64_t now = ain_clock_mono_ms();
        if (monitoring && now >= next_report) {
            s_publish_metrics(hub, pub, &sb);
            next_report = now + interval;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    ain_bus_pub_destroy(&pub);
    ain_bus_sub_destroy(&sub);
    return NULL;
}

ain__hub_t *ain__hub_new(ain_edge_t *edge)
{
    ain__hub_t *hub = AIN_NEW(ain__hub_t);
    hub->edge = edge;
    hub->by_user = zhashx_new();
    hub->received = ain_metrics_counter(edge->metrics, "bus.received");
    hub->invalid = ain_metrics_counter(edge->metrics, "bus.invalid");
    pthread_mutex_init(&hub->lock, NULL);
    pthread_cond_init(&hub->started, NULL);
    if (pthread_create(&hub->thread, NULL, s_thread, hub) != 0) {
        ain__hub_destroy(&hub);
        return NULL;
    }
    pthread_mutex_lock(&hub->lock);
    while (hub->state == 0)
        pthread_cond_wait(&hub->started, &hub->lock);
    int state = hub->state;
    pthread_mutex_unlock(&hub->lock);
    if (state < 0)
        ain__hub_destroy(&hub);
    return hub;
}

void ain__hub_destroy(ain__hub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__hub_t *hub = *self_p;
    atomic_store(&hub->stop, true);
    if (hub->state != 0)
        pthread_join(hub->thread, NULL);
    zhashx_destroy(&hub->by_user); /* streams are closed before the hub goes */
    pthread_cond_destroy(&hub->started);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
    *self_p = NULL;
}

ain__stream_t *ain__hub_open(ain__hub_t *hub, uint64_t user)
{
    if (atomic_load(&hub->edge->stopping))
        return NULL;
    ain__stream_t *s = AIN_NEW(ain__stream_t);
    char key[24];
    s->user = user;
    pthread_cond_init(&s->cond, NULL);
    s_key(user, key);
    pthread_mutex_lock(&hub->lock);
    s->next = zhashx_lookup(hub->by_user, key);
    if (s->next)
        s->next->prev = s;
    zhashx_update(hub->by_user, key, s);
    pthread_mutex_unlock(&hub->lock);
    return s;
}

void ain__hub_close(ain__hub_t *hub, ain__stream_t **stream_p)
{
    ain__stream_t *s = *stream_p;
    char key[24];
    s_key(s->user, key);
    pthread_mutex_lock(&hub->lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (s->next)
        zhashx_update(hub->by_user, key, s->next);
    else
        zhashx_delete(hub->by_user, key);
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&hub->lock);
    pthread_cond_destroy(&s->cond);
    free(s->pending);
    free(s);
    *stream_p = NULL;
}

int ain__hub_wait(ain__hub_t *hub, ain__stream_t *s, int timeout_ms, char **out, size_t *len)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&hub->lock);
    while (s->len == 0 && !s->cut && !atomic_load(&hub->edge->stopping))
        if (pthread_cond_timedwait(&s->cond, &hub->lock, &until) != 0)
            break;
    if (s->cut || atomic_load(&hub->edge->stopping)) {
        rc = -1;
    } else if (s->len) {
        *out = s->pending;
        *len = s->len;
        s->pending = NULL;
        s->len = 0;
        rc = 1;
    }
    pthread_mutex_unlock(&hub->lock);
    return rc;
}

void ain__hub_wake_all(ain__hub_t *hub)
{
    pthread_mutex_lock(&hub->lock);
    for (ain__stream_t *head = zhashx_first(hub->by_user); head; head = zhashx_next(hub->by_user))
        for (ain__stream_t *s = head; s; s = s->next)
            pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&hub->lock);
}
