/* events.c: the events actor (see events.h).
 *
 * The event's JSON is parsed and written back compactly: an SSE `data:`
 * line must not contain a newline, and nothing that is not a JSON object
 * with a string "type" reaches a browser.
 */
#include "actors/events/events.h"

#include <stdlib.h>

#include <jansson.h>

#include "actors/events/eventid.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "proto/topic.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_MAX_EVENT_BYTES (64 * 1024)

typedef struct {
    ain_eventid_t ids;
    msgpack_sbuffer event; /* the USER_EVENT body being built */
    ain_metric_t *published, *rejected, *dropped;
} s_state_t;

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
    char id[AIN_EVENTID_MAX], topic[AIN_TOPIC_MAX];
    ain_eventid_next(&st->ids, ain_clock_wall_ms(), id);
    ain_topic_user(topic, sizeof topic, env->user);
    msgpack_packer pk;
    st->event.size = 0;
    msgpack_packer_init(&pk, &st->event, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_str(&pk, "id", id);
    ain_mp_pack_kv_str(&pk, "data", json);
    free(json);
    ain_envelope_t event = {AIN_MSG_USER_EVENT,
                            0,
                            env->user,
                            0,
                            env->trace,
                            AIN_STATUS_OK,
                            (const uint8_t *)st->event.data,
                            st->event.size};
    ain_metric_inc(ain_actor_publish(actor, topic, &event) == 0 ? st->published : st->dropped);
    msgpack_packer *reply = ain_actor_body(actor);
    msgpack_pack_map(reply, 1);
    ain_mp_pack_kv_str(reply, "id", id);
    ain_request_reply_packed(req, AIN_STATUS_OK);
    return 0;
}

static int s_start(ain_actor_t *actor)
{
    s_state_t *st = AIN_NEW(s_state_t);
    ain_metrics_t *m = ain_actor_metrics(actor);
    msgpack_sbuffer_init(&st->event);
    st->published = ain_metrics_counter(m, "events.published");
    st->rejected = ain_metrics_counter(m, "events.rejected");
    st->dropped = ain_metrics_counter(m, "events.dropped");
    ain_actor_set_state(actor, st);
    return 0;
}

static void s_stop(ain_actor_t *actor)
{
    s_state_t *st = ain_actor_state(actor);
    msgpack_sbuffer_destroy(&st->event);
    free(st);
}

static const ain_handler_t s_handlers[] = {
    {AIN_MSG_EVENT_PUBLISH, s_publish},
    {0, NULL},
};

const ain_actor_def_t ain_events_actor = {
    .service = "events",
    .handlers = s_handlers,
    .start = s_start,
    .stop = s_stop,
};
