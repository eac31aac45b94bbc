/* pump.c: the stream pump, one thread that holds every SSE stream of the
 * edge and feeds them from the bus.
 *
 * The thread owns the bus subscriber, the streams (edge/streams.c: epoll
 * set, per-user index, buffers, heartbeat order) and a publisher for the
 * edge's metrics, and waits on all of them in one zmq_poll: the SUB socket,
 * the epoll descriptor (readable when any stream socket is ready) and an
 * eventfd that civetweb threads ring when they queue a command. Nothing
 * is shared with other threads but the command queue (under a lock) and
 * the metrics (atomics), so streams need no locks and no hand-over between
 * a bus thread and a writer thread.
 *
 * A civetweb thread serving GET /api/v1/emails/stream calls
 * ain__pump_open (the pump checks the caps, subscribes the user's topic on
 * the user's first stream and queues the `connected` frame), writes the
 * response head, takes the socket from civetweb (edge/handoff.c) and calls
 * ain__pump_attach, or ain__pump_abort if that failed. Each call waits
 * for the pump's answer, so a stream pointer never outlives its use.
 *
 * Subscriptions are per user: `u/<user>/` while the user has a stream
 * here, so the bus brings this edge only its own users' events.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <czmq.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/bus.h"
#include "runtime/clock.h"

#define S_BUS_BATCH 1024
#define S_MAX_WAIT  1000
#define S_RETRY_MS  3000
/* Each stream's kernel send buffer (Linux doubles it), fixed: autotuning
 * would let a client that stopped reading hold megabytes of kernel memory
 * before its 64 KiB in the pump (edge/streams.c) fill up and cut it. */
#define S_SNDBUF (64 * 1024)
#define S_HELLO  "retry: %d\n\ndata: {\"type\":\"connected\",\"ts\":%" PRId64 "}\n\n"

enum { S_CMD_OPEN, S_CMD_ATTACH, S_CMD_ABORT };

/* A civetweb thread's request; lives on its stack until `done`. */
typedef struct s_cmd {
    int kind;
    uint64_t user;
    bool resume;       /* open */
    const char *after; /* attach: borrowed from the caller */
    ain__stream_t *stream;
    int fd;
    int result;
    bool done;
    struct s_cmd *next;
} s_cmd_t;

struct ain__pump {
    ain_edge_t *edge;
    ain__fdset_t *owned;
    int wake; /* eventfd: commands wait */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t answered;
    int state;                   /* under lock: 0 starting, 1 running, -1 stopped */
    s_cmd_t *queue, *queue_tail; /* under lock */
    /* The pump thread's alone from here on. */
    ain__streams_t *streams;
    ain__link_t *link;
    ain_bus_sub_t *sub;
    ain_bus_pub_t *pub;
    ain_metric_t *received, *invalid;
    ain__catchup_metrics_t catchup_m;
};

/* The streams' owner callback: a user's first stream opened or last
 * closed. */
static void s_on_user(void *arg, uint64_t user, bool first)
{
    ain__pump_t *pump = arg;
    char topic[AIN_TOPIC_MAX];
    ain_topic_user(topic, sizeof topic, user);
    int rc = first ? ain_bus_subscribe(pump->sub, topic) : ain_bus_unsubscribe(pump->sub, topic);
    if (rc != 0)
        ain_error(pump->edge->log, "cannot %ssubscribe %s: %s", first ? "" : "un", topic,
                  zmq_strerror(zmq_errno()));
}

static void s_run_command(ain__pump_t *pump, s_cmd_t *cmd, int64_t now)
{
    switch (cmd->kind) {
    case S_CMD_OPEN: {
        char hello[128];
        int n = cmd->resume ? 0 : ain__pump_hello(hello, sizeof hello);
        cmd->result = ain__streams_open(pump->streams, cmd->user, hello, (size_t)n, cmd->resume,
                                        now, &cmd->stream);
        break;
    }
    case S_CMD_ATTACH:
        cmd->result = ain__streams_attach(pump->streams, cmd->stream, cmd->fd, cmd->after, now);
        break;
    case S_CMD_ABORT:
        ain__streams_abort(pump->streams, cmd->stream);
        cmd->result = 0;
        break;
    }
}

/* Takes the queue under the lock, runs it, answers each command. */
static void s_commands(ain__pump_t *pump, int64_t now)
{
    uint64_t count;
    if (read(pump->wake, &count, sizeof count) < 0)
        (void)0; /* nothing to reset: the queue is what counts */
    pthread_mutex_lock(&pump->lock);
    s_cmd_t *cmd = pump->queue;
    pump->queue = pump->queue_tail = NULL;
    pthread_mutex_unlock(&pump->lock);
    while (cmd) {
        s_cmd_t *next = cmd->next;
        s_run_command(pump, cmd, now);
        pthread_mutex_lock(&pump->lock);
        cmd->done = true; /* from here on, cmd may be gone */
        pthread_mutex_unlock(&pump->lock);
        cmd = next;
    }
    pthread_cond_broadcast(&pump->answered);
}

/* A USER_EVENT {id, data} as SSE text to the user's streams here. */
static void s_on_event(ain__pump_t *pump, ain_bus_msg_t *msg, int64_t now)
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
        ain_metric_inc(pump->invalid);
        ain_body_release(&body);
        return;
    }
    char *text = ain_sprintf("id: %.*s\ndata: %.*s\n\n", (int)id_len, id, (int)data_len, data);
    ain__streams_deliver(pump->streams, user, id, id_len, text, strlen(text), now);
    free(text);
    ain_body_release(&body);
    ain_metric_inc(pump->received);
}

static void s_bus(ain__pump_t *pump, int64_t now)
{
    ain_bus_msg_t msg;
    for (int i = 0, rc; i < S_BUS_BATCH && (rc = ain_bus_recv(pump->sub, &msg)) >= 0; i++) {
        if (rc == 0) {
            ain_metric_inc(pump->invalid);
            continue;
        }
        if (msg.env.type == AIN_MSG_BUS_BEAT)
            ain__link_on_beat(pump->link, &msg.env, now);
        else
            s_on_event(pump, &msg, now);
        ain_bus_msg_close(&msg);
    }
}

static void s_publish_metrics(ain__pump_t *pump, msgpack_sbuffer *sb)
{
    const ain_proc_t *proc = pump->edge->proc;
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
    ain_metrics_pack(pump->edge->metrics, &pk);
    ain_envelope_t env = {AIN_MSG_METRICS_REPORT,    0,       0, 0, 0, AIN_STATUS_OK,
                          (const uint8_t *)sb->data, sb->size};
    ain_bus_publish(pump->pub, topic, &env);
}

static void s_set_state(ain__pump_t *pump, int state)
{
    pthread_mutex_lock(&pump->lock);
    pump->state = state;
    pthread_mutex_unlock(&pump->lock);
    pthread_cond_broadcast(&pump->answered);
}

/* Commands queued as the pump stopped: refused, sockets closed. */
static void s_refuse_late(ain__pump_t *pump)
{
    pthread_mutex_lock(&pump->lock);
    for (s_cmd_t *cmd = pump->queue, *next; cmd; cmd = next) {
        next = cmd->next;
        if (cmd->kind == S_CMD_ATTACH) {
            ain__fdset_del(pump->owned, cmd->fd);
            close(cmd->fd);
        }
        cmd->result = AIN__OPEN_STOPPING;
        cmd->done = true;
    }
    pump->queue = pump->queue_tail = NULL;
    pthread_mutex_unlock(&pump->lock);
    pthread_cond_broadcast(&pump->answered);
}

static void s_loop(ain__pump_t *pump)
{
    const ain_config_t *cfg = ain_proc_config(pump->edge->proc);
    bool monitoring = ain_config_bool(cfg, AIN_CFG_ENABLE_MONITORING);
    int64_t interval = ain_config_int(cfg, AIN_CFG_AINBOX_METRICS_INTERVAL_MS);
    int64_t next_report = ain_clock_mono_ms() + interval;
    int64_t heartbeat_in = S_MAX_WAIT;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    while (!atomic_load(&pump->stop)) {
        int64_t now = ain_clock_mono_ms();
        int64_t wait = heartbeat_in < S_MAX_WAIT ? heartbeat_in : S_MAX_WAIT;
        if (monitoring && next_report - now < wait)
            wait = next_report - now;
        void *replies = ain__link_client_socket(pump->link);
        void *monitor = ain__link_monitor_socket(pump->link);
        zmq_pollitem_t items[] = {{ain_bus_sub_socket(pump->sub), 0, ZMQ_POLLIN, 0},
                                  {NULL, pump->wake, ZMQ_POLLIN, 0},
                                  {NULL, ain__streams_fd(pump->streams), ZMQ_POLLIN, 0},
                                  {replies, 0, ZMQ_POLLIN, 0},
                                  {monitor, 0, ZMQ_POLLIN, 0}};
        int nitems = 3 + (replies ? 1 : 0);
        if (monitor) /* its slot follows the replies' when there is one */
            items[nitems++] = (zmq_pollitem_t){monitor, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(items, nitems, wait > 0 ? (long)wait : 0) < 0 && zmq_errno() != EINTR) {
            ain_error(pump->edge->log, "stream pump: poll failed (%s): streams end",
                      zmq_strerror(zmq_errno()));
            break;
        }
        now = ain_clock_mono_ms();
        if (items[1].revents)
            s_commands(pump, now);
        for (int i = 3; i < nitems; i++) {
            if (!items[i].revents)
                continue;
            if (items[i].socket == monitor)
                ain__link_on_monitor(pump->link);
            else
                ain__link_on_replies(pump->link, now);
        }
        if (items[0].revents)
            s_bus(pump, now);
        if (items[2].revents)
            ain__streams_io(pump->streams);
        heartbeat_in = ain__streams_tick(pump->streams, now);
        int64_t link_in = ain__link_tick(pump->link, now);
        if (link_in < heartbeat_in)
            heartbeat_in = link_in;
        ain__streams_reap(pump->streams);
        if (monitoring && now >= next_report) {
            s_publish_metrics(pump, &sb);
            next_report = now + interval;
        }
    }
    msgpack_sbuffer_destroy(&sb);
}

static void *s_thread(void *arg)
{
    ain__pump_t *pump = arg;
    ain_edge_t *edge = pump->edge;
    const ain_proc_t *proc = edge->proc;
    pump->sub = ain_bus_sub_new(proc);
    pump->pub = ain_bus_pub_new(proc);
    ain__streams_config_t config = {.owned = pump->owned,
                                    .max_total = (size_t)edge->max_streams,
                                    .max_user = (size_t)edge->max_per_user,
                                    .heartbeat_ms = edge->heartbeat_ms,
                                    .sndbuf = S_SNDBUF,
                                    .metrics = &edge->m,
                                    .on_user = s_on_user,
                                    .arg = pump};
    pump->streams = ain__streams_new(&config);
    if (pump->streams) {
        pump->link =
            ain__link_new(edge, pump->streams, ain_bus_sub_socket(pump->sub), &pump->catchup_m);
        if (ain_bus_subscribe(pump->sub, AIN_TOPIC_BEAT) != 0)
            ain_warn(edge->log, "cannot subscribe %s: bus losses go unnoticed", AIN_TOPIC_BEAT);
        s_set_state(pump, 1);
        s_loop(pump);
    } else {
        ain_error(edge->log, "stream pump: no epoll set: %s", strerror(errno));
    }
    s_set_state(pump, -1); /* from now on, calls are refused at once */
    s_refuse_late(pump);
    ain__link_destroy(&pump->link, ain_bus_sub_socket(pump->sub));
    ain__streams_destroy(&pump->streams); /* closes every stream */
    ain_bus_pub_destroy(&pump->pub);
    ain_bus_sub_destroy(&pump->sub);
    return NULL;
}

ain__pump_t *ain__pump_new(ain_edge_t *edge)
{
    ain__pump_t *pump = AIN_NEW(ain__pump_t);
    pump->edge = edge;
    pump->owned = ain__fdset_new();
    pump->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pump->received = ain_metrics_counter(edge->metrics, "bus.received");
    pump->invalid = ain_metrics_counter(edge->metrics, "bus.invalid");
    ain__catchup_register(edge->metrics, &pump->catchup_m);
    pthread_mutex_init(&pump->lock, NULL);
    pthread_cond_init(&pump->answered, NULL);
    if (pump->wake < 0 || pthread_create(&pump->thread, NULL, s_thread, pump) != 0) {
        ain_error(edge->log, "stream pump: cannot start: %s", strerror(errno));
        ain__pump_destroy(&pump);
        return NULL;
    }
    pump->started = true;
    pthread_mutex_lock(&pump->lock);
    while (pump->state == 0)
        pthread_cond_wait(&pump->answered, &pump->lock);
    int state = pump->state;
    pthread_mutex_unlock(&pump->lock);
    if (state < 0)
        ain__pump_destroy(&pump);
    return pump;
}

void ain__pump_destroy(ain__pump_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__pump_t *pump = *self_p;
    atomic_store(&pump->stop, true);
    if (pump->started) {
        uint64_t one = 1;
        if (write(pump->wake, &one, sizeof one) < 0)
            (void)0; /* the loop also wakes within S_MAX_WAIT */
        pthread_join(pump->thread, NULL);
    }
    if (pump->wake >= 0)
        close(pump->wake);
    ain__fdset_destroy(&pump->owned);
    pthread_cond_destroy(&pump->answered);
    pthread_mutex_destroy(&pump->lock);
    free(pump);
    *self_p = NULL;
}

ain__fdset_t *ain__pump_owned(ain__pump_t *pump)
{
    return pump->owned;
}

/* Queues `cmd`, rings the pump, waits for the answer. */
static int s_call(ain__pump_t *pump, s_cmd_t *cmd)
{
    pthread_mutex_lock(&pump->lock);
    if (pump->state != 1) {
        pthread_mutex_unlock(&pump->lock);
        return AIN__OPEN_STOPPING;
    }
    if (pump->queue_tail)
        pump->queue_tail->next = cmd;
    else
        pump->queue = cmd;
    pump->queue_tail = cmd;
    pthread_mutex_unlock(&pump->lock);
    uint64_t one = 1;
    if (write(pump->wake, &one, sizeof one) < 0)
        (void)0; /* the counter is only full after 2^64-1 rings */
    pthread_mutex_lock(&pump->lock);
    while (!cmd->done)
        pthread_cond_wait(&pump->answered, &pump->lock);
    pthread_mutex_unlock(&pump->lock);
    return cmd->result;
}

int ain__pump_hello(char *buf, size_t size)
{
    return snprintf(buf, size, S_HELLO, S_RETRY_MS, ain_clock_wall_ms());
}

int ain__pump_open(ain__pump_t *pump, uint64_t user, bool resume, ain__stream_t **stream)
{
    s_cmd_t cmd = {.kind = S_CMD_OPEN, .user = user, .resume = resume, .fd = -1};
    int rc = s_call(pump, &cmd);
    *stream = rc == AIN__OPEN_OK ? cmd.stream : NULL;
    return rc;
}

int ain__pump_attach(ain__pump_t *pump, ain__stream_t *stream, int fd, const char *after)
{
    s_cmd_t cmd = {.kind = S_CMD_ATTACH, .stream = stream, .fd = fd, .after = after};
    int rc = s_call(pump, &cmd);
    if (rc == AIN__OPEN_STOPPING && !cmd.done) {
        /* Refused before it was queued: the socket is still ours. */
        ain__fdset_del(pump->owned, fd);
        close(fd);
    }
    return rc == 0 ? 0 : -1;
}

void ain__pump_abort(ain__pump_t *pump, ain__stream_t *stream)
{
    s_cmd_t cmd = {.kind = S_CMD_ABORT, .stream = stream, .fd = -1};
    s_call(pump, &cmd);
}
