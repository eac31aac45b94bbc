/* sse.c: GET /api/v1/emails/stream, a user's server-sent event stream.
 *
 * Keeps the original contract: unnamed `data:` JSON frames with a `type`,
 * the first one {"type":"connected","ts":...}; every event also carries an
 * `id:`. A keep-alive comment goes out after AINBOX_SSE_HEARTBEAT_MS of
 * silence.
 *
 * The civetweb thread only starts a stream: it reserves it in the stream
 * pump (caps, subscription, the `connected` frame), writes the response
 * head, hands the socket over (edge/handoff.c) and returns, so a stream
 * holds no thread. When the edge or the user is at its cap the answer is
 * 200 with a `retry:` hint and a `retry` frame, then the connection
 * closes: a browser gives up for good on 429/503 but honours `retry:`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "edge/internal.h"
#include "runtime/clock.h"

/* Refused clients come back after 10 to 15 s, spread so that a full edge
 * is not hit by all of them at once. */
#define S_FULL_RETRY_MS  10000
#define S_FULL_JITTER_MS 5000
/* The connection closes when the stream ends: no length, no keep-alive. */
#define S_STREAM_HEADERS                                                                           \
    "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n"          \
    "X-Accel-Buffering: no\r\n"

/* The stream's head, with the request's CORS lines (a cross-origin
 * EventSource with credentials needs them). */
static void s_head(ain__http_t *http)
{
    char headers[sizeof S_STREAM_HEADERS + sizeof http->headers];
    snprintf(headers, sizeof headers, "%s%s", S_STREAM_HEADERS, http->headers);
    ain__http_head(http->conn, 200, headers);
}

static int s_retry_ms(ain__http_t *http)
{
    uint64_t mix = (uint64_t)ain_clock_mono_us() ^ ((uint64_t)http->info->remote_port << 20);
    mix *= 0x9E3779B97F4A7C15ULL;
    return S_FULL_RETRY_MS + (int)((mix >> 33) % S_FULL_JITTER_MS);
}

/* 200, a retry hint and a frame saying why, no stream. */
static int s_refuse(ain__http_t *http, const char *reason)
{
    char body[160];
    int retry = s_retry_ms(http);
    int n = snprintf(body, sizeof body,
                     "retry: %d\ndata: {\"type\":\"retry\",\"reason\":\"%s\",\"retry_ms\":%d}\n\n",
                     retry, reason, retry);
    mg_disable_connection_keep_alive(http->conn);
    s_head(http);
    mg_write(http->conn, body, (size_t)n);
    ain__http_count(http->edge, 200);
    return 200;
}

int ain__sse_stream(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (http->info->is_ssl)
        return ain__http_error(http, 501, "NOT_IMPLEMENTED",
                               "streams are served over plain HTTP; terminate TLS in front");
    ain__stream_t *stream = NULL;
    int rc = atomic_load(&edge->stopping) ? AIN__OPEN_STOPPING
                                          : ain__pump_open(edge->pump, http->user, &stream);
    if (rc == AIN__OPEN_FULL)
        return s_refuse(http, "edge_full");
    if (rc == AIN__OPEN_USER_FULL)
        return s_refuse(http, "user_limit");
    if (rc != AIN__OPEN_OK)
        return ain__http_fail(http, AIN_STATUS_UNAVAILABLE, "the edge is stopping");
    mg_disable_connection_keep_alive(http->conn);
    s_head(http);
    ain__http_count(edge, 200);
    int fd = ain__handoff_take(http->conn, ain__pump_owned(edge->pump));
    if (fd < 0) {
        /* Should not happen on plain HTTP: the client is told to come
         * back, and civetweb closes the connection. */
        ain__pump_abort(edge->pump, stream);
        ain_metric_inc(edge->m.handoff_failed);
        ain_warn(edge->log, "SSE hand-off failed for %s:%d", http->info->remote_addr,
                 http->info->remote_port);
        mg_printf(http->conn, "retry: %d\n\n", s_retry_ms(http));
        return 200;
    }
    ain__pump_attach(edge->pump, stream, fd);
    return 200;
}
