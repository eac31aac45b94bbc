/* health.c: GET /health, the edge's view of the system.
 *
 * Asks the broker which services it has, then pings, through the broker as
 * any request would travel, each service that AINBOX_HEALTH_SERVICES
 * requires and every other service our actors serve. A load balancer reads
 * the status code: 200 while the broker and every required service are up
 * and working, else 503. An operator reads the body: "ok", or "degraded"
 * with what does not work: each service down, and each that runs disabled
 * (an actor missing a setting answers every request UNAVAILABLE, and says
 * why in its PING answer), under "disabled". Plain MDP services are listed
 * with their workers but not pinged: they do not speak our envelope and
 * need not answer a PING.
 *
 * Bad news is fast (issue 13: it took 4 to 10.9 s during outages, asking
 * one service after another): the whole answer takes at most
 * AINBOX_HEALTH_TIMEOUT_MS. A service the broker lists without workers is
 * down without a ping; the others are pinged all at once and collected
 * until the bound; an edge that cannot reach its broker (link.c) answers
 * at once.
 */
#include <string.h>

#include "edge/internal.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

/* Services reported beyond the required ones: each costs a round trip. */
#define S_SERVICES_MAX 64

/* The broker's entry for service `name` in its services list, or NULL.
 * Borrowed from `services`. */
static json_t *s_service(json_t *services, const char *name)
{
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(services, "services"), i, svc)
    {
        if (json_is_string(json_object_get(svc, "name")) &&
            strcmp(json_string_value(json_object_get(svc, "name")), name) == 0)
            return svc;
    }
    return NULL;
}

/* Worker count of `name` in the broker's services list, or 0. */
static json_int_t s_workers(json_t *services, const char *name)
{
    return json_integer_value(json_object_get(s_service(services, name), "workers"));
}

/* Calls `type` on `service` within `timeout_ms`; returns a JSON entry
 * {up, latency_ms | error} and, through *body, the reply body as JSON (if
 * wanted and up). */
static json_t *s_probe(ain__http_t *http, const char *service, uint16_t type, int timeout_ms,
                       json_t **body)
{
    ain_reply_t reply;
    int64_t t0 = ain_clock_mono_us();
    ain_status_t st = ain_client_call(http->client, service, type, 0, NULL, 0, timeout_ms, &reply);
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
    return json_string_value(json_object_get(s_service(services, name), "kind"));
}

/* One service being checked: its entry, and the PING out for it (corr 0:
 * none, its entry is final). */
typedef struct {
    const char *name; /* borrowed from the configuration or the broker's list */
    bool required;
    uint64_t corr;
    int64_t sent_us;
    json_t *entry; /* owned until put into the answer */
    json_t *pong;  /* the PING answer's body */
} s_check_t;

/* Starts checking `name`: a plain MDP service, or one the broker lists with
 * no worker, is final at once; otherwise a PING goes out. */
static void s_start(ain__http_t *http, json_t *known, s_check_t *c, int64_t deadline_ms)
{
    const char *kind = s_kind(known, c->name);
    json_int_t workers = s_workers(known, c->name);
    if (kind && strcmp(kind, "plain") == 0) {
        c->entry = json_pack("{s:b,s:s}", "up", workers > 0, "kind", "plain MDP");
    } else if (workers == 0) {
        c->entry = json_pack("{s:b,s:s,s:s}", "up", 0, "status", "UNAVAILABLE", "error",
                             "no worker of this service is registered with the broker");
    } else {
        ain_envelope_t env = {AIN_MSG_PING, 0, 0, deadline_ms, 0, AIN_STATUS_OK, NULL, 0};
        c->sent_us = ain_clock_mono_us();
        if (ain_client_send(http->client, c->name, &env) == 0)
            c->corr = env.corr;
        else
            c->entry = json_pack("{s:b,s:s,s:s}", "up", 0, "status", "UNAVAILABLE", "error",
                                 "the request could not be sent to the broker");
    }
    if (c->entry)
        json_object_set_new(c->entry, "workers", json_integer(workers));
}

/* Collects PING answers until every check is final or `until_ms` passes. */
static void s_collect(ain__http_t *http, s_check_t *checks, size_t n, int64_t until_ms)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++)
        open += checks[i].corr != 0;
    while (open > 0) {
        int64_t left = until_ms - ain_clock_mono_ms();
        ain_reply_t reply;
        if (left <= 0 || ain_client_recv(http->client, &reply, (int)left) != 1)
            break;
        for (size_t i = 0; i < n; i++) {
            s_check_t *c = &checks[i];
            if (!c->corr || c->corr != reply.env.corr)
                continue;
            double ms = (double)(ain_clock_mono_us() - c->sent_us) / 1000.0;
            if (reply.env.status == AIN_STATUS_OK) {
                c->entry = json_pack("{s:b,s:f}", "up", 1, "latency_ms", ms);
                c->pong = ain_mpjson_from_body(reply.env.body, reply.env.body_len);
            } else {
                char why[160];
                c->entry =
                    json_pack("{s:b,s:s,s:s}", "up", 0, "status", ain_status_name(reply.env.status),
                              "error", ain__reply_message(&reply, why, sizeof why));
            }
            c->corr = 0;
            open--;
        }
        ain_reply_close(&reply); /* an answer to nothing we wait for is dropped */
    }
}

/* Puts check `c` into `out` (and its reason into `disabled`); true if it is
 * up and not disabled. */
static bool s_finish(ain__http_t *http, json_t *known, s_check_t *c, json_t *out, json_t *disabled)
{
    if (!c->entry) /* still out at the bound */
        c->entry = json_pack("{s:b,s:s,s:s}", "up", 0, "status", "TIMEOUT", "error",
                             atomic_load(&http->edge->broker_down)
                                 ? "the edge cannot reach its broker"
                                 : "no answer within AINBOX_HEALTH_TIMEOUT_MS");
    if (!json_object_get(c->entry, "workers"))
        json_object_set_new(c->entry, "workers", json_integer(s_workers(known, c->name)));
    if (c->required)
        json_object_set_new(c->entry, "required", json_true());
    json_t *why = json_object_get(c->pong, "disabled");
    if (json_is_string(why)) {
        json_object_set(c->entry, "disabled", why);
        json_object_set(disabled, c->name, why);
    }
    bool ok = json_is_true(json_object_get(c->entry, "up")) && !json_is_string(why);
    json_decref(c->pong);
    json_object_set_new(out, c->name, c->entry);
    return ok;
}

/* The services to check: the required ones, then every other one the
 * broker lists with workers (at most S_SERVICES_MAX in all). Returns how
 * many. */
static size_t s_plan(const ain_config_t *cfg, json_t *known, s_check_t *checks)
{
    size_t n = 0;
    for (size_t i = 0;
         i < ain_config_count(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES) && n < S_SERVICES_MAX; i++)
        checks[n++] = (s_check_t){.name = ain_config_item(cfg, AIN_CFG_AINBOX_HEALTH_SERVICES, i),
                                  .required = true};
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(known, "services"), i, svc)
    {
        const char *name = json_string_value(json_object_get(svc, "name"));
        bool listed = false;
        for (size_t k = 0; name && k < n; k++)
            listed |= strcmp(checks[k].name, name) == 0;
        if (name && !listed && n < S_SERVICES_MAX &&
            json_integer_value(json_object_get(svc, "workers")) > 0)
            checks[n++] = (s_check_t){.name = name};
    }
    return n;
}

int ain__health(ain__http_t *http)
{
    const ain_config_t *cfg = ain_proc_config(http->edge->proc);
    int bound = (int)ain_config_int(cfg, AIN_CFG_AINBOX_HEALTH_TIMEOUT_MS);
    int64_t until = ain_clock_mono_ms() + bound;
    json_t *known = NULL;
    /* The registry first, within half the bound: the pings need its list. */
    json_t *broker = s_probe(http, "broker", AIN_MSG_BROKER_SERVICES, bound / 2 + 1, &known);
    bool ready = json_is_true(json_object_get(broker, "up")), all_ok = ready;
    s_check_t checks[S_SERVICES_MAX];
    size_t n = s_plan(cfg, known, checks);
    int64_t deadline = ain_clock_wall_ms() + (until - ain_clock_mono_ms());
    for (size_t i = 0; i < n; i++)
        s_start(http, known, &checks[i], deadline);
    s_collect(http, checks, n, until);
    json_t *services = json_object(), *disabled = json_object();
    for (size_t i = 0; i < n; i++) {
        if (json_object_get(services, checks[i].name)) { /* a service required twice */
            json_decref(checks[i].entry);
            json_decref(checks[i].pong);
            continue;
        }
        bool ok = s_finish(http, known, &checks[i], services, disabled);
        all_ok &= ok;
        if (checks[i].required)
            ready &= ok;
    }
    json_decref(known);
    char now[40];
    ain__http_iso_time(ain_clock_wall_ms(), now, sizeof now);
    /* Features this edge runs without, by configuration: said, but not "degraded" (a
     * deployment without Gmail push is legitimate; it polls). */
    json_t *off = json_object();
    const char *why = ain__webhook_off_reason(http->edge);
    if (why)
        json_object_set_new(off, "POST /webhooks/gmail/notifications", json_string(why));
    json_t *body =
        json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "status", all_ok ? "ok" : "degraded", "timestamp",
                  now, "broker", broker, "services", services, "disabled", disabled, "off", off);
    return ain__http_json(http, ready ? 200 : 503, body);
}
