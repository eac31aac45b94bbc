/* sse.c: GET /api/v1/emails/stream, a user's server-sent event stream.
 *
 * Keeps the original contract: unnamed `data:` JSON frames with a `type`,
 * the first one {"type":"connected","ts":...}; every event also carries an
 * `id:`. A keep-alive comment goes out after AINBOX_SSE_HEARTBEAT_MS of
 * silence. When the edge is full the answer is 200 with a `retry:` hint
 * and no stream (a browser gives up for good on 429/503 but honours
 * retry).
 *
 * This first version holds one civetweb thread per stream, so the number
 * of streams is capped below the thread pool, leaving threads for the
 * REST routes. The epoll stream pump that holds tens of thousands of
 * streams without threads is the edge issue's work; this mode stays for
 * HTTPS served by civetweb itself.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "edge/internal.h"
#include "runtime/clock.h"

#define S_FULL_RETRY_MS 10000
#define S_RETRY_MS      3000
/* The connection closes when the stream ends: no length, no keep-alive. */
#define S_STREAM_HEADERS                                                                           \
    "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n"          \
    "X-Accel-Buffering: no\r\n"

static int s_write(struct mg_connection *conn, const char *text, size_t len)
{
    return mg_write(conn, text, len) == (int)len ? 0 : -1;
}

/* The edge is full: 200, a retry hint, no stream. */
static int s_refuse(ain__http_t *http)
{
    char body[64];
    int n = snprintf(body, sizeof body, "retry: %d\n\n", S_FULL_RETRY_MS);
    ain_metric_inc(http->edge->m.streams_refused);
    mg_disable_connection_keep_alive(http->conn);
    ain__http_head(http->conn, 200, S_STREAM_HEADERS);
    s_write(http->conn, body, (size_t)n);
    ain__http_count(http->edge, 200);
    return 200;
}

static int s_open(ain__http_t *http)
{
    char hello[128];
    int n = snprintf(hello, sizeof hello,
                     "retry: %d\n\ndata: {\"type\":\"connected\",\"ts\":%" PRId64 "}\n\n",
                     S_RETRY_MS, ain_clock_wall_ms());
    mg_disable_connection_keep_alive(http->conn);
    ain__http_head(http->conn, 200, S_STREAM_HEADERS);
    return s_write(http->conn, hello, (size_t)n);
}

/* Writes what arrives until the client goes, the stream is cut or the edge
 * stops. */
static void s_pump(ain__http_t *http, ain__stream_t *stream)
{
    ain_edge_t *edge = http->edge;
    for (;;) {
        char *text;
        size_t len;
        int rc = ain__hub_wait(edge->hub, stream, (int)edge->heartbeat_ms, &text, &len);
        if (rc < 0) {
            if (!atomic_load(&edge->stopping))
                ain_metric_inc(edge->m.streams_cut);
            return;
        }
        int wrote = rc == 1 ? s_write(http->conn, text, len) : s_write(http->conn, ": ping\n\n", 8);
        free(text);
        if (wrote < 0)
            return;
        if (rc == 1)
            ain_metric_inc(edge->m.events_delivered);
    }
}

int ain__sse_stream(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (atomic_fetch_add(&edge->streams, 1) >= edge->max_streams) {
        atomic_fetch_sub(&edge->streams, 1);
        return s_refuse(http);
    }
    ain__stream_t *stream = ain__hub_open(edge->hub, http->user);
    int status = 200;
    if (!stream) {
        status = ain__http_fail(http, AIN_STATUS_UNAVAILABLE, "the edge is stopping");
    } else {
        ain_metric_set(edge->m.streams, atomic_load(&edge->streams));
        ain__http_count(edge, 200);
        if (s_open(http) == 0)
            s_pump(http, stream);
        ain__hub_close(edge->hub, &stream);
    }
    atomic_fetch_sub(&edge->streams, 1);
    ain_metric_set(edge->m.streams, atomic_load(&edge->streams));
    return status;
}
