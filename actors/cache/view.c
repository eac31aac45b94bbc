/* view.c: a read request, parsed into a view and its cache key.
 *
 * Everything here comes from outside: every field is checked for type and
 * size, provider ids must be usable key parts (actors/cache/keys.h), and
 * the user is the envelope's, stamped by the edge, never the body's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/internal.h"
#include "proto/body.h"
#include "proto/msgtype.h"

static const char *const s_roles[] = {"inbox", "sent", "drafts",  "archive",
                                      "trash", "spam", "starred", "important"};

/* Copies an optional string field into buf (NUL-terminated). Returns 0
 * (absent: buf ""), 1 (present) or -1 (wrong type or too long). */
static int s_str(const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const char *p;
    size_t n;
    int rc = ain_mp_get_str(map, key, &p, &n);
    buf[0] = '\0';
    if (rc <= 0)
        return rc;
    if (n >= size)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 1;
}

static bool s_role_ok(const char *role)
{
    for (size_t i = 0; i < sizeof s_roles / sizeof s_roles[0]; i++)
        if (strcmp(role, s_roles[i]) == 0)
            return true;
    return false;
}

/* "<ms>.<thread id>", digits only. */
/* "<ms>.<id>": the id a decimal that fits PostgreSQL's bigint, the time below 10^15 ms (the
 * query adds it to the epoch as an interval; year 33658 is far enough). A part out of range
 * was PostgreSQL's error, a 503, instead of the client's 400. */
static bool s_cursor_ok(const char *cursor)
{
    const char *dot = strchr(cursor, '.');
    if (!dot || dot == cursor || !dot[1])
        return false;
    for (const char *p = cursor; *p; p++)
        if (p != dot && (*p < '0' || *p > '9'))
            return false;
    errno = 0;
    char *end;
    long long ms = strtoll(cursor, &end, 10);
    if (errno || end != dot || ms >= 1000000000000000LL)
        return false;
    strtoll(dot + 1, &end, 10);
    return errno == 0 && *end == '\0';
}

static int s_list(const msgpack_object *b, ain__view_t *v, const char **why)
{
    uint64_t limit = AIN__LIMIT_DEFAULT;
    int nl = s_str(b, "label", v->label, sizeof v->label);
    int nr = s_str(b, "role", v->role, sizeof v->role);
    int na = ain_mp_get_bool(b, "archive", &v->archive);
    int chosen = (nl == 1) + (nr == 1) + (na == 1 && v->archive);
    *why = "a list names exactly one of label, role or archive: true";
    if (nl < 0 || nr < 0 || na < 0 || chosen != 1)
        return -1;
    *why = "role must be inbox, sent, drafts, archive, trash, spam, starred or important";
    if (nr == 1 && !s_role_ok(v->role))
        return -1;
    *why = "cursor must be the next_cursor of a previous page";
    if (s_str(b, "cursor", v->cursor, sizeof v->cursor) < 0 ||
        (v->cursor[0] && !s_cursor_ok(v->cursor)))
        return -1;
    *why = "limit must be 1..100";
    if (ain_mp_get_u64(b, "limit", &limit) < 0 || limit < 1 || limit > AIN__LIMIT_MAX)
        return -1;
    v->limit = (int)limit;
    const char *cursor = v->cursor[0] ? v->cursor : NULL;
    int n = v->archive ? ain_key_list_archive(v->key, v->account, cursor, v->limit)
            : nr == 1  ? ain_key_list_role(v->key, v->role, v->account, cursor, v->limit)
                       : ain_key_list_label(v->key, v->label, v->account, cursor, v->limit);
    *why = "label is not a usable id";
    return n;
}

static int s_one(const msgpack_object *b, const char *field, ain__view_t *v, const char **why)
{
    *why = v->kind == AIN__VIEW_THREAD ? "thread must be a provider thread id"
                                       : "message must be a provider message id";
    if (s_str(b, field, v->id, sizeof v->id) != 1)
        return -1;
    if (v->kind == AIN__VIEW_MESSAGE)
        return ain_key_message(v->key, v->id, v->account);
    *why = "bodies must be a boolean";
    if (ain_mp_get_bool(b, "bodies", &v->bodies) < 0)
        return -1;
    *why = "thread must be a provider thread id";
    return ain_key_thread(v->key, v->id, v->account, v->bodies);
}

int ain__view_parse(const ain_envelope_t *env, ain__view_t *view, const char **why)
{
    memset(view, 0, sizeof *view);
    view->user = env->user;
    if (!view->user) {
        *why = "a mail view needs the envelope's user";
        return AIN_STATUS_INVALID;
    }
    ain_body_t body;
    int n = -1;
    *why = "body must be a msgpack map";
    if (ain_body_parse(&body, env->body, env->body_len) == AIN_STATUS_OK &&
        body.root->type == MSGPACK_OBJECT_MAP &&
        ain_mp_get_u64(body.root, "account", &view->account) >= 0 &&
        s_str(body.root, "if_none_match", view->etag, sizeof view->etag) >= 0) {
        switch (env->type) {
        case AIN_MSG_MAIL_LIST:
            view->kind = AIN__VIEW_LIST;
            n = s_list(body.root, view, why);
            break;
        case AIN_MSG_MAIL_THREAD:
            view->kind = AIN__VIEW_THREAD;
            n = s_one(body.root, "thread", view, why);
            break;
        case AIN_MSG_MAIL_MESSAGE:
            view->kind = AIN__VIEW_MESSAGE;
            n = s_one(body.root, "message", view, why);
            break;
        default:
            view->kind = AIN__VIEW_COUNTS;
            n = ain_key_counts(view->key, view->account);
        }
    }
    ain_body_release(&body);
    if (n < 0)
        return AIN_STATUS_INVALID;
    view->key_len = (size_t)n;
    return AIN_STATUS_OK;
}
