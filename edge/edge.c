/* edge.c: civetweb's life cycle, and dispatch through the route table.
 *
 * civetweb runs with no document root (it serves no files: only our
 * handlers), a bounded request size, and deadlines for a request's head,
 * its body and a keep-alive connection's idle time. Its worker pool is
 * large (AINBOX_EDGE_CONNECTIONS): a worker is held by every connection
 * being read, however slowly, and slow clients must not hold them all
 * (guard.c caps them per address; README.md has the measurements). One
 * handler is registered for "/"; it refuses what guard.c refuses, finds
 * the route, borrows a broker client (clients.c: AINBOX_EDGE_THREADS of
 * them bound the requests in front of the actors), checks authentication
 * and calls the route's handler.
 */
#include "edge/edge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "edge/internal.h"
#include "runtime/jwt.h"
#include "runtime/alloc.h"
#include "runtime/signal.h"

/* How long a request waits for a free broker client before a 503. */
#define S_CLIENT_WAIT_MS 1000
/* Descriptors kept for everything but streams. */
#define S_FDS_RESERVED 256

static int s_log_message(const struct mg_connection *conn, const char *message)
{
    ain_edge_t *edge = mg_get_user_data(mg_get_context(conn));
    ain_warn(edge->log, "civetweb: %s", message);
    return 1;
}

/* civetweb's own errors (a malformed or oversized request, a timeout) as
 * our JSON errors, counted like every other answer. */
static int s_http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    static const struct {
        int status;
        const char *code;
    } codes[] = {{400, "BAD_REQUEST"},     {404, "NOT_FOUND"},          {405, "METHOD_NOT_ALLOWED"},
                 {408, "REQUEST_TIMEOUT"}, {411, "LENGTH_REQUIRED"},    {413, "PAYLOAD_TOO_LARGE"},
                 {414, "URI_TOO_LONG"},    {417, "EXPECTATION_FAILED"}, {431, "HEADERS_TOO_LARGE"},
                 {500, "INTERNAL"},        {501, "NOT_IMPLEMENTED"},    {505, "HTTP_VERSION"}};
    ain_edge_t *edge = mg_get_user_data(mg_get_context(conn));
    const char *code = "HTTP_ERROR";
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].status == status)
            code = codes[i].code;
    ain__http_t http = {.edge = edge, .conn = conn, .info = mg_get_request_info(conn)};
    ain_metric_inc(edge->m.http_errors);
    mg_disable_connection_keep_alive(conn);
    ain__http_error(&http, status, code, errmsg && errmsg[0] ? errmsg : "bad request");
    return 0;
}

/* Finds the route, checks authentication and the API limit, and calls the handler. */
static int s_route(ain__http_t *http)
{
    bool known = false;
    const ain__route_t *route = ain__routes_find(http->info->request_method, http->path, &known,
                                                 http->capture, sizeof http->capture);
    if (!route && known) {
        char allow[64];
        ain__routes_allow(http->path, allow, sizeof allow);
        return ain__http_error_allow(http, allow);
    }
    if (!route) {
        ain_metric_inc(http->edge->m.not_found);
        return ain__http_error(http, 404, "NOT_FOUND", "no such route");
    }
    int auth = route->auth == AIN__AUTH_OPS
                   ? (http->edge->production ? AIN__AUTH_ADMIN : AIN__AUTH_NONE)
                   : route->auth;
    if (auth != AIN__AUTH_NONE && ain__auth_user(http) < 0)
        return 401;
    if (auth == AIN__AUTH_ADMIN && !http->admin)
        return ain__http_error(http, 403, "FORBIDDEN", "this route is for administrators");
    /* The API limit counts signed-in users' requests, after authentication
     * (the original counted before it, so all users shared one bucket). */
    if (route->limit == AIN__LIMIT_API && http->edge->api_limit && ain__limits_check(http) < 0)
        return 429;
    http->route = route;
    return route->handler(http);
}

static int s_dispatch(struct mg_connection *conn, void *cbdata)
{
    ain__http_t http = {.edge = cbdata, .conn = conn, .info = mg_get_request_info(conn)};
    ain__cors_headers(&http);
    int status = ain__guard_request(&http);
    if (status || ain__cors_preflight(&http, &status) || (status = ain__http_read_body(&http)))
        return status;
    http.client = ain__clients_take(http.edge->clients, S_CLIENT_WAIT_MS);
    if (!http.client) {
        ain_metric_inc(http.edge->m.handlers_refused);
        status = ain__http_error_extra(&http, 503, "BUSY", "the edge is busy, try again",
                                       "Retry-After: 1\r\n");
    } else {
        ain__guard_enter(http.edge->guard, http.info);
        status = s_route(&http);
        ain__guard_leave(http.edge->guard, http.info);
        ain__clients_give(http.edge->clients, http.client);
    }
    free(http.body);
    return status;
}

static void s_register_metrics(ain_edge_t *self)
{
    ain_metrics_t *r = self->metrics;
    self->m.requests = ain_metrics_counter(r, "http.requests");
    self->m.status_2xx = ain_metrics_counter(r, "http.2xx");
    self->m.status_4xx = ain_metrics_counter(r, "http.4xx");
    self->m.status_5xx = ain_metrics_counter(r, "http.5xx");
    self->m.not_found = ain_metrics_counter(r, "http.not_found");
    self->m.http_errors = ain_metrics_counter(r, "http.malformed");
    self->m.auth_refused = ain_metrics_counter(r, "http.auth_refused");
    self->m.streams = ain_metrics_gauge(r, "sse.streams");
    self->m.users = ain_metrics_gauge(r, "sse.users");
    self->m.max_streams = ain_metrics_gauge(r, "sse.max_streams");
    self->m.max_per_user = ain_metrics_gauge(r, "sse.max_per_user");
    self->m.opened = ain_metrics_counter(r, "sse.opened");
    self->m.closed = ain_metrics_counter(r, "sse.closed");
    self->m.cut_slow = ain_metrics_counter(r, "sse.cut_slow");
    self->m.refused_full = ain_metrics_counter(r, "sse.refused_full");
    self->m.refused_user = ain_metrics_counter(r, "sse.refused_user");
    self->m.handoff_failed = ain_metrics_counter(r, "sse.handoff_failed");
    self->m.events_delivered = ain_metrics_counter(r, "sse.events_delivered");
    self->m.events_unordered = ain_metrics_counter(r, "sse.events_unordered");
    self->m.limited = ain_metrics_counter(r, "ratelimit.refused");
    self->m.limits_unchecked = ain_metrics_counter(r, "ratelimit.unchecked");
    self->m.limits_away = ain_metrics_counter(r, "ratelimit.limiter_away");
    self->m.limits_grants = ain_metrics_counter(r, "ratelimit.grants");
    self->m.limits_local = ain_metrics_counter(r, "ratelimit.local");
    self->m.limits_grant_units = ain_metrics_counter(r, "ratelimit.grant_units");
    self->m.limits_grant_lost = ain_metrics_counter(r, "ratelimit.grant_lost");
    self->m.limits_grant_retries = ain_metrics_counter(r, "ratelimit.grant_retries");
    self->m.limits_grant_slots = ain_metrics_gauge(r, "ratelimit.grant_slots");
    self->m.bytes_written = ain_metrics_counter(r, "sse.bytes_written");
    self->m.resumed = ain_metrics_counter(r, "sse.resumed");
    self->m.foreign_streams = ain_metrics_counter(r, "sse.admin_streams");
    self->m.foreign_refused = ain_metrics_counter(r, "sse.refused_foreign");
    self->m.replayed = ain_metrics_counter(r, "sse.replayed");
    self->m.resets = ain_metrics_counter(r, "sse.resets");
    self->m.replay_more = ain_metrics_counter(r, "sse.replay_more");
    self->m.rendered_hits = ain_metrics_counter(r, "http.rendered_hits");
    self->m.rendered_builds = ain_metrics_counter(r, "http.rendered_builds");
    self->m.rendered_bytes = ain_metrics_gauge(r, "http.rendered_bytes");
    self->m.rendered_fresh = ain_metrics_counter(r, "http.rendered_fresh");
    self->m.inval_up = ain_metrics_gauge(r, "inval.up");
    self->m.inval_received = ain_metrics_counter(r, "inval.received");
    self->m.inval_bad = ain_metrics_counter(r, "inval.bad");
    self->m.replay_failed = ain_metrics_counter(r, "sse.replay_failed");
    self->m.connections = ain_metrics_gauge(r, "http.connections");
    self->m.conn_refused = ain_metrics_counter(r, "http.conn_refused");
    self->m.conn_shed = ain_metrics_counter(r, "http.conn_shed");
    self->m.handlers_refused = ain_metrics_counter(r, "http.busy_refused");
    self->m.handlers_max = ain_metrics_gauge(r, "http.handlers_max");
}

/* MAX_CONNECTIONS, lowered to what the descriptor limit allows: a stream
 * is one descriptor, and civetweb's connections (AINBOX_EDGE_CONNECTIONS),
 * the broker and the bus need some. */
static int s_max_streams(ain_edge_t *self, const ain_config_t *cfg)
{
    long max = ain_config_int(cfg, AIN_CFG_MAX_CONNECTIONS);
    rlim_t reserved = S_FDS_RESERVED + (rlim_t)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_CONNECTIONS);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)max + reserved > rl.rlim_cur) {
        long fit =
            rl.rlim_cur > reserved * 2 ? (long)(rl.rlim_cur - reserved) : (long)(rl.rlim_cur / 2);
        ain_warn(self->log, "MAX_CONNECTIONS=%ld lowered to %ld: %ld descriptors allowed", max, fit,
                 (long)rl.rlim_cur);
        max = fit;
    }
    return (int)max;
}

static struct mg_context *s_start_civetweb(ain_edge_t *self)
{
    const ain_config_t *cfg = ain_proc_config(self->proc);
    char ports[96], threads[16], head_ms[16], idle_ms[16];
    snprintf(ports, sizeof ports, "%s:%ld", ain_config_str(cfg, AIN_CFG_AINBOX_HTTP_ADDR),
             ain_config_int(cfg, AIN_CFG_HTTP_PORT));
    snprintf(threads, sizeof threads, "%ld", ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_CONNECTIONS));
    snprintf(head_ms, sizeof head_ms, "%ld",
             ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_HEADER_TIMEOUT_MS));
    long keepalive = ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_KEEPALIVE_MS);
    snprintf(idle_ms, sizeof idle_ms, "%ld", keepalive);
    /* request_timeout_ms: civetweb measures it from the moment a worker starts reading the
     * request to the end of its head (read_message), so it is a total deadline however the
     * bytes trickle in; it also bounds each read of the body (http.c adds the body's total)
     * and each write. keep_alive_timeout_ms replaces it for a connection's later requests:
     * idle time plus their head. */
    const char *options[] = {
        "listening_ports", ports, "num_threads", threads, "listen_backlog", "4096",
        "request_timeout_ms", head_ms, "enable_keep_alive", keepalive > 0 ? "yes" : "no",
        "keep_alive_timeout_ms", idle_ms, "max_request_size", "16384",
        /* guard.c decodes the path: decoded in place, a %00 cut it short
         * without a trace (/threads/at0%00x read as thread at0). */
        "decode_url", "no",
        /* Answers go out as head then body: without it, Nagle holds the
         * body for the client's delayed ACK (40 ms a request). */
        "tcp_nodelay", "1",
        /* civetweb's own CORS answers every origin ("*"), preflights
         * included, before our handler runs: off, cors.c decides. */
        "access_control_allow_origin", "", "access_control_allow_methods", "", NULL};
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    callbacks.http_error = s_http_error;
    struct mg_context *mg = mg_start(&callbacks, self, options);
    if (!mg) {
        ain_error(self->log, "cannot listen on %s", ports);
        return NULL;
    }
    mg_set_request_handler(mg, "/", s_dispatch, self);
    ain_info(self->log, "HTTP on %s (%s connections, %ld per address, %ld handlers)", ports,
             threads, ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_PER_ADDR_MAX),
             ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_THREADS));
    return mg;
}

ain_edge_t *ain_edge_new(const ain_proc_t *proc)
{
    const ain_config_t *cfg = ain_proc_config(proc);
    ain_edge_t *self = AIN_NEW(ain_edge_t);
    self->proc = proc;
    self->log = ain_proc_logger(proc, "edge");
    self->metrics = ain_metrics_new();
    s_register_metrics(self);
    self->heartbeat_ms = ain_config_int(cfg, AIN_CFG_AINBOX_SSE_HEARTBEAT_MS);
    /* One deadline for every call, longer than the broker needs to notice a
     * silent worker (AINBOX_HEARTBEAT_MS x AINBOX_HEARTBEAT_LIVENESS), so an
     * idempotent read held by a cut-off host is re-sent to another worker
     * while its caller still waits (issue 13: it was 2 s against 3 s). */
    self->call_timeout_ms = (int)ain_config_int(cfg, AIN_CFG_AINBOX_REQUEST_TIMEOUT_MS);
    int64_t detect = ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS) *
                     ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_LIVENESS);
    if (self->call_timeout_ms <= detect + 500)
        ain_warn(self->log,
                 "AINBOX_REQUEST_TIMEOUT_MS (%d) is not well above the broker's detection of a "
                 "silent worker (%lld ms): reads held by a lost host fail instead of being re-sent",
                 self->call_timeout_ms, (long long)detect);
    self->api_limit = ain_config_bool(cfg, AIN_CFG_AINBOX_API_RATELIMIT);
    self->limits_timeout_ms = (int)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_LIMIT_TIMEOUT_MS);
    self->grants = ain__grants_new((uint32_t)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_API_GRANT_MAX),
                                   ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_API_GRANT_MS));
    ain_metric_set(self->m.limits_grant_slots, ain__grants_slots(self->grants));
    self->production = strcmp(ain_config_str(cfg, AIN_CFG_NODE_ENV), "production") == 0;
    self->rendered =
        ain__rendered_new((size_t)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_RENDER_BYTES));
    self->fresh_ms = self->rendered ? ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_FRESH_MS) : 0;
    if (self->fresh_ms > 0 && !(self->inval = ain__inval_new(self, cfg))) {
        ain_edge_destroy(&self);
        return NULL;
    }
    const char *why = NULL;
    self->cors = ain__cors_new(cfg, &why);
    if (ain__auth_init(self, cfg) < 0 || ain__oauth_init(self, cfg) < 0) {
        ain_edge_destroy(&self);
        return NULL;
    }
    if (!self->cors) {
        ain_error(self->log, "%s", why);
        ain_edge_destroy(&self);
        return NULL;
    }
    self->max_streams = s_max_streams(self, cfg);
    self->max_per_user = (int)ain_config_int(cfg, AIN_CFG_AINBOX_SSE_PER_USER_MAX);
    ain_metric_set(self->m.max_streams, self->max_streams);
    ain_metric_set(self->m.max_per_user, self->max_per_user);
    int handlers = (int)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_THREADS);
    self->clients = ain__clients_new(proc, handlers, &self->broker_down);
    ain_metric_set(self->m.handlers_max, handlers);
    self->body_timeout_ms = ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_BODY_TIMEOUT_MS);
    self->pump = self->clients ? ain__pump_new(self) : NULL;
    if (self->pump)
        self->guard = ain__guard_new(self, (int)ain_config_int(cfg, AIN_CFG_HTTP_PORT),
                                     (int)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_CONNECTIONS),
                                     (int)ain_config_int(cfg, AIN_CFG_AINBOX_EDGE_PER_ADDR_MAX));
    if (self->guard)
        self->mg = s_start_civetweb(self);
    if (!self->mg) {
        ain_edge_destroy(&self);
        return NULL;
    }
    return self;
}

int ain_edge_run(ain_edge_t *self, zsock_t *pipe)
{
    if (pipe)
        zsock_signal(pipe, 0);
    for (;;) {
        zmq_pollitem_t item = {pipe ? zsock_resolve(pipe) : NULL, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, pipe ? 1 : 0, 100);
        if (!pipe && ain_signal_stop_requested())
            break;
        if (pipe && rc > 0) {
            char *command = zstr_recv(pipe);
            bool term = !command || strcmp(command, "$TERM") == 0;
            zstr_free(&command);
            if (term)
                break;
        }
    }
    return 0;
}

void ain_edge_destroy(ain_edge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_edge_t *self = *self_p;
    atomic_store(&self->stopping, true);
    if (self->mg) {
        mg_stop(self->mg); /* waits for the handlers: each request has a deadline */
        ain_info(self->log, "stopped");
    }
    /* After civetweb: no handler can still be handing a stream over. */
    ain__guard_destroy(&self->guard); /* before the pump: it reads the pump's descriptors */
    ain__pump_destroy(&self->pump);
    ain__clients_destroy(&self->clients);
    ain__inval_destroy(&self->inval);
    ain__cors_destroy(&self->cors);
    ain__rendered_destroy(&self->rendered);
    ain__grants_destroy(&self->grants);
    ain_jwt_destroy(&self->jwt);
    ain__oauth_destroy(self);
    ain_metrics_destroy(&self->metrics);
    ain_log_destroy(&self->log);
    free(self);
    *self_p = NULL;
}
