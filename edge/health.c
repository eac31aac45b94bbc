/* health.c: GET /health, the edge's view of the system.
 *
 * Asks the broker which services it has (timing the round trip), then
 * pings each service that AINBOX_HEALTH_SERVICES requires, through the
 * broker, as any request would travel. 200 when all are up, else 503 with
 * the same body; a load balancer needs no more, an operator sees which
 * part is down and how slow each answer was.
 */
#include <string.h>

#include "edge/internal.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

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

int ain__health(ain__http_t *http)
{
    const ain_config_t *cfg = ain_proc_config(http->edge->proc);
    json_t *known = NULL;
    json_t *broker = s_probe(http, "broker", AIN_MSG_BROKER_SERVICES, &known);
    bool all_up = json_is_true(json_object_get(broker, "up"));
    json_t *services = json_object();
    for (size_t i = 0; i < ain_config_count(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES); i++) {
        const char *name = ain_config_item(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES, i);
        json_t *entry = s_probe(http, name, AIN_MSG_PING, NULL);
        json_object_set_new(entry, "workers", json_integer(s_workers(known, name)));
        all_up &= json_is_true(json_object_get(entry, "up"));
        json_object_set_new(services, name, entry);
    }
    json_decref(known);
    char now[40];
    ain__http_iso_time(ain_clock_wall_ms(), now, sizeof now);
    json_t *body = json_pack("{s:s,s:s,s:o,s:o}", "status", all_up ? "ok" : "degraded", "timestamp",
                             now, "broker", broker, "services", services);
    return ain__http_json(http, all_up ? 200 : 503, body);
}
