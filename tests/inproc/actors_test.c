/* actors_test.c: the actors and the skeleton over inproc, in one process.
 *
 * Each test starts a bundle without the edge (broker and actor threads on
 * inproc endpoints unique to it) and talks to it with our own client and a
 * bus subscriber, as the edge would. Two bundles run side by side in one
 * test, which only works because nothing in the runtime is global.
 *
 *   ain_actors_test NAME     runs one test (ctest gives each its own)
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deploy/bundle.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/bus.h"
#include "runtime/call.h"
#include "runtime/client.h"
#include "runtime/clock.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

typedef struct {
    ain_config_t *cfg;
    ain_bundle_t *bundle;
    ain_client_t *client;
} s_fixture_t;

static int s_start(s_fixture_t *fx, const char *actors, const char *extra)
{
    char level[] = "LOG_LEVEL=warn", interval[] = "AINBOX_METRICS_INTERVAL_MS=100";
    char *more = extra ? ain_strdup(extra) : NULL;
    char *env[] = {level, interval, more, NULL};
    char *error = NULL;
    fx->cfg = ain_config_load(env, "", stderr, &error);
    free(more);
    if (!fx->cfg) {
        fprintf(stderr, "config: %s\n", error);
        free(error);
        return -1;
    }
    ain_bundle_opts_t opts = {false, false, actors};
    fx->bundle = ain_bundle_new(fx->cfg, &opts);
    if (!fx->bundle)
        return -1;
    const ain_proc_t *proc = ain_bundle_proc(fx->bundle);
    fx->client = ain_client_new(ain_proc_zmq(proc), ain_proc_broker(proc), fx->cfg);
    return fx->client ? 0 : -1;
}

static void s_stop(s_fixture_t *fx)
{
    ain_client_destroy(&fx->client);
    ain_bundle_destroy(&fx->bundle);
    ain_config_destroy(&fx->cfg);
}

/* Calls and returns the status; the reply is closed unless `keep`. */
static ain_status_t s_call(s_fixture_t *fx, const char *service, uint16_t type, uint64_t user,
                           const void *body, size_t len, ain_reply_t *keep)
{
    ain_reply_t reply;
    ain_status_t st = ain_client_call(fx->client, service, type, user, body, len, 2000, &reply);
    if (keep)
        *keep = reply;
    else
        ain_reply_close(&reply);
    return st;
}

static size_t s_pack_map(msgpack_sbuffer *sb, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t s_pack_map(msgpack_sbuffer *sb, const char *key, const char *fmt, ...)
{
    char value[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    msgpack_packer pk;
    sb->size = 0;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_str(&pk, key, value);
    return sb->size;
}

/* ------------------------------------------------------------------ tests */

static int test_echo(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "echo", NULL) == 0);
    ain_reply_t reply;
    CHECK(s_call(&fx, "echo", AIN_MSG_ECHO, 0, "hello", 5, &reply) == AIN_STATUS_OK);
    CHECK(reply.env.body_len == 5 && memcmp(reply.env.body, "hello", 5) == 0);
    ain_reply_close(&reply);

    /* Deferred answers: three delayed echoes in flight at once, sent
     * longest delay first, come back shortest first: the actor held all
     * three at once instead of answering one after another (no clock is
     * read: the order says it). */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t corrs[3];
    for (int i = 0; i < 3; i++) {
        sb.size = 0;
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_u64(&pk, "delay_ms", (uint64_t)(600 - 250 * i));
        ain_mp_pack_str(&pk, "data");
        msgpack_pack_bin_with_body(&pk, "later", 5);
        ain_envelope_t env = {AIN_MSG_ECHO_DELAY,       0,      0, 0, 0, AIN_STATUS_OK,
                              (const uint8_t *)sb.data, sb.size};
        CHECK(ain_client_send(fx.client, "echo", &env) == 0);
        corrs[i] = env.corr;
    }
    for (int i = 2; i >= 0; i--) {
        CHECK(ain_client_recv(fx.client, &reply, 5000) == 1);
        CHECK(reply.env.status == AIN_STATUS_OK && reply.env.body_len == 5);
        CHECK(reply.env.corr == corrs[i]);
        ain_reply_close(&reply);
    }
    /* A body that is not {delay_ms, data} is INVALID, not a crash. */
    CHECK(s_call(&fx, "echo", AIN_MSG_ECHO_DELAY, 0, "\x93\x01", 2, NULL) == AIN_STATUS_INVALID);
    /* Faults are off unless configured. */
    CHECK(s_call(&fx, "echo", AIN_MSG_ECHO_FAULT, 0, NULL, 0, NULL) == AIN_STATUS_DENIED);
    msgpack_sbuffer_destroy(&sb);
    s_stop(&fx);
    return 0;
}

static int test_skeleton(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "echo", NULL) == 0);
    ain_reply_t reply;
    /* Built-in PING and STATS: identity and metrics. */
    CHECK(s_call(&fx, "echo", AIN_MSG_PING, 0, NULL, 0, &reply) == AIN_STATUS_OK);
    ain_body_t body;
    const char *service;
    size_t len;
    CHECK(ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK);
    CHECK(ain_mp_get_str(body.root, "service", &service, &len) == 1 && len == 4);
    ain_body_release(&body);
    ain_reply_close(&reply);
    CHECK(s_call(&fx, "echo", AIN_MSG_STATS, 0, NULL, 0, &reply) == AIN_STATUS_OK);
    CHECK(ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK);
    uint64_t requests = 0;
    CHECK(ain_mp_get_u64(ain_mp_get(body.root, "metrics"), "requests", &requests) == 1);
    CHECK(requests >= 2);
    ain_body_release(&body);
    ain_reply_close(&reply);
    /* A type another service answers is refused by the broker. */
    CHECK(s_call(&fx, "echo", AIN_MSG_EVENT_PUBLISH, 1, NULL, 0, NULL) == AIN_STATUS_INVALID);
    /* A request whose deadline passed is answered TIMEOUT, at once. */
    ain_envelope_t late = {AIN_MSG_ECHO, 0, 0, ain_clock_wall_ms() - 10, 0, AIN_STATUS_OK, NULL, 0};
    CHECK(ain_client_send(fx.client, "echo", &late) == 0);
    CHECK(ain_client_recv(fx.client, &reply, 2000) == 1);
    CHECK(reply.env.corr == late.corr && reply.env.status == AIN_STATUS_TIMEOUT);
    ain_reply_close(&reply);
    s_stop(&fx);
    return 0;
}

/* The metric `name` of `service`'s STATS, or -1. */
static int64_t s_stat(s_fixture_t *fx, const char *service, const char *name)
{
    ain_reply_t reply;
    ain_body_t body;
    int64_t value = -1;
    if (s_call(fx, service, AIN_MSG_STATS, 0, NULL, 0, &reply) != AIN_STATUS_OK)
        return -1;
    if (ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK) {
        if (ain_mp_get_i64(ain_mp_get(body.root, "metrics"), name, &value) != 1)
            value = -1;
        ain_body_release(&body);
    }
    ain_reply_close(&reply);
    return value;
}

/* A handler whose work outlives its request's deadline: the skeleton
 * answers TIMEOUT for it, and the handler's late reply (the echo's timer)
 * finds the request still valid, sends nothing and frees it. Before
 * requests had one owner this was a use-after-free (ASan fails it). */
static int test_late_reply(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "echo", NULL) == 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_u64(&pk, "delay_ms", 1800);
    ain_mp_pack_str(&pk, "data");
    msgpack_pack_bin_with_body(&pk, "late", 4);
    ain_envelope_t env = {AIN_MSG_ECHO_DELAY,        0,      0,
                          ain_clock_wall_ms() + 300, 0,      AIN_STATUS_OK,
                          (const uint8_t *)sb.data,  sb.size};
    CHECK(ain_client_send(fx.client, "echo", &env) == 0);
    ain_reply_t reply;
    CHECK(ain_client_recv(fx.client, &reply, 5000) == 1);
    CHECK(reply.env.corr == env.corr && reply.env.status == AIN_STATUS_TIMEOUT);
    ain_reply_close(&reply);
    /* The skeleton answers it (deadline + grace), then the timer fires. */
    int64_t until = ain_clock_mono_ms() + 10000;
    while (s_stat(&fx, "echo", "requests.late") < 1 && ain_clock_mono_ms() < until)
        usleep(50 * 1000);
    CHECK(s_stat(&fx, "echo", "requests.unanswered") == 1);
    CHECK(s_stat(&fx, "echo", "requests.late") == 1);
    CHECK(s_stat(&fx, "echo", "requests.orphans") == 0);
    /* Exactly one answer reached the caller, and the actor still serves. */
    CHECK(ain_client_recv(fx.client, &reply, 200) == 0);
    CHECK(s_call(&fx, "echo", AIN_MSG_ECHO, 0, "again", 5, NULL) == AIN_STATUS_OK);
    msgpack_sbuffer_destroy(&sb);
    s_stop(&fx);
    return 0;
}

/* EVENT_PUBLISH_BATCH {events: [{user, data}]} of `n` events for users
 * 42, 43, ...; events[bad] (if < n) has data that is not an object. */
static size_t s_pack_batch(msgpack_sbuffer *sb, size_t n, size_t bad)
{
    msgpack_packer pk;
    sb->size = 0;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_str(&pk, "events");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_u64(&pk, "user", 42 + i);
        ain_mp_pack_kv_str(&pk, "data", i == bad ? "[1]" : "{\"type\":\"b\"}");
    }
    return sb->size;
}

/* Batches without Redis (this fixture has none): local ids, logged false;
 * only envelope user 0; a malformed member refuses all, named. */
static int s_events_batch(s_fixture_t *fx, msgpack_sbuffer *sb)
{
    ain_reply_t reply;
    size_t n = s_pack_batch(sb, 3, 3);
    CHECK(s_call(fx, "events", AIN_MSG_EVENT_PUBLISH_BATCH, 0, sb->data, n, &reply) ==
          AIN_STATUS_OK);
    ain_body_t body;
    bool logged = true;
    CHECK(ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK);
    const msgpack_object *ids = ain_mp_get(body.root, "ids");
    CHECK(ids && ids->type == MSGPACK_OBJECT_ARRAY && ids->via.array.size == 3);
    CHECK(ain_mp_get_bool(body.root, "logged", &logged) == 1 && !logged);
    ain_body_release(&body);
    ain_reply_close(&reply);
    CHECK(s_call(fx, "events", AIN_MSG_EVENT_PUBLISH_BATCH, 42, sb->data, n, NULL) ==
          AIN_STATUS_DENIED);
    n = s_pack_batch(sb, 3, 1);
    CHECK(s_call(fx, "events", AIN_MSG_EVENT_PUBLISH_BATCH, 0, sb->data, n, &reply) ==
          AIN_STATUS_INVALID);
    const char *msg = NULL;
    size_t mlen = 0;
    CHECK(ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK);
    CHECK(ain_mp_get_str(body.root, "message", &msg, &mlen) == 1 && mlen > 9 &&
          strncmp(msg, "events[1]", 9) == 0);
    ain_body_release(&body);
    ain_reply_close(&reply);
    n = s_pack_batch(sb, 1001, 1001);
    CHECK(s_call(fx, "events", AIN_MSG_EVENT_PUBLISH_BATCH, 0, sb->data, n, NULL) ==
          AIN_STATUS_INVALID);
    return 0;
}

static int test_events(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "events", NULL) == 0);
    const ain_proc_t *proc = ain_bundle_proc(fx.bundle);
    ain_bus_sub_t *sub = ain_bus_sub_new(proc);
    char topic[AIN_TOPIC_MAX];
    ain_topic_user(topic, sizeof topic, 42);
    CHECK(ain_bus_subscribe(sub, topic) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* Subscriptions travel to the publisher asynchronously: publish until
     * one arrives (bounded), then check that exactly what was sent came. */
    ain_bus_msg_t msg;
    int got = 0;
    for (int i = 0; i < 50 && !got; i++) {
        size_t n = s_pack_map(&sb, "data", "{\"type\":\"new_email\",\"n\":%d}", i);
        CHECK(s_call(&fx, "events", AIN_MSG_EVENT_PUBLISH, 42, sb.data, n, NULL) == AIN_STATUS_OK);
        zmq_pollitem_t item = {ain_bus_sub_socket(sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 50) > 0 && ain_bus_recv(sub, &msg) == 1)
            got = 1;
    }
    CHECK(got);
    CHECK(msg.env.type == AIN_MSG_USER_EVENT && msg.env.user == 42);
    ain_body_t body;
    const char *data, *id;
    size_t dlen, ilen;
    CHECK(ain_body_parse(&body, msg.env.body, msg.env.body_len) == AIN_STATUS_OK);
    CHECK(ain_mp_get_str(body.root, "data", &data, &dlen) == 1 && memchr(data, '\n', dlen) == 0);
    CHECK(ain_mp_get_str(body.root, "id", &id, &ilen) == 1 && memchr(id, '-', ilen));
    ain_body_release(&body);
    ain_bus_msg_close(&msg);
    /* Refusals: no user, not JSON, no "type", not an object. */
    size_t n = s_pack_map(&sb, "data", "{\"type\":\"x\"}");
    CHECK(s_call(&fx, "events", AIN_MSG_EVENT_PUBLISH, 0, sb.data, n, NULL) == AIN_STATUS_INVALID);
    const char *bad[] = {"{not json", "{\"kind\":1}", "[1,2]", "{\"type\":5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = s_pack_map(&sb, "data", "%s", bad[i]);
        CHECK(s_call(&fx, "events", AIN_MSG_EVENT_PUBLISH, 7, sb.data, n, NULL) ==
              AIN_STATUS_INVALID);
    }
    CHECK(s_events_batch(&fx, &sb) == 0);
    msgpack_sbuffer_destroy(&sb);
    ain_bus_sub_destroy(&sub);
    s_stop(&fx);
    return 0;
}

/* The monitor reports every process that publishes metrics. */
static int s_overview_has(s_fixture_t *fx, const char *service)
{
    ain_reply_t reply;
    if (s_call(fx, "monitor", AIN_MSG_MONITOR_OVERVIEW, 0, NULL, 0, &reply) != AIN_STATUS_OK)
        return 0;
    ain_body_t body;
    int found = 0;
    if (ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK) {
        const msgpack_object *list = ain_mp_get(body.root, "processes");
        for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size;
             i++) {
            const char *name;
            size_t len;
            const msgpack_object *report = ain_mp_get(&list->via.array.ptr[i], "report");
            if (ain_mp_get_str(report, "service", &name, &len) == 1 && len == strlen(service) &&
                memcmp(name, service, len) == 0)
                found = 1;
        }
    }
    ain_body_release(&body);
    ain_reply_close(&reply);
    return found;
}

static int test_monitor(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "monitor,echo", NULL) == 0);
    int64_t until = ain_clock_mono_ms() + 5000;
    while (!(s_overview_has(&fx, "broker") && s_overview_has(&fx, "echo")) &&
           ain_clock_mono_ms() < until)
        zmq_poll(NULL, 0, 50);
    CHECK(s_overview_has(&fx, "broker") && s_overview_has(&fx, "echo") &&
          s_overview_has(&fx, "monitor"));
    s_stop(&fx);
    return 0;
}

static int test_two_bundles(void)
{
    s_fixture_t a, b;
    CHECK(s_start(&a, "echo", NULL) == 0);
    CHECK(s_start(&b, "echo", NULL) == 0);
    CHECK(strcmp(ain_proc_broker(ain_bundle_proc(a.bundle)),
                 ain_proc_broker(ain_bundle_proc(b.bundle))) != 0);
    for (int i = 0; i < 100; i++) {
        CHECK(s_call(&a, "echo", AIN_MSG_ECHO, 0, "a", 1, NULL) == AIN_STATUS_OK);
        CHECK(s_call(&b, "echo", AIN_MSG_ECHO, 0, "b", 1, NULL) == AIN_STATUS_OK);
    }
    s_stop(&a);
    CHECK(s_call(&b, "echo", AIN_MSG_ECHO, 0, "b", 1, NULL) == AIN_STATUS_OK);
    s_stop(&b);
    return 0;
}

static int test_no_worker_times_out(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "echo", "AINBOX_REQUEST_TIMEOUT_MS=300") == 0);
    ain_reply_t reply;
    /* A service nobody serves: the request waits in its queue until the
     * deadline, then the broker answers TIMEOUT (the client's own deadline
     * is a little later, so the broker's answer is what arrives). */
    ain_envelope_t env = {AIN_MSG_PING, 0, 0, ain_clock_wall_ms() + 300, 0, AIN_STATUS_OK, NULL, 0};
    CHECK(ain_client_send(fx.client, "nobody", &env) == 0);
    CHECK(ain_client_recv(fx.client, &reply, 2000) == 1);
    CHECK(reply.env.corr == env.corr && reply.env.status == AIN_STATUS_TIMEOUT);
    ain_reply_close(&reply);
    CHECK(ain_client_mmi_service(fx.client, "nobody", 1000) == 404);
    CHECK(ain_client_mmi_service(fx.client, "echo", 1000) == 200);
    s_stop(&fx);
    return 0;
}

/* ------------------------------------------------------------ ain_call */

/* What the calling actor saw, read by the test thread once it stopped
 * (joined). */
static struct {
    int echo_status, echo_len, late_status, nobody_status, cancelled_runs;
    atomic_int done; /* polled by the test thread meanwhile */
    char echo_body[16];
} s_seen;

static void s_on_echo(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    (void)arg;
    s_seen.echo_status = (int)status;
    if (reply && reply->body_len < sizeof s_seen.echo_body) {
        memcpy(s_seen.echo_body, reply->body, reply->body_len);
        s_seen.echo_len = (int)reply->body_len;
    }
    s_seen.done++;
}

static void s_on_late(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    (void)arg;
    s_seen.late_status = reply ? -1 : (int)status; /* no reply: it timed out */
    s_seen.done++;
}

static void s_on_nobody(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    (void)arg;
    s_seen.nobody_status = (int)status;
    s_seen.done++;
}

static void s_on_cancelled(ain_status_t status, const ain_envelope_t *reply, void *arg)
{
    (void)status;
    (void)reply;
    (void)arg;
    s_seen.cancelled_runs++;
}

static int s_caller_start(ain_actor_t *actor)
{
    ain_calls_t *calls = ain_calls_new(actor, 0);
    if (!calls)
        return -1;
    ain_actor_set_state(actor, calls);
    int64_t now = ain_clock_wall_ms();
    if (!ain_call(calls, "echo", AIN_MSG_ECHO, 0, "hello", 5, 0, s_on_echo, NULL))
        return -1;
    /* Answered by the echo after 800 ms, past this call's 200 ms deadline:
     * the callback says TIMEOUT, and the late reply is dropped as stray. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_u64(&pk, "delay_ms", 800);
    ain_mp_pack_str(&pk, "data");
    msgpack_pack_bin_with_body(&pk, "late", 4);
    uint64_t late = ain_call(calls, "echo", AIN_MSG_ECHO_DELAY, 0, sb.data, sb.size, now + 200,
                             s_on_late, NULL);
    msgpack_sbuffer_destroy(&sb);
    uint64_t nobody =
        ain_call(calls, "nobody", AIN_MSG_ECHO, 0, "x", 1, now + 300, s_on_nobody, NULL);
    uint64_t gone = ain_call(calls, "echo", AIN_MSG_ECHO, 0, "y", 1, 0, s_on_cancelled, NULL);
    ain_call_cancel(calls, gone);
    return late && nobody && gone ? 0 : -1;
}

static void s_caller_stop(ain_actor_t *actor)
{
    ain_calls_t *calls = ain_actor_state(actor);
    ain_calls_destroy(&calls);
}

static const ain_handler_t s_caller_handlers[] = {{0, NULL}};
static const ain_actor_def_t s_caller_def = {
    "calltest", s_caller_handlers, s_caller_start, s_caller_stop, NULL, 0};

static const ain_proc_t *s_caller_proc;

/* A plain thread, joined, rather than a zactor: TSan cannot see the
 * ordering a ZeroMQ signal gives, and would report the bundle's teardown. */
static void *s_caller_thread(void *pipe)
{
    ain_actor_run(&s_caller_def, s_caller_proc, pipe);
    return NULL;
}

/* An actor's asynchronous calls: a reply reaches its callback; a call past
 * its deadline ends TIMEOUT once, its late reply dropped (counted, never
 * handed to anyone); an unserved service times out; a cancelled call's
 * callback never runs. */
static int test_calls(void)
{
    s_fixture_t fx;
    CHECK(s_start(&fx, "echo", NULL) == 0);
    memset(&s_seen, 0, sizeof s_seen);
    atomic_init(&s_seen.done, 0);
    s_caller_proc = ain_bundle_proc(fx.bundle);
    zsock_t *back, *front = zsys_create_pipe(&back);
    pthread_t caller;
    CHECK(front && pthread_create(&caller, NULL, s_caller_thread, back) == 0);
    CHECK(zsock_wait(front) == 0); /* registered */
    int64_t until = ain_clock_mono_ms() + 10000;
    /* Two strays: the cancelled call's answer and the late echo. */
    while ((s_seen.done < 3 || s_stat(&fx, "calltest", "calls.stray_replies") < 2) &&
           ain_clock_mono_ms() < until)
        usleep(50 * 1000);
    int64_t strays = s_stat(&fx, "calltest", "calls.stray_replies");
    zstr_send(front, "$TERM");
    pthread_join(caller, NULL);
    zsock_destroy(&front);
    zsock_destroy(&back);
    fprintf(stderr, "calls: done %d, echo %d, late %d, nobody %d, strays %lld\n", s_seen.done,
            s_seen.echo_status, s_seen.late_status, s_seen.nobody_status, (long long)strays);
    CHECK(strays == 2);
    CHECK(s_seen.done == 3);
    CHECK(s_seen.echo_status == AIN_STATUS_OK && s_seen.echo_len == 5 &&
          memcmp(s_seen.echo_body, "hello", 5) == 0);
    CHECK(s_seen.late_status == AIN_STATUS_TIMEOUT);
    CHECK(s_seen.nobody_status != AIN_STATUS_OK); /* the broker's answer, or our deadline */
    CHECK(s_seen.cancelled_runs == 0);
    s_stop(&fx);
    return 0;
}

static const struct {
    const char *name;
    int (*run)(void);
} s_tests[] = {
    {"echo", test_echo},
    {"skeleton", test_skeleton},
    {"late_reply", test_late_reply},
    {"calls", test_calls},
    {"events", test_events},
    {"monitor", test_monitor},
    {"two_bundles", test_two_bundles},
    {"no_worker", test_no_worker_times_out},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++) {
        if (argc > 1 && strcmp(argv[1], s_tests[i].name) != 0)
            continue;
        if (s_tests[i].run() != 0) {
            fprintf(stderr, "actors test %s: FAILED\n", s_tests[i].name);
            return 1;
        }
        if (argc > 1)
            return 0;
    }
    return argc > 1 ? 2 : 0;
}
