/* events.c: the events actor (see events.h).
 *
 * The event's JSON is parsed and written back compactly: an SSE `data:`
 * line must not contain a newline, and nothing that is not a JSON object
 * with a string "type" reaches a browser.
 *
 * EVENT_PUBLISH appends the event to the user's log in Redis (evlog.h)
 * and publishes it on the bus only once the append answered, with the
 * stream entry's id: whoever replays the log after seeing an id live
 * finds that id there. Appends go out on one connection and Redis answers
 * them in order, so one actor publishes a user's events in id order.
 *
 * Redis down (not connected, an error, or no answer within
 * AINBOX_REDIS_TIMEOUT_MS): the event is published live anyway, with an id
 * of this actor's own (`<ms>-<2^32 + seq>`, never a Redis entry id: Redis
 * numbers entries within a millisecond from 0), counted in
 * `events.unlogged` and answered {id, logged: false}. Live push keeps
 * working; a client that resumes from such an id is told `reset` (the id
 * is not in the log), so it refetches instead of silently missing events.
 *
 * A batch's event may carry a key (the mail writer's "o<outbox row>.<i>"):
 * the append script appends a key seen for that user within the window
 * only once and answers the first append's id with "=" in front; such an
 * event is answered with that id and not published again, so a write
 * announced twice (its writer, then a relay) reaches the user once.
 *
 * EVENT_REPLAY answers from the log; with Redis down it answers
 * UNAVAILABLE (the edge then tells the client `reset`).
 */
#include "actors/events/events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/events/eventid.h"
#include "actors/events/evlog.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/redis.h"

#define S_MAX_EVENT_BYTES (64 * 1024)
/* Replay pages: events and data bytes per answer (a page always holds at
 * least one event). */
#define S_REPLAY_LIMIT_DEFAULT 256
#define S_REPLAY_LIMIT_MAX     1000
#define S_REPLAY_BYTES         (128 * 1024)
#define S_LOCAL_SEQ_BASE       (UINT64_C(1) << 32)
/* EVENT_PUBLISH_BATCH: events and body bytes per request. */
#define S_BATCH_MAX       1000
#define S_BATCH_MAX_BYTES (1024 * 1024)

typedef struct {
    ain_actor_t *actor;
    ain_eventid_t ids;     /* local ids, for events Redis did not take */
    msgpack_sbuffer event; /* the USER_EVENT body being built */
    ain_redis_t *redis;
    ain_redis_script_t append_lua, replay_lua;
    bool stopping;
    ain_metric_t *published, *rejected, *dropped, *unlogged, *batches;
    ain_metric_t *replays, *replay_resets, *replay_failed, *redis_up, *duplicates;
} s_state_t;

/* Appends (one event, or a batch) waiting for Redis. users[i], json[i]
 * (owned) for each of the n events. */
typedef struct {
    s_state_t *st;
    ain_request_t *req;
    bool batch; /* answer {ids, logged}, else {id, logged} */
    size_t n;
    uint64_t *users;
    char **json;
    char **keys; /* event keys (owned), NULL entries for none */
} s_append_t;

/* A replay waiting for Redis. */
typedef struct {
    s_state_t *st;
    ain_request_t *req;
} s_pending_t;

/* The compact JSON text of an event, or NULL with a reason. */
static char *s_check_event(const char *text, size_t len, const char **why)
{
    json_error_t err;
    json_t *j =
        len <= S_MAX_EVENT_BYTES ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &err) : NULL;
    char *out = NULL;
    *why = len > S_MAX_EVENT_BYTES ? "event larger than 64 KiB" : "data is not valid JSON";
    if (j && (!json_is_object(j) || !json_is_string(json_object_get(j, "type"))))
        *why = "data must be a JSON object with a string \"type\"";
    else if (j)
        out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return out;
}

static s_append_t *s_append_new(s_state_t *st, ain_request_t *req, bool batch, size_t n)
{
    s_append_t *a = AIN_NEW(s_append_t);
    *a = (s_append_t){st,
                      req,
                      batch,
                      n,
                      ain_calloc(n, sizeof(uint64_t)),
                      ain_calloc(n, sizeof(char *)),
                      ain_calloc(n, sizeof(char *))};
    return a;
}

static void s_append_free(s_append_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->json[i]);
        free(a->keys[i]);
    }
    free(a->json);
    free(a->keys);
    free(a->users);
    free(a);
}

/* Publishes {id, data} on u/<user>/. */
static void s_publish_event(s_state_t *st, uint64_t trace, uint64_t user, const char *id,
                            const char *json)
{
    char topic[AIN_TOPIC_MAX];
    ain_topic_user(topic, sizeof topic, user);
    msgpack_packer pk;
    st->event.size = 0;
    msgpack_packer_init(&pk, &st->event, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_str(&pk, "id", id);
    ain_mp_pack_kv_str(&pk, "data", json);
    ain_envelope_t event = {
        AIN_MSG_USER_EVENT, 0, user, 0, trace, AIN_STATUS_OK, (const uint8_t *)st->event.data,
        st->event.size};
    ain_metric_inc(ain_actor_publish(st->actor, topic, &event) == 0 ? st->published : st->dropped);
}

/* A local id that no log entry can have, into id. */
static void s_local_id(s_state_t *st, char id[AIN_EVENTID_MAX])
{
    char scratch[AIN_EVENTID_MAX];
    ain_eventid_next(&st->ids, ain_clock_wall_ms(), scratch);
    snprintf(id, AIN_EVENTID_MAX, "%" PRId64 "-%" PRIu64, st->ids.last_ms,
             S_LOCAL_SEQ_BASE + st->ids.seq);
    ain_metric_inc(st->unlogged);
}

/* True if r is an array of n stream ids, each with a "=" in front when
 * it was appended before (a key seen again), the append script's answer. */
static bool s_append_reply_ok(const redisReply *r, size_t n)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        size_t skip = e->type == REDIS_REPLY_STRING && e->len > 0 && e->str[0] == '=';
        if (e->type != REDIS_REPLY_STRING || !ain__evlog_id_valid(e->str + skip, e->len - skip) ||
            e->len - skip >= AIN_EVENTID_MAX)
            return false;
    }
    return true;
}

/* Publishes every event of `a` in order, with the ids of `r` (logged) or
 * local ones (r NULL), and answers {id, logged} or {ids, logged}. */
static void s_append_done(s_append_t *a, const redisReply *r)
{
    s_state_t *st = a->st;
    uint64_t trace = ain_request_envelope(a->req)->trace;
    msgpack_packer *reply = ain_actor_body(st->actor);
    msgpack_pack_map(reply, 2);
    ain_mp_pack_str(reply, a->batch ? "ids" : "id");
    if (a->batch)
        msgpack_pack_array(reply, a->n);
    for (size_t i = 0; i < a->n; i++) {
        char id[AIN_EVENTID_MAX];
        /* Appended before under its key: published then, not again. */
        bool again = r && r->element[i]->str[0] == '=';
        if (r)
            memcpy(id, r->element[i]->str + again, r->element[i]->len - again + 1);
        else
            s_local_id(st, id);
        if (again)
            ain_metric_inc(st->duplicates);
        else
            s_publish_event(st, trace, a->users[i], id, a->json[i]);
        ain_mp_pack_str(reply, id);
    }
    ain_mp_pack_str(reply, "logged");
    if (r)
        msgpack_pack_true(reply);
    else
        msgpack_pack_false(reply);
    ain_request_reply_packed(a->req, AIN_STATUS_OK);
}

static void s_on_appended(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_append_t *a = arg;
    s_state_t *st = a->st;
    (void)redis;
    if (!st->stopping) {
        bool ok = s_append_reply_ok(r, a->n);
        if (!ok && r && r->type == REDIS_REPLY_ERROR)
            ain_warn(ain_actor_log(st->actor), "events: log append: %s", r->str);
        s_append_done(a, ok ? r : NULL);
    }
    s_append_free(a);
}

/* Appends the events of `a` with one script call (takes `a`); with Redis
 * down they are published with local ids at once. */
static void s_append(s_state_t *st, s_append_t *a)
{
    size_t n = a->n;
    int argc = (int)(3 * n + 4);
    const char **argv = ain_calloc((size_t)argc, sizeof *argv);
    char(*keys)[40] = ain_calloc(n, sizeof *keys);
    char keep[24], window[24], cap[24], idle[24];
    snprintf(keep, sizeof keep, "%d", AIN__EVLOG_KEEP);
    snprintf(window, sizeof window, "%d", AIN__EVLOG_WINDOW_MS);
    snprintf(cap, sizeof cap, "%d", AIN__EVLOG_CAP);
    snprintf(idle, sizeof idle, "%d", AIN__EVLOG_IDLE_MS);
    for (size_t i = 0; i < n; i++) {
        ain__evlog_key(a->users[i], keys[i], sizeof keys[i]);
        argv[i] = keys[i];
        argv[n + 4 + i] = a->json[i];
        argv[2 * n + 4 + i] = a->keys[i] ? a->keys[i] : "";
    }
    argv[n] = keep;
    argv[n + 1] = window;
    argv[n + 2] = cap;
    argv[n + 3] = idle;
    int rc = ain_redis_eval(st->redis, &st->append_lua, (int)n, argc, argv, NULL, s_on_appended, a);
    free(keys);
    free(argv);
    if (rc < 0) {
        s_append_done(a, NULL);
        s_append_free(a);
    }
}

static int s_publish(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    const char *data = NULL, *why = "body must be {data: JSON text}";
    size_t len = 0;
    char *json = NULL;
    bool parsed = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK;
    if (env->user == 0)
        why = "an event needs a user";
    else if (parsed && ain_mp_get_str(body.root, "data", &data, &len) == 1)
        json = s_check_event(data, len, &why);
    ain_body_release(&body);
    if (!json) {
        ain_metric_inc(st->rejected);
        ain_request_fail(req, AIN_STATUS_INVALID, why);
        return 0;
    }
    s_append_t *a = s_append_new(st, req, false, 1);
    a->users[0] = env->user;
    a->json[0] = json;
    s_append(st, a);
    return 0;
}

/* Reads the batch's events into `a`; returns 0, or -1 with a reason in
 * why (naming the event: "events[i]: ..."). */
static int s_batch_read(s_append_t *a, const msgpack_object *events, char *why, size_t size)
{
    for (size_t i = 0; i < a->n; i++) {
        const msgpack_object *ev = &events->via.array.ptr[i];
        const char *data = NULL, *key = NULL,
                   *reason = "must be {user >= 1, data: JSON text, key?}";
        size_t len = 0, key_len = 0;
        uint64_t user = 0;
        int has_key = ain_mp_get_str(ev, "key", &key, &key_len);
        if (has_key != 0 && (has_key != 1 || !ain__evlog_event_key_valid(key, key_len)))
            reason = "key must be 1 to 64 of A-Z a-z 0-9 . - _";
        else if (ain_mp_get_u64(ev, "user", &user) == 1 && user >= 1 &&
                 ain_mp_get_str(ev, "data", &data, &len) == 1)
            a->json[i] = s_check_event(data, len, &reason);
        if (a->json[i] && has_key == 1)
            a->keys[i] = ain_strndup(key, key_len);
        if (!a->json[i]) {
            snprintf(why, size, "events[%zu]: %s", i, reason);
            return -1;
        }
        a->users[i] = user;
    }
    return 0;
}

static int s_publish_batch(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    if (env->user != 0) {
        ain_metric_inc(st->rejected);
        ain_request_fail(req, AIN_STATUS_DENIED,
                         "a batch is for trusted services (envelope user 0)");
        return 0;
    }
    ain_body_t body;
    char why[160] = "body must be {events: [{user, data}], 1 to 1000 events, at most 1 MiB}";
    bool small = env->body_len <= S_BATCH_MAX_BYTES;
    bool parsed = small && ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK;
    const msgpack_object *events = parsed ? ain_mp_get(body.root, "events") : NULL;
    s_append_t *a = NULL;
    if (events && events->type == MSGPACK_OBJECT_ARRAY && events->via.array.size >= 1 &&
        events->via.array.size <= S_BATCH_MAX) {
        a = s_append_new(st, req, true, events->via.array.size);
        if (s_batch_read(a, events, why, sizeof why) < 0) {
            s_append_free(a);
            a = NULL;
        }
    }
    if (small) /* parsed, or tried: released in every case */
        ain_body_release(&body);
    if (!a) {
        ain_metric_inc(st->rejected);
        ain_request_fail(req, AIN_STATUS_INVALID, why);
        return 0;
    }
    ain_metric_inc(st->batches);
    s_append(st, a);
    return 0;
}

/* Packs the script's answer as {events: [{id, data}], complete, reset}. */
static void s_replay_answer(s_state_t *st, ain_request_t *req, const redisReply *r)
{
    msgpack_packer *pk = ain_actor_body(st->actor);
    bool reset = r->element[0]->integer == 0;
    size_t n = reset ? 0 : (r->elements - 1) / 2;
    msgpack_pack_map(pk, 3);
    ain_mp_pack_str(pk, "events");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = r->element[1 + 2 * i], *data = r->element[2 + 2 * i];
        msgpack_pack_map(pk, 2);
        ain_mp_pack_str(pk, "id");
        msgpack_pack_str(pk, id->len);
        msgpack_pack_str_body(pk, id->str, id->len);
        ain_mp_pack_str(pk, "data");
        msgpack_pack_str(pk, data->len);
        msgpack_pack_str_body(pk, data->str, data->len);
    }
    ain_mp_pack_str(pk, "complete");
    if (!reset && r->element[0]->integer == 1)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    ain_mp_pack_str(pk, "reset");
    if (reset)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (reset)
        ain_metric_inc(st->replay_resets);
    ain_request_reply_packed(req, AIN_STATUS_OK);
}

static bool s_replay_reply_ok(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || (r->elements - 1) % 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return false;
    for (size_t i = 1; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return false;
    return true;
}

static void s_on_replayed(ain_redis_t *redis, redisReply *r, void *arg)
{
    s_pending_t *p = arg;
    s_state_t *st = p->st;
    (void)redis;
    if (!st->stopping) {
        if (s_replay_reply_ok(r)) {
            s_replay_answer(st, p->req, r);
        } else {
            if (r && r->type == REDIS_REPLY_ERROR)
                ain_warn(ain_actor_log(st->actor), "events: log replay: %s", r->str);
            ain_metric_inc(st->replay_failed);
            ain_request_fail(p->req, AIN_STATUS_UNAVAILABLE, "the event log is not available");
        }
    }
    free(p);
}

/* An answer {events: [], complete: false, reset: true} without asking. */
static void s_replay_reset(s_state_t *st, ain_request_t *req)
{
    redisReply zero = {.type = REDIS_REPLY_INTEGER, .integer = 0};
    redisReply *elements[] = {&zero};
    redisReply r = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = elements};
    s_replay_answer(st, req, &r);
}

static int s_replay(ain_actor_t *actor, ain_request_t *req)
{
    s_state_t *st = ain_actor_state(actor);
    const ain_envelope_t *env = ain_request_envelope(req);
    ain_body_t body;
    const char *after = NULL;
    size_t after_len = 0;
    uint64_t limit = S_REPLAY_LIMIT_DEFAULT;
    bool since = false;
    bool parsed = ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK;
    bool ok = parsed && env->user != 0 &&
              ain_mp_get_str(body.root, "after", &after, &after_len) == 1 &&
              ain_mp_get_u64(body.root, "limit", &limit) >= 0 &&
              ain_mp_get_bool(body.root, "since", &since) >= 0;
    char id[AIN__EVLOG_ID_MAX + 1] = "";
    bool valid = ok && ain__evlog_id_valid(after, after_len) && after_len <= AIN__EVLOG_ID_MAX;
    if (valid)
        memcpy(id, after, after_len);
    ain_body_release(&body);
    if (!ok) {
        ain_metric_inc(st->rejected);
        ain_request_fail(req, AIN_STATUS_INVALID,
                         "body must be {after: id, limit?, since?: bool}, with a user");
        return 0;
    }
    ain_metric_inc(st->replays);
    if (!valid) { /* a malformed id cannot be in the log */
        s_replay_reset(st, req);
        return 0;
    }
    if (limit < 1 || limit > S_REPLAY_LIMIT_MAX)
        limit = limit < 1 ? 1 : S_REPLAY_LIMIT_MAX;
    char key[40], lim[24], bytes[24];
    ain__evlog_key(env->user, key, sizeof key);
    snprintf(lim, sizeof lim, "%" PRIu64, limit);
    snprintf(bytes, sizeof bytes, "%d", S_REPLAY_BYTES);
    const char *argv[] = {key, id, lim, bytes, since ? "1" : "0"};
    s_pending_t *p = AIN_NEW(s_pending_t);
    *p = (s_pending_t){st, req};
    if (ain_redis_eval(st->redis, &st->replay_lua, 1, 5, argv, NULL, s_on_replayed, p) < 0) {
        free(p);
        ain_metric_inc(st->replay_failed);
        ain_request_fail(req, AIN_STATUS_UNAVAILABLE, "the event log is not available");
    }
    return 0;
}

static void s_on_redis_state(ain_redis_t *redis, bool connected, void *arg)
{
    s_state_t *st = arg;
    ain_metric_set(st->redis_up, connected);
    if (connected) { /* ahead of any append: a burst after a reconnect stays logged */
        ain_redis_script_load(redis, &st->append_lua);
        ain_redis_script_load(redis, &st->replay_lua);
    }
}

static int s_start(ain_actor_t *actor)
{
    s_state_t *st = AIN_NEW(s_state_t);
    ain_metrics_t *m = ain_actor_metrics(actor);
    st->actor = actor;
    msgpack_sbuffer_init(&st->event);
    st->published = ain_metrics_counter(m, "events.published");
    st->rejected = ain_metrics_counter(m, "events.rejected");
    st->dropped = ain_metrics_counter(m, "events.dropped");
    st->unlogged = ain_metrics_counter(m, "events.unlogged");
    st->batches = ain_metrics_counter(m, "events.batches");
    st->duplicates = ain_metrics_counter(m, "events.duplicates");
    st->replays = ain_metrics_counter(m, "events.replays");
    st->replay_resets = ain_metrics_counter(m, "events.replay_resets");
    st->replay_failed = ain_metrics_counter(m, "events.replay_failed");
    st->redis_up = ain_metrics_gauge(m, "events.redis.connected");
    if (ain_redis_script_init(&st->append_lua, ain__evlog_append_lua) < 0 ||
        ain_redis_script_init(&st->replay_lua, ain__evlog_replay_lua) < 0) {
        msgpack_sbuffer_destroy(&st->event);
        free(st);
        return -1;
    }
    ain_actor_set_state(actor, st);
    st->redis = ain_redis_new(actor, "events", s_on_redis_state, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    st->stopping = true; /* requests still waiting for Redis were answered */
    ain_redis_destroy(&st->redis);
    msgpack_sbuffer_destroy(&st->event);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_EVENT_PUBLISH, s_publish},
    {AIN_MSG_EVENT_PUBLISH_BATCH, s_publish_batch},
    {AIN_MSG_EVENT_REPLAY, s_replay},
    {0, NULL},
};

const ain_actor_def_t ain_events_actor = {
    .service = "events",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
};
