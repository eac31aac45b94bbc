/* health.c: GET /health, the edge's view of the system.
 *
 * Asks the broker which services it has (timing the round trip), then
 * pings, through the broker as any request would travel, each service that
 * AINBOX_HEALTH_SERVICES requires and every other service our actors serve.
 * A load balancer reads the status code: 200 while the broker and every
 * required service are up and working, else 503. An operator reads the
 * body: "ok", or "degraded" with what does not work: each service down,
 * and each that runs disabled (an actor missing a setting answers every
 * request UNAVAILABLE, and says why in its PING answer), under "disabled".
 * Plain MDP services are listed with their workers but not pinged: they
 * do not speak our envelope and need not answer a PING.
 */
#include <string.h>

#include "edge/internal.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

/* Services reported beyond the required ones: each costs a round trip. */
#define S_SERVICES_MAX 64

/* Worker count of `name` in the broker's services list, or 0. */
static json_int_t s_workers(json_t *services, const char *name)
{
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(services, "services"), i, svc)
    {
        if (json_is_string(json_object_get(svc, "name")) &&
            strcmp(json_string_value(json_object_get(svc, "name")), name) == 0)
            return json_integer_value(json_object_get(svc, "workers"));
    }
    return 0;
}

/* Calls `type` on `service`; returns a JSON entry {up, latency_ms | error}
 * and, through *body, the reply body as JSON (if wanted and up). */
static json_t *s_probe(ain__http_t *http, const char *service, uint16_t type, json_t **body)
{
    ain_reply_t reply;
    int64_t t0 = ain_clock_mono_us();
    ain_status_t st = ain_client_call(http->client, service, type, 0, NULL, 0,
                                      http->edge->call_timeout_ms, &reply);
    double ms = (double)(ain_clock_mono_us() - t0) / 1000.0;
    json_t *entry;
    if (st == AIN_STATUS_OK) {
        entry = json_pack("{s:b,s:f}", "up", 1, "latency_ms", ms);
        if (body)
            *body = ain_mpjson_from_body(reply.env.body, reply.env.body_len);
    } else {
        char why[160];
        entry = json_pack("{s:b,s:s,s:s}", "up", 0, "status", ain_status_name(st), "error",
                          reply.env.body_len ? ain__reply_message(&reply, why, sizeof why)
                                             : ain__http_no_answer(http, service, why, sizeof why));
    }
    ain_reply_close(&reply);
    return entry;
}

/* The kind of `name` in the broker's services list: "native", "plain", or
 * NULL if the broker does not list it. Borrowed from `services`. */
static const char *s_kind(json_t *services, const char *name)
{
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(services, "services"), i, svc)
    {
        if (json_is_string(json_object_get(svc, "name")) &&
            strcmp(json_string_value(json_object_get(svc, "name")), name) == 0)
            return json_string_value(json_object_get(svc, "kind"));
    }
    return NULL;
}

/* Pings `name` (a plain MDP service is only listed) and adds its entry to
 * `out`; a disabled actor's reason goes to `disabled` too. Returns true if
 * it is up and not disabled. */
static bool s_check(ain__http_t *http, json_t *known, const char *name, bool required, json_t *out,
                    json_t *disabled)
{
    const char *kind = s_kind(known, name);
    json_int_t workers = s_workers(known, name);
    json_t *entry, *pong = NULL;
    if (kind && strcmp(kind, "plain") == 0)
        entry = json_pack("{s:b,s:s}", "up", workers > 0, "kind", "plain MDP");
    else
        entry = s_probe(http, name, AIN_MSG_PING, &pong);
    json_object_set_new(entry, "workers", json_integer(workers));
    if (required)
        json_object_set_new(entry, "required", json_true());
    json_t *why = json_object_get(pong, "disabled");
    if (json_is_string(why)) {
        json_object_set(entry, "disabled", why);
        json_object_set(disabled, name, why);
    }
    bool ok = json_is_true(json_object_get(entry, "up")) && !json_is_string(why);
    json_decref(pong);
    json_object_set_new(out, name, entry);
    return ok;
}

int ain__health(ain__http_t *http)
{
    const ain_config_t *cfg = ain_proc_config(http->edge->proc);
    json_t *known = NULL;
    json_t *broker = s_probe(http, "broker", AIN_MSG_BROKER_SERVICES, &known);
    bool ready = json_is_true(json_object_get(broker, "up")), all_ok = ready;
    json_t *services = json_object(), *disabled = json_object();
    for (size_t i = 0; i < ain_config_count(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES); i++) {
        const char *name = ain_config_item(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES, i);
        if (!json_object_get(services, name)) {
            bool ok = s_check(http, known, name, true, services, disabled);
            ready &= ok;
            all_ok &= ok;
        }
    }
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(known, "services"), i, svc)
    {
        const char *name = json_string_value(json_object_get(svc, "name"));
        if (name && json_integer_value(json_object_get(svc, "workers")) > 0 &&
            !json_object_get(services, name) && json_object_size(services) < S_SERVICES_MAX)
            all_ok &= s_check(http, known, name, false, services, disabled);
    }
    json_decref(known);
    char now[40];
    ain__http_iso_time(ain_clock_wall_ms(), now, sizeof now);
    json_t *body =
        json_pack("{s:s,s:s,s:o,s:o,s:o}", "status", all_ok ? "ok" : "degraded", "timestamp", now,
                  "broker", broker, "services", services, "disabled", disabled);
    return ain__http_json(http, ready ? 200 : 503, body);
}
