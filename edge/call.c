/* call.c: the one translation path of the message routes (routes.c, handler ain__call).
 *
 *   request:  the route's params, each read from the query string or the captured path segment
 *             and checked for its kind, plus its fixed field, become a msgpack map; the user is
 *             the envelope's (the authenticated one), never a field, so no parameter can name
 *             another user;
 *   call:     one message to the route's service, with the caller's If-None-Match as
 *             `if_none_match` (the cache actor's ETag);
 *   answer:   {etag, data} -> the route's shape of data, 200 with that ETag; {etag, not_modified}
 *             -> 304; a refusal -> its status (http.c, ain_status_http) with the actor's reason.
 *
 * The answer built is kept (rendered.c) with its tag; the next identical request sends that tag
 * to the actor, and on `not_modified` copies the kept answer instead of building it again. Within
 * AINBOX_EDGE_FRESH_MS of the actor's last confirmation, and while no invalidation of the user
 * has reached the edge since (inval.c), the kept answer is sent without asking at all.
 *
 * A parameter the route does not declare is ignored (the frontend sends some the original
 * ignored: fields, includeAttachments, allowRemoteImages); a declared one that does not parse is
 * 400 INVALID_PARAMETER naming it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/status.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/mpjson.h"

#define S_VALUE_MAX 512 /* a query value: ids are at most 200, a Gmail q is short */

static int s_invalid(ain__http_t *http, const char *name, const char *why)
{
    char message[160];
    snprintf(message, sizeof message, "%s: %s", name, why);
    return ain__http_error(http, 400, "INVALID_PARAMETER", message);
}

/* One param into `fields`: 0, or the status of the refusal it answered (400, 501). */
static int s_param(ain__http_t *http, const ain__param_t *p, json_t *fields)
{
    char value[S_VALUE_MAX];
    int n;
    if (strcmp(p->name, ":") == 0) {
        n = (int)strlen(http->capture);
        memcpy(value, http->capture, (size_t)n + 1);
    } else {
        const char *qs = http->info->query_string;
        n = qs ? mg_get_var(qs, strlen(qs), p->name, value, sizeof value) : -1;
        if (n == -2) /* civetweb: the value does not fit */
            return s_invalid(http, p->name, "too long");
        /* civetweb decodes %00 into the value: what follows it would be cut off somewhere. */
        if (n > 0 && memchr(value, '\0', (size_t)n))
            return s_invalid(http, p->name, "must not contain a NUL byte");
    }
    const char *why = NULL;
    switch (p->kind) {
    case AIN__P_STR: {
        json_t *text = n > 0 ? json_stringn(value, (size_t)n) : NULL;
        if (n > 0 && !text)
            return s_invalid(http, p->name, "must be UTF-8");
        if (text)
            json_object_set_new(fields, p->field, text);
        return 0;
    }
    case AIN__P_UINT: {
        long long v = n >= 0 ? ain__http_uint(value) : p->dflt ? (long long)p->dflt : -2;
        if (v == -2)
            return 0;
        if (v < 0)
            return s_invalid(http, p->name, "must be a whole number");
        if (p->max && v > p->max)
            v = p->max;
        json_object_set_new(fields, p->field, json_integer(v));
        return 0;
    }
    case AIN__P_BOOL:
        if (n < 0)
            return 0;
        if (strcmp(value, "true") && strcmp(value, "1") && strcmp(value, "false") &&
            strcmp(value, "0"))
            return s_invalid(http, p->name, "must be true or false");
        json_object_set_new(fields, p->field, json_boolean(value[0] == 't' || value[0] == '1'));
        return 0;
    case AIN__P_GMAIL_Q:
        if (ain__mail_gmail_q(n >= 0 ? value : "", fields, &why) < 0)
            return ain__http_error(http, 501, "NOT_IMPLEMENTED", why);
        return 0;
    default: /* AIN__P_OUTLOOK_FOLDER */
        if (ain__mail_outlook_folder(n >= 0 ? value : "inbox", fields, &why) < 0)
            return s_invalid(http, p->name, why);
        return 0;
    }
}

/* The message body: `fields` (strings, integers, booleans) as a msgpack map. */
static void s_pack(msgpack_packer *pk, json_t *fields)
{
    const char *key;
    json_t *v;
    msgpack_pack_map(pk, json_object_size(fields));
    json_object_foreach(fields, key, v)
    {
        ain_mp_pack_str(pk, key);
        if (json_is_integer(v))
            msgpack_pack_int64(pk, json_integer_value(v));
        else if (json_is_boolean(v))
            json_is_true(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        else
            ain_mp_pack_str(pk, json_string_value(v));
    }
}

/* The ETag the client holds, if it is one of ours: "<16 hex digits>" (W/ allowed). */
static bool s_if_none_match(ain__http_t *http, char out[17])
{
    const char *h = mg_get_header(http->conn, "If-None-Match");
    if (!h)
        return false;
    if (strncmp(h, "W/", 2) == 0)
        h += 2;
    if (strlen(h) != 18 || h[0] != '"' || h[17] != '"')
        return false;
    for (int i = 1; i < 17; i++)
        if (!isxdigit((unsigned char)h[i]))
            return false;
    memcpy(out, h + 1, 16);
    out[16] = '\0';
    return true;
}

/* Asks the route's actor with `fields`; the reply as JSON (caller owns), or NULL having answered
 * (*status). */
static json_t *s_ask(ain__http_t *http, json_t *fields, int *status)
{
    const ain__call_t *call = http->route->call;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    s_pack(&pk, fields);
    json_t *reply = ain__http_call_json(http, call->service, call->type, http->user, buf.data,
                                        buf.size, status);
    msgpack_sbuffer_destroy(&buf);
    return reply;
}

static int s_malformed(ain__http_t *http)
{
    char why[96];
    snprintf(why, sizeof why, "malformed answer from the %s service", http->route->call->service);
    return ain__http_error(http, 502, "BAD_GATEWAY", why);
}

/* Builds the answer from the actor's data, keeps it (rendered.c) with `stamp` and sends it. */
static int s_build(ain__http_t *http, const char *key, json_t *data, const char *etag,
                   uint64_t stamp)
{
    json_t *body = json_is_object(data) ? http->route->call->shape(http, data) : NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(body);
    if (!text)
        return s_malformed(http);
    size_t len = strlen(text);
    ain__rendered_put(http->edge->rendered, http->user, key, etag, text, len, stamp,
                      ain_clock_mono_ms());
    ain_metric_inc(http->edge->m.rendered_builds);
    int status = ain__http_text_etag(http, text, len, etag);
    free(text);
    return status;
}

/* The answer kept for `key` if it is known current without asking (rendered.c, inval.c): sent
 * (200, or 304 for the client's own tag), and its status returned; else 0. */
static int s_fresh(ain__http_t *http, const char *key, const char *client)
{
    ain_edge_t *edge = http->edge;
    if (!edge->inval || strcmp(http->route->call->service, "cache") != 0)
        return 0; /* inval.c follows the cache's invalidations only */
    uint64_t stamp;
    char etag[17];
    size_t len;
    char *text = ain__rendered_fresh(edge->rendered, http->user, key, ain_clock_mono_ms(),
                                     edge->fresh_ms, &stamp, etag, &len);
    int status = 0;
    /* Checked after the copy: current then means the copy was. */
    if (text && ain__inval_current(edge->inval, http->user, stamp)) {
        ain_metric_inc(edge->m.rendered_fresh);
        status = client && strcmp(client, etag) == 0 ? ain__http_not_modified(http, etag)
                                                     : ain__http_text_etag(http, text, len, etag);
    }
    free(text);
    return status;
}

int ain__call(ain__http_t *http)
{
    const ain__call_t *call = http->route->call;
    ain_edge_t *edge = http->edge;
    /* The answer kept for this very request (path and query as given), and the client's tag. */
    const char *qs = http->info->query_string;
    char *key = ain_sprintf("%s?%s", http->path, qs ? qs : "");
    char client[17];
    bool has_client = s_if_none_match(http, client);
    int status = s_fresh(http, key, has_client ? client : NULL);
    if (status) {
        free(key);
        return status;
    }
    /* Taken before asking: an invalidation on its way while we ask makes the answer not current. */
    uint64_t stamp = ain__inval_stamp(edge->inval, http->user);
    json_t *fields = json_object();
    if (call->fixed_field) {
        const char *v = call->fixed_value;
        json_object_set_new(fields, call->fixed_field,
                            strcmp(v, "true") == 0 ? json_true() : json_string(v));
    }
    for (size_t i = 0; i < sizeof call->params / sizeof call->params[0] && call->params[i].name;
         i++) {
        int refused = s_param(http, &call->params[i], fields);
        if (refused) {
            json_decref(fields);
            free(key);
            return refused;
        }
    }
    char kept[17];
    bool has_kept = ain__rendered_etag(edge->rendered, http->user, key, kept);

    /* Twice at most: a kept answer replaced between the question and the copy is asked again,
     * without a tag. */
    for (int attempt = 0; attempt < 2 && !status; attempt++) {
        const char *tag = has_kept ? kept : has_client ? client : NULL;
        if (tag)
            json_object_set_new(fields, "if_none_match", json_string(tag));
        else
            json_object_del(fields, "if_none_match");
        json_t *reply = s_ask(http, fields, &status);
        if (!reply)
            break;
        const char *etag = json_string_value(json_object_get(reply, "etag"));
        if (!etag || strlen(etag) != 16)
            status = s_malformed(http);
        else if (!json_is_true(json_object_get(reply, "not_modified")))
            status = s_build(http, key, json_object_get(reply, "data"), etag, stamp);
        else if (has_client && strcmp(client, etag) == 0) {
            ain__rendered_confirm(edge->rendered, http->user, key, etag, stamp,
                                  ain_clock_mono_ms());
            status = ain__http_not_modified(http, etag);
        } else if (has_kept && strcmp(kept, etag) == 0) {
            ain__rendered_confirm(edge->rendered, http->user, key, etag, stamp,
                                  ain_clock_mono_ms());
            size_t len;
            char *text = ain__rendered_get(edge->rendered, http->user, key, etag, &len);
            if (text) {
                ain_metric_inc(edge->m.rendered_hits);
                status = ain__http_text_etag(http, text, len, etag);
                free(text);
            }
            has_kept = false;
        } else
            status = s_malformed(http); /* not_modified for a tag nobody sent */
        json_decref(reply);
    }
    if (!status)
        status = s_malformed(http);
    ain_metric_set(edge->m.rendered_bytes, (int64_t)ain__rendered_bytes(edge->rendered));
    json_decref(fields);
    free(key);
    return status;
}
