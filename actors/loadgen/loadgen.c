/* loadgen.c: the load-generating actor (see loadgen.h), benchmarks only.
 *
 * One run at a time (another LOADGEN_RUN meanwhile is BUSY). A run has a
 * schedule: event k (0 <= k < users * rate * seconds) is due at
 * start + k / (users * rate) seconds and goes to user first_user + k mod
 * users, so every user gets exactly `rate` events per second, spread
 * evenly over the second. Its "ts" is that scheduled time, not the moment
 * it was sent: an event the path is too slow to take counts its wait as
 * latency at the receiver (no coordinated omission), as sse-publish does.
 *
 * A 1 ms timer sends what is due. Mode "events": what the tick has due
 * as one EVENT_PUBLISH_BATCH (at most S_BATCH events, envelope user 0) to
 * the events service through this actor's own MDP client, at most
 * S_INFLIGHT_REQS unanswered, each remembered by correlation id with its
 * event count. Mode "events1": one EVENT_PUBLISH per event, at most
 * S_INFLIGHT unanswered. Replies are drained on each tick. Mode "bus": USER_EVENT
 * {id, data} published on u/<user>/ directly (ids "<ms>-<k>", not in any
 * log). What is still unsent S_GRACE_US after the schedule ends is counted
 * as unsent; replies still missing S_DRAIN_US later count as failed. The
 * run request is then answered {mode, scheduled, sent, unsent, acked,
 * failed, elapsed_ms, lag_max_ms, lag_avg_us}; "lag" is how late against
 * its schedule an event was handed to ZeroMQ.
 *
 * Bounded: users <= S_USERS_MAX, rate <= S_RATE_MAX, seconds <=
 * S_SECONDS_MAX, users * rate <= S_TOTAL_RATE_MAX events/s.
 */
#include "actors/loadgen/loadgen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/client.h"
#include "runtime/clock.h"

#define S_USERS_MAX      100000
#define S_RATE_MAX       100
#define S_SECONDS_MAX    600
#define S_TOTAL_RATE_MAX 200000
#define S_INFLIGHT       2000 /* EVENT_PUBLISH requests unanswered at once */
#define S_TICK_MS        1
#define S_GRACE_US       1000000 /* sending may run this late, then: unsent */
#define S_DRAIN_US       5000000 /* replies may take this long after sending */
#define S_CALL_TIMEOUT   5000    /* each EVENT_PUBLISH's deadline, ms */
#define S_DRAIN_BATCH    4096    /* replies read per tick */
#define S_BATCH          500     /* events per EVENT_PUBLISH_BATCH ("events" mode) */
#define S_INFLIGHT_REQS  64      /* EVENT_PUBLISH_BATCH requests unanswered at once */

typedef enum { S_MODE_EVENTS, S_MODE_EVENTS1, S_MODE_BUS } s_mode_t;
static const char *const s_mode_names[] = {"events", "events1", "bus"};

/* A batch request in flight: its correlation id and how many events. */
typedef struct {
    uint64_t corr, n;
} s_batch_t;

typedef struct {
    ain_actor_t *actor;
    ain_client_t *client; /* to the events service */
    msgpack_sbuffer body;
    ain_request_t *run; /* the run being served, or NULL */
    int timer;
    s_mode_t mode;
    bool bus;
    s_batch_t batches[S_INFLIGHT_REQS]; /* "events" mode: requests in flight */
    size_t nbatches;
    uint64_t users, first, rate, seconds, scheduled, next;
    uint64_t sent, unsent, acked, failed, inflight;
    int64_t start_wall_us, start_mono_us, sent_end_us; /* sent_end_us: 0 while sending */
    int64_t lag_max_us, lag_sum_us;
    ain_metric_t *m_sent, *m_unsent, *m_failed, *m_runs;
} s_state_t;

static int64_t s_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* When event k is due, in microseconds after the start. */
static int64_t s_due_us(const s_state_t *st, uint64_t k)
{
    return (int64_t)(k * UINT64_C(1000000) / (st->users * st->rate));
}

/* Event k's data and due stamp (CLOCK_REALTIME µs). */
static int64_t s_event(const s_state_t *st, uint64_t k, char *data, size_t size)
{
    uint64_t user = st->first + k % st->users;
    int64_t ts = st->start_wall_us + s_due_us(st, k);
    snprintf(data, size,
             "{\"type\":\"bench\",\"ts\":%" PRId64 ",\"seq\":%" PRIu64 ",\"user\":\"%" PRIu64 "\"}",
             ts, k, user);
    return ts;
}

static void s_count_sent(s_state_t *st, int64_t ts, int64_t now_wall)
{
    int64_t lag = now_wall - ts;
    st->lag_sum_us += lag > 0 ? lag : 0;
    if (lag > st->lag_max_us)
        st->lag_max_us = lag;
    st->sent++;
}

/* Sends st->body to the events service as a `type` request on behalf of `user` (0: this trusted
 * service), with its deadline; its correlation id into *corr (may be NULL). 0, or -1 if it
 * cannot go now. */
static int s_call_events(s_state_t *st, uint16_t type, uint64_t user, uint64_t *corr)
{
    ain_envelope_t env = {type,
                          0,
                          user,
                          ain_clock_wall_ms() + S_CALL_TIMEOUT,
                          0,
                          AIN_STATUS_OK,
                          (const uint8_t *)st->body.data,
                          st->body.size};
    if (ain_client_send(st->client, "events", &env) < 0)
        return -1;
    if (corr)
        *corr = env.corr;
    return 0;
}

/* Sends event k alone (modes "bus" and "events1"); returns 0, or -1 if it
 * cannot go now (try again later). */
static int s_send(s_state_t *st, uint64_t k, int64_t now_wall)
{
    uint64_t user = st->first + k % st->users;
    char data[160], id[48];
    int64_t ts = s_event(st, k, data, sizeof data);
    msgpack_packer pk;
    st->body.size = 0;
    msgpack_packer_init(&pk, &st->body, msgpack_sbuffer_write);
    int rc;
    if (st->bus) {
        char topic[AIN_TOPIC_MAX];
        ain_topic_user(topic, sizeof topic, user);
        snprintf(id, sizeof id, "%" PRId64 "-%" PRIu64, ts / 1000, k);
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_str(&pk, "id", id);
        ain_mp_pack_kv_str(&pk, "data", data);
        ain_envelope_t env = {
            AIN_MSG_USER_EVENT, 0, user, 0, 0, AIN_STATUS_OK, (const uint8_t *)st->body.data,
            st->body.size};
        rc = ain_actor_publish(st->actor, topic, &env);
        if (rc < 0) /* dropped by a full bus socket: counted, not retried */
            st->failed++;
    } else {
        msgpack_pack_map(&pk, 1);
        ain_mp_pack_kv_str(&pk, "data", data);
        if (s_call_events(st, AIN_MSG_EVENT_PUBLISH, user, NULL) < 0)
            return -1;
        st->inflight++;
    }
    s_count_sent(st, ts, now_wall);
    return 0;
}

/* Sends events k .. k + n - 1 as one EVENT_PUBLISH_BATCH (envelope user 0:
 * a trusted service); returns 0, or -1 if it cannot go now. */
static int s_send_batch(s_state_t *st, uint64_t k, uint64_t n, int64_t now_wall)
{
    char data[160];
    msgpack_packer pk;
    st->body.size = 0;
    msgpack_packer_init(&pk, &st->body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_str(&pk, "events");
    msgpack_pack_array(&pk, n);
    for (uint64_t i = k; i < k + n; i++) {
        s_event(st, i, data, sizeof data);
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_u64(&pk, "user", st->first + i % st->users);
        ain_mp_pack_kv_str(&pk, "data", data);
    }
    uint64_t corr;
    if (s_call_events(st, AIN_MSG_EVENT_PUBLISH_BATCH, 0, &corr) < 0)
        return -1;
    st->batches[st->nbatches++] = (s_batch_t){corr, n};
    st->inflight += n;
    for (uint64_t i = k; i < k + n; i++)
        s_count_sent(st, st->start_wall_us + s_due_us(st, i), now_wall);
    return 0;
}

/* How many events a reply answers (batches: looked up by corr, removed). */
static uint64_t s_reply_events(s_state_t *st, uint64_t corr)
{
    if (st->mode != S_MODE_EVENTS)
        return 1;
    for (size_t i = 0; i < st->nbatches; i++) {
        if (st->batches[i].corr == corr) {
            uint64_t n = st->batches[i].n;
            st->batches[i] = st->batches[--st->nbatches];
            return n;
        }
    }
    return 0; /* a reply to a request of an earlier run, timed out */
}

static void s_drain(s_state_t *st)
{
    ain_reply_t reply;
    for (int i = 0;
         i < S_DRAIN_BATCH && st->inflight > 0 && ain_client_recv(st->client, &reply, 0) == 1;
         i++) {
        uint64_t n = s_reply_events(st, reply.env.corr);
        st->inflight -= n < st->inflight ? n : st->inflight;
        if (reply.env.status == AIN_STATUS_OK)
            st->acked += n;
        else
            st->failed += n;
        ain_reply_close(&reply);
    }
}

static void s_answer(s_state_t *st, int64_t now_mono)
{
    st->failed += st->inflight; /* never answered within S_DRAIN_US */
    ain_metric_add(st->m_sent, (int64_t)st->sent);
    ain_metric_add(st->m_unsent, (int64_t)st->unsent);
    ain_metric_add(st->m_failed, (int64_t)st->failed);
    msgpack_packer *pk = ain_actor_body(st->actor);
    msgpack_pack_map(pk, 9);
    ain_mp_pack_kv_str(pk, "mode", s_mode_names[st->mode]);
    ain_mp_pack_kv_u64(pk, "scheduled", st->scheduled);
    ain_mp_pack_kv_u64(pk, "sent", st->sent);
    ain_mp_pack_kv_u64(pk, "unsent", st->unsent);
    ain_mp_pack_kv_u64(pk, "acked", st->bus ? st->sent - st->failed : st->acked);
    ain_mp_pack_kv_u64(pk, "failed", st->failed);
    ain_mp_pack_kv_u64(pk, "elapsed_ms", (uint64_t)((now_mono - st->start_mono_us) / 1000));
    ain_mp_pack_kv_u64(pk, "lag_max_ms",
                       (uint64_t)(st->lag_max_us > 0 ? st->lag_max_us / 1000 : 0));
    ain_mp_pack_kv_u64(pk, "lag_avg_us", st->sent ? (uint64_t)st->lag_sum_us / st->sent : 0);
    ain_request_reply_packed(st->run, AIN_STATUS_OK);
    st->run = NULL;
    ain_actor_timer_cancel(st->actor, st->timer);
    st->timer = 0;
}

/* "events" mode: what is due goes in batches of at most S_BATCH. */
static void s_send_due_batches(s_state_t *st, int64_t elapsed, int64_t wall)
{
    while (st->nbatches < S_INFLIGHT_REQS) {
        uint64_t n = 0;
        while (n < S_BATCH && st->next + n < st->scheduled && s_due_us(st, st->next + n) <= elapsed)
            n++;
        if (n == 0 || s_send_batch(st, st->next, n, wall) < 0)
            return;
        st->next += n;
    }
}

static void s_tick(ain_actor_t *actor, void *arg)
{
    s_state_t *st = arg;
    (void)actor;
    int64_t now = ain_clock_mono_us(), elapsed = now - st->start_mono_us;
    if (!st->sent_end_us) {
        int64_t wall = s_wall_us();
        if (st->mode == S_MODE_EVENTS)
            s_send_due_batches(st, elapsed, wall);
        else
            while (st->next < st->scheduled && s_due_us(st, st->next) <= elapsed &&
                   (st->bus || st->inflight < S_INFLIGHT) && s_send(st, st->next, wall) == 0)
                st->next++;
        bool late = elapsed >= s_due_us(st, st->scheduled - 1) + S_GRACE_US;
        if (st->next == st->scheduled || late) {
            st->unsent = st->scheduled - st->next;
            st->sent_end_us = now;
        }
    }
    if (!st->bus)
        s_drain(st);
    if (st->sent_end_us && (st->inflight == 0 || now - st->sent_end_us >= S_DRAIN_US))
        s_answer(st, now);
}

static int s_run(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    uint64_t users = 0, first = 1, rate = 1, seconds = 0;
    const char *mode = "events";
    size_t mode_len = 6;
    bool ok = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
              ain_mp_get_u64(body.root, "users", &users) == 1 &&
              ain_mp_get_u64(body.root, "first_user", &first) >= 0 &&
              ain_mp_get_u64(body.root, "rate", &rate) >= 0 &&
              ain_mp_get_u64(body.root, "seconds", &seconds) == 1 &&
              ain_mp_get_str(body.root, "mode", &mode, &mode_len) >= 0;
    int m = -1;
    for (int i = 0; ok && i < 3; i++)
        if (strlen(s_mode_names[i]) == mode_len && memcmp(mode, s_mode_names[i], mode_len) == 0)
            m = i;
    bool bus = m == S_MODE_BUS;
    ok = ok && m >= 0 && users >= 1 && users <= S_USERS_MAX && first >= 1 && rate >= 1 &&
         rate <= S_RATE_MAX && seconds >= 1 && seconds <= S_SECONDS_MAX &&
         users * rate <= S_TOTAL_RATE_MAX;
    ain_body_release(&body);
    if (!ok) {
        ain_request_fail(req, AIN_STATUS_INVALID,
                         "body must be {users <= 100000, first_user? >= 1, rate? <= 100, seconds "
                         "<= 600, mode?: events|events1|bus}, users * rate <= 200000");
        return 0;
    }
    if (st->run) {
        ain_request_fail(req, AIN_STATUS_BUSY, "a run is in progress");
        return 0;
    }
    *st = (s_state_t){.actor = st->actor,
                      .client = st->client,
                      .body = st->body,
                      .run = req,
                      .mode = (s_mode_t)m,
                      .bus = bus,
                      .users = users,
                      .first = first,
                      .rate = rate,
                      .seconds = seconds,
                      .scheduled = users * rate * seconds,
                      .m_sent = st->m_sent,
                      .m_unsent = st->m_unsent,
                      .m_failed = st->m_failed,
                      .m_runs = st->m_runs};
    st->start_wall_us = s_wall_us();
    st->start_mono_us = ain_clock_mono_us();
    ain_metric_inc(st->m_runs);
    ain_info(ain_actor_log(actor),
             "loadgen: %" PRIu64 " users from %" PRIu64 ", %" PRIu64 "/s each, %" PRIu64 " s, %s",
             users, first, rate, seconds, s_mode_names[m]);
    st->timer = ain_actor_timer(actor, S_TICK_MS, true, s_tick, st);
    return 0;
}

static int s_start(ain_actor_t *actor)
{
    const ain_proc_t *proc = ain_actor_proc(actor);
    s_state_t *st = AIN_NEW(s_state_t);
    st->actor = actor;
    st->client = ain_client_new(ain_proc_zmq(proc), ain_proc_broker(proc), ain_proc_config(proc));
    if (!st->client) {
        free(st);
        return -1;
    }
    msgpack_sbuffer_init(&st->body);
    ain_metrics_t *m = ain_actor_metrics(actor);
    st->m_sent = ain_metrics_counter(m, "loadgen.sent");
    st->m_unsent = ain_metrics_counter(m, "loadgen.unsent");
    st->m_failed = ain_metrics_counter(m, "loadgen.failed");
    st->m_runs = ain_metrics_counter(m, "loadgen.runs");
    ain_actor_set_state(actor, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    /* A run still going is the skeleton's to answer at stop. */
    ain_client_destroy(&st->client);
    msgpack_sbuffer_destroy(&st->body);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_LOADGEN_RUN, s_run},
    {0, NULL},
};

const ain_actor_def_t ain_loadgen_actor = {
    .service = "loadgen",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
};
