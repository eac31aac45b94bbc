/* internal.h: what the files of edge/ share, and nothing outside it.
 *
 *   edge.c    civetweb life cycle, per-thread MDP clients, dispatch
 *   routes.c  the route table: path, method, handler, authentication
 *   http.c    responses: JSON bodies, errors, status mapping
 *   health.c  GET /health;  stats.c  GET /stats
 *   sse.c     GET /api/v1/emails/stream, one civetweb thread per stream
 *   hub.c     the bus subscriber that feeds the streams, and edge metrics
 *   limits.c  the user API limit (ratelimit actor) and GET /api/v1/limits
 */
#ifndef AIN_EDGE_INTERNAL_H
#define AIN_EDGE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <civetweb.h>
#include <jansson.h>

#include "edge/edge.h"
#include "runtime/client.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

typedef struct ain__hub ain__hub_t;

typedef struct {
    ain_metric_t *requests, *status_2xx, *status_4xx, *status_5xx, *not_found;
    ain_metric_t *streams, *streams_refused, *streams_cut, *events_delivered;
    ain_metric_t *limited, *limits_unchecked;
} ain__edge_metrics_t;

struct _ain_edge_t {
    const ain_proc_t *proc;
    ain_log_t *log;
    ain_metrics_t *metrics;
    ain__edge_metrics_t m;
    struct mg_context *mg;
    ain__hub_t *hub;
    atomic_bool stopping;
    int max_streams;
    atomic_int streams;
    int64_t heartbeat_ms;
    int call_timeout_ms;
    bool api_limit;                       /* AINBOX_API_RATELIMIT */
    atomic_int_fast64_t limits_warned_ms; /* limits.c: last "not checked" warning */
    atomic_int_fast64_t limits_probe_ms;  /* limits.c: when to ask MMI again */
    atomic_bool limiter_present;          /* limits.c: the ratelimit service has workers */
};

/* One HTTP request being served. */
typedef struct {
    ain_edge_t *edge;
    struct mg_connection *conn;
    const struct mg_request_info *info;
    ain_client_t *client;    /* this thread's: borrowed */
    uint64_t user;           /* authenticated user, 0 = none */
    char limit_headers[256]; /* RateLimit-Policy and RateLimit lines, or "" */
} ain__http_t;

typedef int(ain__handler_fn)(ain__http_t *http);

enum { AIN__AUTH_NONE, AIN__AUTH_DEV };

/* Whether a route's requests count against the user API limit. */
enum { AIN__LIMIT_NONE, AIN__LIMIT_API };

typedef struct {
    const char *method;
    const char *path;
    ain__handler_fn *handler;
    int auth;
    int limit;
} ain__route_t;

/* routes.c: the route for `path` and `method`; NULL with *path_known set
 * if the path exists with other methods (405), or not (404). */
const ain__route_t *ain__routes_find(const char *method, const char *path, bool *path_known);
/* Allowed methods of `path`, comma-separated, into buf. */
void ain__routes_allow(const char *path, char *buf, size_t size);

/* http.c: responses. Each returns the HTTP status sent, for civetweb. */
/* The status line and headers (CRLF-terminated lines in `headers`). */
void ain__http_head(struct mg_connection *conn, int status, const char *headers);
int ain__http_json(ain__http_t *http, int status, json_t *body); /* steals body */
/* As ain__http_json, with extra header lines ("Name: value\r\n"). */
int ain__http_json_extra(ain__http_t *http, int status, json_t *body, const char *extra);
int ain__http_error(ain__http_t *http, int status, const char *code, const char *message);
/* 405 with the route's allowed methods in `Allow`. */
int ain__http_error_allow(ain__http_t *http, const char *allow);
/* An error for a status of ours, mapped with ain_status_http. */
int ain__http_fail(ain__http_t *http, int status, const char *message);
/* The message of an error reply body {message}, or a default. */
const char *ain__reply_message(const ain_reply_t *reply, char *buf, size_t size);
/* Query parameter `name` into buf; returns its length, or -1 if absent. */
int ain__http_query(ain__http_t *http, const char *name, char *buf, size_t size);
void ain__http_count(ain_edge_t *edge, int status);
/* `ms` (Unix epoch) as ISO 8601 UTC with milliseconds. */
void ain__http_iso_time(int64_t ms, char *buf, size_t size);

/* Handlers. */
int ain__health(ain__http_t *http);
int ain__stats(ain__http_t *http);
int ain__sse_stream(ain__http_t *http);
int ain__limits_usage(ain__http_t *http);

/* limits.c: takes one unit of the user's API limit. Returns 0 (go on; the
 * RateLimit headers are in http->limit_headers), or -1 having answered 429. */
int ain__limits_check(ain__http_t *http);

/* hub.c: the bus subscriber and the registry of open streams. */
typedef struct ain__stream ain__stream_t;
ain__hub_t *ain__hub_new(ain_edge_t *edge);
void ain__hub_destroy(ain__hub_t **self_p);
/* Registers a stream for `user`; NULL if the hub is stopping. */
ain__stream_t *ain__hub_open(ain__hub_t *hub, uint64_t user);
void ain__hub_close(ain__hub_t *hub, ain__stream_t **stream_p);
/* Waits up to `timeout_ms` for events; copies them (SSE text) into *out
 * (malloc'ed, caller frees; NULL if none). Returns 1 with events, 0 on
 * timeout, -1 if the stream must end (edge stopping, or the consumer fell
 * behind its buffer). */
int ain__hub_wait(ain__hub_t *hub, ain__stream_t *stream, int timeout_ms, char **out, size_t *len);
/* Wakes every stream (on stop). */
void ain__hub_wake_all(ain__hub_t *hub);

#endif
