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
 * A parameter the route does not declare is ignored (the frontend sends some the original
 * ignored: fields, includeAttachments, allowRemoteImages); a declared one that does not parse is
 * 400 INVALID_PARAMETER naming it.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "edge/internal.h"
#include "proto/body.h"
#include "proto/status.h"
#include "runtime/mpjson.h"

#define S_VALUE_MAX 512 /* a query value: ids are at most 200, a Gmail q is short */

static int s_invalid(ain__http_t *http, const char *name, const char *why)
{
    char message[160];
    snprintf(message, sizeof message, "%s: %s", name, why);
    return ain__http_error(http, 400, "INVALID_PARAMETER", message);
}

/* A decimal number without sign, spaces or leading junk, or -1. */
static long long s_uint(const char *text)
{
    if (!isdigit((unsigned char)text[0]) || strlen(text) > 18)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    return errno || *end ? -1 : v;
}

/* One param into `fields`: 0, or -1 having answered 400. */
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
            return s_invalid(http, p->name, "too long"), -1;
    }
    const char *why = NULL;
    switch (p->kind) {
    case AIN__P_STR:
        if (n > 0)
            json_object_set_new(fields, p->field, json_stringn(value, (size_t)n));
        return 0;
    case AIN__P_UINT: {
        long long v = n >= 0 ? s_uint(value) : p->dflt ? (long long)p->dflt : -2;
        if (v == -2)
            return 0;
        if (v < 0)
            return s_invalid(http, p->name, "must be a whole number"), -1;
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
            return s_invalid(http, p->name, "must be true or false"), -1;
        json_object_set_new(fields, p->field, json_boolean(value[0] == 't' || value[0] == '1'));
        return 0;
    case AIN__P_GMAIL_Q:
        if (ain__mail_gmail_q(n >= 0 ? value : "", fields, &why) < 0)
            return ain__http_error(http, 501, "NOT_IMPLEMENTED", why), -1;
        return 0;
    default: /* AIN__P_OUTLOOK_FOLDER */
        if (ain__mail_outlook_folder(n >= 0 ? value : "inbox", fields, &why) < 0)
            return s_invalid(http, p->name, why), -1;
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

int ain__call(ain__http_t *http)
{
    const ain__call_t *call = http->route->call;
    json_t *fields = json_object();
    if (call->fixed_field) {
        const char *v = call->fixed_value;
        json_object_set_new(fields, call->fixed_field,
                            strcmp(v, "true") == 0 ? json_true() : json_string(v));
    }
    for (size_t i = 0; i < sizeof call->params / sizeof call->params[0] && call->params[i].name;
         i++)
        if (s_param(http, &call->params[i], fields) < 0) {
            json_decref(fields);
            return 400;
        }
    char etag_in[17];
    if (s_if_none_match(http, etag_in))
        json_object_set_new(fields, "if_none_match", json_string(etag_in));

    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    s_pack(&pk, fields);
    json_decref(fields);
    int status;
    json_t *reply = ain__http_call_json(http, call->service, call->type, http->user, buf.data,
                                        buf.size, &status);
    msgpack_sbuffer_destroy(&buf);
    if (!reply)
        return status;

    const char *etag = json_string_value(json_object_get(reply, "etag"));
    json_t *data = json_object_get(reply, "data");
    json_t *body = NULL;
    if (etag && json_is_true(json_object_get(reply, "not_modified")))
        status = ain__http_not_modified(http, etag);
    else if (etag && json_is_object(data) && (body = call->shape(http, data)) != NULL)
        status = ain__http_json_etag(http, body, etag);
    else {
        char why[96];
        snprintf(why, sizeof why, "malformed answer from the %s service", call->service);
        status = ain__http_error(http, 502, "BAD_GATEWAY", why);
    }
    json_decref(reply);
    return status;
}
