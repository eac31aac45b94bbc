/* http.c: writing responses. Every answer of the edge is JSON with an
 * explicit length, `Cache-Control: no-store` and, for errors, the body
 * {"error": {"code", "message"}}. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

void ain__http_count(ain_edge_t *edge, int status)
{
    ain_metric_inc(edge->m.requests);
    ain_metric_inc(status >= 500   ? edge->m.status_5xx
                   : status >= 400 ? edge->m.status_4xx
                                   : edge->m.status_2xx);
}

/* Writes the status line and headers ("Name: value\r\n" lines in
 * `headers`). Not civetweb's mg_response_header_send: in 1.15 it formats
 * the Date header with gmtime(), whose static buffer is shared by all
 * threads, so concurrent answers could carry each other's dates. */
/* The status line and headers (with Date) into a new string, `extra` bytes to spare. */
static char *s_head(struct mg_connection *conn, int status, const char *headers, size_t extra,
                    size_t *len)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    const char *reason = mg_get_response_code_text(conn, status);
    size_t n = (size_t)snprintf(NULL, 0, "HTTP/1.1 %d %s\r\nDate: %s\r\n%s\r\n", status, reason,
                                date, headers);
    char *buf = ain_malloc(n + 1 + extra);
    snprintf(buf, n + 1, "HTTP/1.1 %d %s\r\nDate: %s\r\n%s\r\n", status, reason, date, headers);
    *len = n;
    return buf;
}

void ain__http_head(struct mg_connection *conn, int status, const char *headers)
{
    size_t len;
    char *head = s_head(conn, status, headers, 0, &len);
    mg_write(conn, head, len);
    free(head);
}

/* Sends `len` bytes of JSON `text` (borrowed) with `status`, plus extra header lines; not stored
 * by caches unless `etag` (then revalidated with it on every use). */
static int s_send_text(ain__http_t *http, int status, const char *text, size_t len,
                       const char *extra, const char *etag)
{
    char validator[48] = "";
    if (etag)
        snprintf(validator, sizeof validator, "ETag: \"%s\"\r\n", etag);
    /* Allocated: the session cookies alone take about a kilobyte. A 304 has no body, and no
     * length (it would have to be the 200's). */
    char length[80] = "";
    if (status != 304 && status != 204) /* neither has a body, nor a length (RFC 9110) */
        snprintf(length, sizeof length, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                 len);
    char *headers = ain_sprintf("%sCache-Control: %s\r\n%s%s%s", length,
                                etag ? "private, no-cache" : "no-store", validator, http->headers,
                                extra ? extra : "");
    /* One write for head and body: one system call, one segment for a small answer. */
    size_t head_len;
    char *out = s_head(http->conn, status, headers, len, &head_len);
    free(headers);
    if (len)
        memcpy(out + head_len, text, len);
    mg_write(http->conn, out, head_len + len);
    free(out);
    ain__http_count(http->edge, status);
    return status;
}

/* Sends `body` (stolen; may be NULL) as s_send_text does. */
static int s_send(ain__http_t *http, int status, json_t *body, const char *extra, const char *etag)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(body);
    int rc = s_send_text(http, status, text, text ? strlen(text) : 0, extra, etag);
    free(text);
    return rc;
}

int ain__http_json(ain__http_t *http, int status, json_t *body)
{
    return s_send(http, status, body, NULL, NULL);
}

int ain__http_text_etag(ain__http_t *http, const char *text, size_t len, const char *etag)
{
    return s_send_text(http, 200, text, len, NULL, etag);
}

int ain__http_not_modified(ain__http_t *http, const char *etag)
{
    return s_send(http, 304, NULL, NULL, etag);
}

int ain__http_json_extra(ain__http_t *http, int status, json_t *body, const char *extra)
{
    return s_send(http, status, body, extra, NULL);
}

int ain__http_error_allow(ain__http_t *http, const char *allow)
{
    char line[96];
    snprintf(line, sizeof line, "Allow: %s\r\n", allow);
    return ain__http_error_extra(http, 405, "METHOD_NOT_ALLOWED",
                                 "method not allowed on this route", line);
}

int ain__http_error(ain__http_t *http, int status, const char *code, const char *message)
{
    return ain__http_error_extra(http, status, code, message, NULL);
}

int ain__http_error_extra(ain__http_t *http, int status, const char *code, const char *message,
                          const char *extra)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (status >= 500)
        ain_warn(http->edge->log, "%s %s: %d %s (%s)",
                 http->info && http->info->request_method ? http->info->request_method : "-",
                 http->path[0]                         ? http->path
                 : http->info && http->info->local_uri ? http->info->local_uri
                                                       : "-",
                 status, code, message);
    return s_send(http, status, body, extra, NULL);
}

int ain__http_fail(ain__http_t *http, int status, const char *message)
{
    return ain__http_error(http, ain_status_http(status), ain_status_name(status), message);
}

json_t *ain__http_call_json(ain__http_t *http, const char *service, uint16_t type, uint64_t user,
                            const void *body, size_t len, int *status)
{
    ain_reply_t reply;
    ain_status_t st = ain_client_call(http->client, service, type, user, body, len,
                                      http->edge->call_timeout_ms, &reply);
    if (st != AIN_STATUS_OK) {
        char why[160];
        if (!reply.env.body_len)
            ain__http_no_answer(http, service, why, sizeof why);
        else
            ain__reply_message(&reply, why, sizeof why);
        ain_reply_close(&reply);
        *status = ain__http_fail(http, st, why);
        return NULL;
    }
    json_t *out = ain_mpjson_from_body(reply.env.body, reply.env.body_len);
    ain_reply_close(&reply);
    if (!json_is_object(out)) {
        json_decref(out);
        char why[96];
        snprintf(why, sizeof why, "malformed answer from the %s service", service);
        *status = ain__http_error(http, 502, "BAD_GATEWAY", why);
        return NULL;
    }
    return out;
}

ain_status_t ain__http_call_reply(ain__http_t *http, const char *service, uint16_t type,
                                  uint64_t user, const void *body, size_t len, int timeout_ms,
                                  json_t **reply)
{
    ain_reply_t r;
    ain_status_t st = ain_client_call(http->client, service, type, user, body, len, timeout_ms, &r);
    *reply = r.env.body_len ? ain_mpjson_from_body(r.env.body, r.env.body_len) : NULL;
    ain_reply_close(&r);
    if (st == AIN_STATUS_OK && !json_is_object(*reply))
        st = AIN_STATUS_ERROR;
    return st;
}

const char *ain__http_no_answer(const ain__http_t *http, const char *service, char *buf,
                                size_t size)
{
    if (atomic_load(&http->edge->broker_down))
        snprintf(buf, size, "the edge cannot reach its broker (the %s service may be fine)",
                 service);
    else
        snprintf(buf, size, "the %s service did not answer", service);
    return buf;
}

const char *ain__reply_message(const ain_reply_t *reply, char *buf, size_t size)
{
    ain_body_t body;
    const char *text = NULL;
    size_t len = 0;
    snprintf(buf, size, "%s", ain_status_name(reply->env.status));
    if (ain_body_parse(&body, reply->env.body, reply->env.body_len) == AIN_STATUS_OK &&
        ain_mp_get_str(body.root, "message", &text, &len) == 1)
        snprintf(buf, size, "%.*s", (int)len, text);
    ain_body_release(&body);
    return buf;
}

int ain__http_query(ain__http_t *http, const char *name, char *buf, size_t size)
{
    const char *qs = http->info->query_string;
    if (!qs)
        return -1;
    int n = mg_get_var(qs, strlen(qs), name, buf, size);
    return n >= 0 ? n : -1;
}

long long ain__http_uint(const char *text)
{
    if (!isdigit((unsigned char)text[0]) || strlen(text) > 18)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    return errno || *end ? -1 : v;
}

void ain__http_iso_time(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
}

int ain__http_read_body(ain__http_t *http)
{
    long long declared = http->info->content_length;
    if (declared <= 0 && !mg_get_header(http->conn, "Transfer-Encoding"))
        return 0;
    /* Within the deadline in all: each mg_read waits at most civetweb's request_timeout_ms,
     * so a body trickled a byte at a time is cut at the deadline, give or take one read. */
    char *buf = ain_malloc(AIN__BODY_MAX + 1);
    size_t n = 0;
    int64_t deadline = ain_clock_mono_ms() + http->edge->body_timeout_ms;
    bool late = false;
    while (n <= AIN__BODY_MAX && !(late = ain_clock_mono_ms() >= deadline)) {
        int got = mg_read(http->conn, buf + n, AIN__BODY_MAX + 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    if (declared >= 0 && (long long)n < declared && n <= AIN__BODY_MAX)
        late = true; /* the client stopped sending, or the deadline passed inside a read */
    if (late || n > AIN__BODY_MAX) {
        free(buf);
        mg_disable_connection_keep_alive(http->conn);
        return late ? ain__http_error_extra(http, 408, "REQUEST_TIMEOUT",
                                            "the request body did not arrive in time",
                                            "Connection: close\r\n")
                    : ain__http_error_extra(http, 413, "PAYLOAD_TOO_LARGE",
                                            "the request body is larger than any route takes",
                                            "Connection: close\r\n");
    }
    http->body = buf;
    http->body_len = n;
    return 0;
}

json_t *ain__http_read_json(ain__http_t *http, size_t max, int *status)
{
    if (http->body_len > max) {
        *status = ain__http_error(http, 413, "PAYLOAD_TOO_LARGE", "the request body is too large");
        return NULL;
    }
    const char *buf = http->body ? http->body : "";
    size_t len = http->body_len;
    json_error_t err;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        char message[224];
        snprintf(message, sizeof message, "the body is not JSON: %s (at byte %d)", err.text,
                 err.position);
        *status = ain__http_error(http, 400, "INVALID_JSON", message);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *status = ain__http_error(http, 400, "INVALID_JSON", "the body must be a JSON object");
        return NULL;
    }
    return root;
}
