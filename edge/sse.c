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
 *
 * Resume. A request with `Last-Event-ID` (or the `lastEventId` /
 * `last_event_id` query parameter: EventSource cannot set headers on its
 * first connection) is served in this order, so that nothing is lost or
 * doubled:
 *   1. the pump opens the stream "holding": the user's topic is
 *      subscribed and live events are held with their ids (bounded);
 *   2. this thread writes the head and the `connected` frame, asks the
 *      events service for what followed the id (EVENT_REPLAY, pages of
 *      S_PAGE events, at most S_PAGES pages) and writes it with civetweb;
 *   3. the socket goes to the pump with the last id written: held events
 *      above it go out, then live ones.
 * An id the log no longer has (older than its window, malformed, made up,
 * or the log cannot be read) gets {"type":"reset"}: refetch, then live
 * events (every held one). A replay longer than S_PAGES pages ends the
 * connection after the last page with a short `retry:`; the browser comes
 * back with the last id it got and continues.
 *
 * Why on the civetweb thread: the replay is one or a few broker round
 * trips (about a millisecond each) plus writes the kernel buffer usually
 * absorbs, bounded by S_PAGES pages; doing it in the pump would need an
 * asynchronous client and per-stream replay state there for a rare path.
 * A client that does not read its replay holds the thread at most until
 * civetweb's request timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"

/* Refused clients come back after 10 to 15 s, spread so that a full edge
 * is not hit by all of them at once. */
#define S_FULL_RETRY_MS  10000
#define S_FULL_JITTER_MS 5000
/* Replay: events per EVENT_REPLAY page, pages per connection, and the
 * longest id asked for (the log's ids are at most 41 bytes). */
#define S_PAGE          256
#define S_PAGES         4
#define S_ID_MAX        64
#define S_MORE_RETRY    "retry: 100\n\n"
#define S_WARN_EVERY_MS 10000
#define S_RESET         "data: {\"type\":\"reset\",\"reason\":\"%s\"}\n\n"
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

/* The id to resume after, from the header or the query, into buf; its
 * length, -1 if none was sent, or S_ID_MAX + 1 if it is too long. */
static int s_last_event_id(ain__http_t *http, char *buf, size_t size)
{
    const char *h = mg_get_header(http->conn, "Last-Event-ID");
    const char *qs = http->info->query_string;
    if (h && *h) {
        size_t n = strlen(h);
        if (n > S_ID_MAX)
            return S_ID_MAX + 1;
        memcpy(buf, h, n + 1);
        return (int)n;
    }
    for (int i = 0; qs && i < 2; i++) {
        int n = mg_get_var(qs, strlen(qs), i == 0 ? "lastEventId" : "last_event_id", buf, size);
        if (n == -2 || n > S_ID_MAX) /* longer than the buffer */
            return S_ID_MAX + 1;
        if (n > 0)
            return n;
    }
    return -1;
}

enum { S_REPLAY_DONE, S_REPLAY_MORE, S_REPLAY_RESET, S_REPLAY_FAILED, S_REPLAY_GONE };

/* Writes one page's events as SSE frames; *last gets the last id written.
 * Returns the number written, or -1 if the answer is malformed or the
 * client is gone (*gone set). */
static int s_write_page(ain__http_t *http, const msgpack_object *events, char *last, bool *gone)
{
    msgpack_sbuffer text; /* a growing byte buffer, not msgpack here */
    msgpack_sbuffer_init(&text);
    int n = 0;
    for (uint32_t i = 0; n >= 0 && i < events->via.array.size; i++) {
        const msgpack_object *e = &events->via.array.ptr[i];
        const char *id, *data;
        size_t id_len, data_len;
        if (e->type != MSGPACK_OBJECT_MAP || ain_mp_get_str(e, "id", &id, &id_len) != 1 ||
            ain_mp_get_str(e, "data", &data, &data_len) != 1 || id_len == 0 || id_len > S_ID_MAX ||
            memchr(id, '\n', id_len) || memchr(data, '\n', data_len)) {
            n = -1;
            break;
        }
        msgpack_sbuffer_write(&text, "id: ", 4);
        msgpack_sbuffer_write(&text, id, id_len);
        msgpack_sbuffer_write(&text, "\ndata: ", 7);
        msgpack_sbuffer_write(&text, data, data_len);
        msgpack_sbuffer_write(&text, "\n\n", 2);
        memcpy(last, id, id_len);
        last[id_len] = '\0';
        n++;
    }
    if (n > 0 && mg_write(http->conn, text.data, text.size) != (int)text.size) {
        *gone = true;
        n = -1;
    }
    msgpack_sbuffer_destroy(&text);
    return n;
}

/* Logs a replay that failed, at most every S_WARN_EVERY_MS (a reconnect
 * storm while the log is down would otherwise flood the log; the count is
 * in sse.replay_failed). */
static void s_warn_failed(ain__http_t *http, const char *why)
{
    ain_edge_t *edge = http->edge;
    int64_t now = ain_clock_mono_ms();
    int64_t last = atomic_load(&edge->replay_warned_ms);
    if ((last == 0 || now - last >= S_WARN_EVERY_MS) &&
        atomic_compare_exchange_strong(&edge->replay_warned_ms, &last, now))
        ain_warn(edge->log, "SSE replay for user %llu failed (%s): clients get reset",
                 (unsigned long long)http->user, why);
}

/* Asks for and writes what followed `last` (updated to the last id
 * written). Returns an S_REPLAY_* outcome. */
static int s_replay(ain__http_t *http, char *last)
{
    ain_edge_t *edge = http->edge;
    for (int page = 0; page < S_PAGES; page++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        ain_mp_pack_kv_str(&pk, "after", last);
        ain_mp_pack_kv_u64(&pk, "limit", S_PAGE);
        ain_reply_t reply;
        ain_status_t st = ain_client_call(http->client, "events", AIN_MSG_EVENT_REPLAY, http->user,
                                          sb.data, sb.size, edge->call_timeout_ms, &reply);
        msgpack_sbuffer_destroy(&sb);
        ain_body_t body;
        const msgpack_object *events = NULL;
        bool complete = false, reset = false, gone = false;
        bool ok = st == AIN_STATUS_OK &&
                  ain_body_parse(&body, reply.env.body, reply.env.body_len) == AIN_STATUS_OK;
        if (ok) {
            events = ain_mp_get(body.root, "events");
            ok = events && events->type == MSGPACK_OBJECT_ARRAY &&
                 ain_mp_get_bool(body.root, "complete", &complete) == 1 &&
                 ain_mp_get_bool(body.root, "reset", &reset) == 1;
        }
        int n = ok && !reset ? s_write_page(http, events, last, &gone) : 0;
        if (st == AIN_STATUS_OK)
            ain_body_release(&body);
        ain_reply_close(&reply);
        if (gone)
            return S_REPLAY_GONE;
        if (!ok || n < 0) {
            ain_metric_inc(edge->m.replay_failed);
            s_warn_failed(http, ok ? "malformed answer" : ain_status_name(st));
            return S_REPLAY_FAILED;
        }
        if (reset)
            return S_REPLAY_RESET;
        ain_metric_add(edge->m.replayed, n);
        if (complete)
            return S_REPLAY_DONE;
    }
    return S_REPLAY_MORE;
}

/* Head, `connected`, replay or reset. Returns the S_REPLAY_* outcome;
 * `last` is the id the held events must be above. */
static int s_resume(ain__http_t *http, char *last, int id_len)
{
    ain_edge_t *edge = http->edge;
    char hello[128], reset[96];
    int n = ain__pump_hello(hello, sizeof hello);
    ain_metric_inc(edge->m.resumed);
    if (mg_write(http->conn, hello, (size_t)n) != n)
        return S_REPLAY_GONE;
    int rc = id_len > S_ID_MAX ? S_REPLAY_RESET : s_replay(http, last);
    if (rc == S_REPLAY_RESET || rc == S_REPLAY_FAILED) {
        /* too long to be ours; not in the log; the log cannot be read */
        ain_metric_inc(edge->m.resets);
        n = snprintf(reset, sizeof reset, S_RESET,
                     id_len > S_ID_MAX      ? "malformed"
                     : rc == S_REPLAY_RESET ? "unknown_id"
                                            : "log_unavailable");
        if (mg_write(http->conn, reset, (size_t)n) != n)
            return S_REPLAY_GONE;
        rc = S_REPLAY_RESET;
    } else if (rc == S_REPLAY_MORE) {
        ain_metric_inc(edge->m.replay_more);
        mg_write(http->conn, S_MORE_RETRY, sizeof S_MORE_RETRY - 1);
    }
    return rc;
}

/* `?user=N` names whose stream this is: the caller's own id, or, with an
 * admin access token, anyone's (operations, and the benchmark, which opens
 * 10,000 users' streams with one admin token). A user asking for another
 * user's stream is refused 403. Returns 0 (http->user is the stream's
 * user), or the HTTP status of the refusal it answered. With the development token `user` already
 * named the user (auth.c). */
static int s_stream_user(ain__http_t *http)
{
    char given[32];
    if (ain__http_query(http, "user", given, sizeof given) < 0)
        return 0;
    long long id = ain__http_uint(given);
    if (id <= 0)
        return ain__http_fail(http, AIN_STATUS_INVALID,
                              "query parameter user must be a positive integer");
    if ((uint64_t)id == http->user)
        return 0;
    if (!http->admin) {
        ain_metric_inc(http->edge->m.foreign_refused);
        return ain__http_error(http, 403, "FORBIDDEN",
                               "only an admin may open another user's stream");
    }
    ain_metric_inc(http->edge->m.foreign_streams);
    http->user = (uint64_t)id;
    return 0;
}

int ain__sse_stream(ain__http_t *http)
{
    ain_edge_t *edge = http->edge;
    if (http->info->is_ssl)
        return ain__http_error(http, 501, "NOT_IMPLEMENTED",
                               "streams are served over plain HTTP; terminate TLS in front");
    int refused = s_stream_user(http);
    if (refused)
        return refused;
    char last[S_ID_MAX + 2];
    int id_len = s_last_event_id(http, last, sizeof last);
    bool resume = id_len > 0;
    ain__stream_t *stream = NULL;
    int rc = atomic_load(&edge->stopping) ? AIN__OPEN_STOPPING
                                          : ain__pump_open(edge->pump, http->user, resume, &stream);
    if (rc == AIN__OPEN_FULL)
        return s_refuse(http, "edge_full");
    if (rc == AIN__OPEN_USER_FULL)
        return s_refuse(http, "user_limit");
    if (rc != AIN__OPEN_OK)
        return ain__http_fail(http, AIN_STATUS_UNAVAILABLE, "the edge is stopping");
    mg_disable_connection_keep_alive(http->conn);
    s_head(http);
    ain__http_count(edge, 200);
    int replay = resume ? s_resume(http, last, id_len) : S_REPLAY_DONE;
    if (replay == S_REPLAY_GONE || replay == S_REPLAY_MORE) {
        /* Gone, or to come back for more: civetweb closes the connection. */
        ain__pump_abort(edge->pump, stream);
        return 200;
    }
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
    ain__pump_attach(edge->pump, stream, fd, resume && replay == S_REPLAY_DONE ? last : NULL);
    return 200;
}
