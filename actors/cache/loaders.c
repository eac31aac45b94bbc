/* loaders.c: L3, the PostgreSQL mail store: each view's queries
 * (actors/cache/queries.h), packed into the reply data every layer keeps.
 *
 * The data of each view (msgpack maps; provider ids as the API's ids,
 * times as epoch milliseconds, absent text as nil):
 *   list     {threads: [thread], next_cursor: "<ms>.<n>" | nil,
 *             total, unread (label and role lists only: threads, and
 *             threads with unread mail, carrying the label)}
 *   thread   {thread: thread, messages: [message]} (oldest first; html
 *             and text only when the request asked for bodies)
 *   message  {message: message} (with html and text)
 *   counts   {labels: [{account, id, name, role, total, unread}]}
 * thread:  {id, account, message (latest), subject, snippet, from (who
 *           started it), latest_from, to, date, count, unread, starred,
 *           has_attachments, labels: [id], version}
 * message: {id, account, thread, subject, from_name, from_addr, to, cc,
 *           bcc, snippet, date, size, unread, starred, has_attachments,
 *           sent, labels: [id], message_id, in_reply_to, references,
 *           version, has_body, [has_html, safe_html, text, blocked_images,
 *           cid_images,] attachments: [{id, filename, mime_type, size,
 *           content_id, inline}]}
 * The bracketed fields come with bodies: the raw HTML never leaves the
 * store; safe_html is the sanitised document (mail/html.h), built here once
 * per fill and kept by every layer; text is the text part, or the text of
 * the HTML when there is none.
 *
 * Every query is scoped by the user ($1); a view names the rest.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/internal.h"
#include "actors/cache/queries.h"
#include "mail/html.h"
#include "proto/body.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

/* ------------------------------------------------------------ packing columns */

static bool s_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

static void s_text(msgpack_packer *pk, const PGresult *r, int row, int col)
{
    if (s_null(r, row, col)) {
        msgpack_pack_nil(pk);
        return;
    }
    int n = PQgetlength(r, row, col);
    msgpack_pack_str(pk, (size_t)n);
    msgpack_pack_str_body(pk, PQgetvalue(r, row, col), (size_t)n);
}

static int64_t s_i64(const PGresult *r, int row, int col)
{
    return s_null(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void s_int(msgpack_packer *pk, const PGresult *r, int row, int col)
{
    if (s_null(r, row, col))
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, s_i64(r, row, col));
}

static void s_bool(msgpack_packer *pk, const PGresult *r, int row, int col)
{
    if (!s_null(r, row, col) && PQgetvalue(r, row, col)[0] == 't')
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* Reads one element of a PostgreSQL text[] literal ({a,"b c",NULL}) at
 * *p into out; returns its length (-1: NULL, -2: malformed). */
static int s_array_elem(const char **p, const char *end, char *out, size_t size)
{
    const char *s = *p;
    size_t n = 0;
    if (s < end && *s == '"') {
        for (s++; s < end && *s != '"'; s++) {
            if (*s == '\\' && s + 1 < end)
                s++;
            if (n + 1 >= size)
                return -2;
            out[n++] = *s;
        }
        if (s >= end)
            return -2;
        s++;
    } else {
        for (; s < end && *s != ',' && *s != '}'; s++) {
            if (n + 1 >= size)
                return -2;
            out[n++] = *s;
        }
        if (n == 4 && memcmp(out, "NULL", 4) == 0) {
            *p = s;
            return -1;
        }
    }
    *p = s;
    return (int)n;
}

/* A text[] column as an array of strings (NULL elements skipped). */
static void s_text_array(msgpack_packer *pk, const PGresult *r, int row, int col)
{
    const char *v = PQgetvalue(r, row, col), *end = v + PQgetlength(r, row, col);
    char elems[64][AIN_KEY_PART_MAX + 1];
    int lens[64], n = 0;
    if (s_null(r, row, col) || end - v < 2 || *v != '{') {
        msgpack_pack_array(pk, 0);
        return;
    }
    for (const char *p = v + 1; p < end && *p != '}' && n < 64;) {
        int len = s_array_elem(&p, end, elems[n], sizeof elems[n]);
        if (len == -2)
            break; /* an id longer than any provider's: not ours to show */
        if (len >= 0)
            lens[n++] = len;
        if (p < end && *p == ',')
            p++;
    }
    msgpack_pack_array(pk, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_str(pk, (size_t)lens[i]);
        msgpack_pack_str_body(pk, elems[i], (size_t)lens[i]);
    }
}

static void s_key(msgpack_packer *pk, const char *key)
{
    ain_mp_pack_str(pk, key);
}

/* The thread columns (queries.h) of one row. */
static void s_pack_thread(msgpack_packer *pk, const PGresult *r, int row)
{
    static const struct {
        const char *name;
        int col;
        char kind; /* t text, i integer, b bool, a text[] */
    } cols[] = {{"id", 1, 't'},          {"account", 2, 'i'},  {"message", 3, 't'},
                {"subject", 4, 't'},     {"snippet", 5, 't'},  {"from", 6, 't'},
                {"latest_from", 7, 't'}, {"to", 8, 't'},       {"date", 9, 'i'},
                {"count", 10, 'i'},      {"unread", 11, 'i'},  {"has_attachments", 12, 'b'},
                {"starred", 13, 'b'},    {"version", 14, 'i'}, {"labels", 15, 'a'}};
    msgpack_pack_map(pk, sizeof cols / sizeof cols[0]);
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        s_key(pk, cols[i].name);
        switch (cols[i].kind) {
        case 't':
            s_text(pk, r, row, cols[i].col);
            break;
        case 'i':
            s_int(pk, r, row, cols[i].col);
            break;
        case 'b':
            s_bool(pk, r, row, cols[i].col);
            break;
        default:
            s_text_array(pk, r, row, cols[i].col);
        }
    }
}

/* The attachment columns (queries.h) of one row. */
static void s_pack_attachment(msgpack_packer *pk, const PGresult *r, int row)
{
    msgpack_pack_map(pk, 6);
    s_key(pk, "id");
    s_text(pk, r, row, 1);
    s_key(pk, "filename");
    s_text(pk, r, row, 2);
    s_key(pk, "mime_type");
    s_text(pk, r, row, 3);
    s_key(pk, "size");
    s_int(pk, r, row, 4);
    s_key(pk, "content_id");
    s_text(pk, r, row, 5);
    s_key(pk, "inline");
    s_bool(pk, r, row, 6);
}

/* The body fields of a message row (html in column 24, text in 25): the
 * sanitised document with its counts, and the text, extracted from the
 * HTML (the same parse) when the message has no text part. */
#define S_BODY_FIELDS 5
static void s_pack_body(msgpack_packer *pk, const PGresult *r, int row)
{
    bool has_html = !s_null(r, row, 24) && PQgetlength(r, row, 24) > 0;
    bool has_text = !s_null(r, row, 25) && PQgetlength(r, row, 25) > 0;
    ain_html_result_t safe = {0};
    if (has_html)
        ain_html_sanitize(PQgetvalue(r, row, 24), (size_t)PQgetlength(r, row, 24),
                          has_text ? 0 : AIN_HTML_TEXT, &safe);
    s_key(pk, "has_html");
    if (has_html)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    s_key(pk, "safe_html");
    if (has_html) {
        msgpack_pack_str(pk, safe.len);
        msgpack_pack_str_body(pk, safe.doc, safe.len);
    } else {
        msgpack_pack_nil(pk);
    }
    s_key(pk, "text");
    if (safe.text) {
        msgpack_pack_str(pk, safe.text_len);
        msgpack_pack_str_body(pk, safe.text, safe.text_len);
    } else {
        s_text(pk, r, row, 25);
    }
    s_key(pk, "blocked_images");
    msgpack_pack_uint32(pk, safe.blocked_images);
    s_key(pk, "cid_images");
    msgpack_pack_uint32(pk, safe.cid_images);
    free(safe.doc);
    free(safe.text);
}

/* The message columns (queries.h) of one row, with its attachments (the
 * rows of `atts` whose message_id is this message's). */
static void s_pack_message(msgpack_packer *pk, const PGresult *r, int row, bool bodies,
                           const PGresult *atts)
{
    static const struct {
        const char *name;
        int col;
        char kind;
    } cols[] = {{"id", 1, 't'},           {"account", 2, 'i'},     {"thread", 4, 't'},
                {"subject", 5, 't'},      {"from_name", 6, 't'},   {"from_addr", 7, 't'},
                {"to", 8, 't'},           {"cc", 9, 't'},          {"bcc", 10, 't'},
                {"snippet", 11, 't'},     {"date", 12, 'i'},       {"size", 13, 'i'},
                {"unread", 14, 'b'},      {"starred", 15, 'b'},    {"has_attachments", 16, 'b'},
                {"sent", 17, 'b'},        {"labels", 18, 'a'},     {"message_id", 19, 't'},
                {"in_reply_to", 20, 't'}, {"references", 21, 't'}, {"version", 22, 'i'},
                {"has_body", 23, 'b'}};
    size_t ncols = sizeof cols / sizeof cols[0];
    msgpack_pack_map(pk, (uint32_t)ncols + 1 + (bodies ? S_BODY_FIELDS : 0));
    for (size_t i = 0; i < ncols; i++) {
        s_key(pk, cols[i].name);
        switch (cols[i].kind) {
        case 't':
            s_text(pk, r, row, cols[i].col);
            break;
        case 'i':
            s_int(pk, r, row, cols[i].col);
            break;
        case 'b':
            s_bool(pk, r, row, cols[i].col);
            break;
        default:
            s_text_array(pk, r, row, cols[i].col);
        }
    }
    if (bodies)
        s_pack_body(pk, r, row);
    s_key(pk, "attachments");
    int64_t id = s_i64(r, row, 0);
    uint32_t n = 0;
    for (int a = 0; atts && a < PQntuples(atts); a++)
        n += s_i64(atts, a, 0) == id;
    msgpack_pack_array(pk, n);
    for (int a = 0; atts && a < PQntuples(atts); a++)
        if (s_i64(atts, a, 0) == id)
            s_pack_attachment(pk, atts, a);
}

/* ------------------------------------------------------------ running queries */

static void s_init_packer(ain__load_t *load, msgpack_packer *pk)
{
    msgpack_packer_init(pk, &load->out, msgpack_sbuffer_write);
}

static void s_fail(ain__state_t *st, ain__load_t *load, const char *why)
{
    ain__load_done(st, load, AIN__FAILED, NULL, 0, 0, 0, why);
}

static void s_done(ain__state_t *st, ain__load_t *load)
{
    const uint8_t *data = (const uint8_t *)load->out.data;
    ain__load_done(st, load, AIN__FROM_L3, data, load->out.size, ain__etag_of(data, load->out.size),
                   ain_clock_mono_ms() - load->started_ms, NULL);
}

/* Checks an outcome: true if it has rows; otherwise fails the load. */
static bool s_ok(ain__load_t *load, const ain_pg_outcome_t *out)
{
    ain__state_t *st = load->state;
    if (out->result)
        return true;
    ain_metric_inc(st->m.l3_errors);
    ain_warn(st->log, "cache: L3 query for user %llu failed: %s",
             (unsigned long long)load->view.user, out->error ? out->error : "?");
    s_fail(st, load, "the mail store did not answer");
    return false;
}

/* The latest deadline of the load's waiters (0 for a refresh nobody waits
 * for): the store's answer is of no use after it. */
static int64_t s_deadline(const ain__load_t *load)
{
    int64_t deadline = 0;
    for (size_t i = 0; i < load->nwaiters; i++) {
        int64_t d = ain_request_envelope(load->waiters[i])->deadline_ms;
        if (d > deadline)
            deadline = d;
    }
    return deadline;
}

/* Runs `sql` with the view's user as $1, then the `n` parameters given as
 * $2...: every query of the read side is scoped by user, here, once. */
static void s_query(ain__load_t *load, const char *sql, int n, const char *const *rest,
                    ain_pg_fn *fn)
{
    ain__state_t *st = load->state;
    char user[24];
    const char *params[8];
    assert(n < 8);
    snprintf(user, sizeof user, "%llu", (unsigned long long)load->view.user);
    params[0] = user;
    for (int i = 0; i < n; i++)
        params[i + 1] = rest[i];
    ain_metric_inc(st->m.l3_queries);
    if (ain_pg_query(st->pg, s_deadline(load), sql, n + 1, params, fn, load) < 0) {
        ain_metric_inc(st->m.l3_errors);
        s_fail(st, load, "the mail store is overloaded");
    }
}

/* ------------------------------------------------------------ list */

static void s_on_list_counts(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    s_init_packer(load, &pk);
    bool row = PQntuples(out->result) > 0;
    s_key(&pk, "total");
    msgpack_pack_int64(&pk, row ? s_i64(out->result, 0, 0) : 0);
    s_key(&pk, "unread");
    msgpack_pack_int64(&pk, row ? s_i64(out->result, 0, 1) : 0);
    s_done(load->state, load);
}

static void s_on_list(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    const ain__view_t *v = &load->view;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    const PGresult *r = out->result;
    int rows = PQntuples(r);
    s_init_packer(load, &pk);
    msgpack_pack_map(&pk, v->archive ? 2 : 4);
    s_key(&pk, "threads");
    msgpack_pack_array(&pk, (uint32_t)rows);
    for (int i = 0; i < rows; i++)
        s_pack_thread(&pk, r, i);
    s_key(&pk, "next_cursor");
    if (rows > 0 && rows >= v->limit) {
        char cursor[64];
        snprintf(cursor, sizeof cursor, "%lld.%lld", (long long)s_i64(r, rows - 1, 9),
                 (long long)s_i64(r, rows - 1, 0));
        ain_mp_pack_str(&pk, cursor);
    } else {
        msgpack_pack_nil(&pk);
    }
    if (v->archive) {
        s_done(load->state, load);
        return;
    }
    char account[24];
    snprintf(account, sizeof account, "%llu", (unsigned long long)v->account);
    const char *params[] = {v->account ? account : NULL, v->label[0] ? v->label : NULL,
                            v->role[0] ? v->role : NULL};
    s_query(load, AIN_Q_COUNT_LABEL, 3, params, s_on_list_counts);
}

static void s_list(ain__load_t *load)
{
    const ain__view_t *v = &load->view;
    char account[24], limit[16], ms[32] = "", id[32] = "";
    snprintf(account, sizeof account, "%llu", (unsigned long long)v->account);
    snprintf(limit, sizeof limit, "%d", v->limit);
    if (v->cursor[0]) { /* "<ms>.<id>", checked by view.c */
        const char *dot = strchr(v->cursor, '.');
        snprintf(ms, sizeof ms, "%.*s", (int)(dot - v->cursor), v->cursor);
        snprintf(id, sizeof id, "%s", dot + 1);
    }
    const char *acc = v->account ? account : NULL, *c_ms = ms[0] ? ms : NULL,
               *c_id = id[0] ? id : NULL;
    if (v->archive) {
        const char *params[] = {acc, c_ms, c_id, limit};
        s_query(load, AIN_Q_LIST_ARCHIVE, 4, params, s_on_list);
    } else {
        const char *params[] = {
            acc, v->label[0] ? v->label : NULL, v->role[0] ? v->role : NULL, c_ms, c_id, limit};
        s_query(load, AIN_Q_LIST_LABEL, 6, params, s_on_list);
    }
}

/* ------------------------------------------------------------ thread */

static void s_on_thread_attachments(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    const PGresult *msgs = load->held;
    s_init_packer(load, &pk);
    s_key(&pk, "messages");
    msgpack_pack_array(&pk, (uint32_t)PQntuples(msgs));
    for (int i = 0; i < PQntuples(msgs); i++)
        s_pack_message(&pk, msgs, i, load->view.bodies, out->result);
    s_done(load->state, load);
}

static void s_on_thread_messages(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    (void)pg;
    if (!s_ok(load, out))
        return;
    load->held = ain_pg_take(out);
    const char *params[] = {load->thread_id};
    s_query(load, AIN_Q_THREAD_ATTACHMENTS, 1, params, s_on_thread_attachments);
}

static void s_on_thread(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    if (PQntuples(out->result) == 0) {
        ain__load_done(load->state, load, AIN__NOT_FOUND, NULL, 0, 0, 0, "no such thread");
        return;
    }
    /* With every account asked, the first (lowest account id) wins. */
    snprintf(load->thread_id, sizeof load->thread_id, "%s", PQgetvalue(out->result, 0, 0));
    s_init_packer(load, &pk);
    msgpack_pack_map(&pk, 2);
    s_key(&pk, "thread");
    s_pack_thread(&pk, out->result, 0);
    const char *params[] = {load->thread_id};
    s_query(load, AIN_Q_THREAD_MESSAGES, 1, params, s_on_thread_messages);
}

/* ------------------------------------------------------------ message */

static void s_on_message_attachments(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    s_init_packer(load, &pk);
    msgpack_pack_map(&pk, 1);
    s_key(&pk, "message");
    s_pack_message(&pk, load->held, 0, true, out->result);
    s_done(load->state, load);
}

static void s_on_message(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    (void)pg;
    if (!s_ok(load, out))
        return;
    if (PQntuples(out->result) == 0) {
        ain__load_done(load->state, load, AIN__NOT_FOUND, NULL, 0, 0, 0, "no such message");
        return;
    }
    snprintf(load->message_id, sizeof load->message_id, "%s", PQgetvalue(out->result, 0, 0));
    load->held = ain_pg_take(out);
    const char *params[] = {load->message_id};
    s_query(load, AIN_Q_MESSAGE_ATTACHMENTS, 1, params, s_on_message_attachments);
}

/* ------------------------------------------------------------ counts */

static void s_on_counts(ain_pg_t *pg, const ain_pg_outcome_t *out, void *arg)
{
    ain__load_t *load = arg;
    msgpack_packer pk;
    (void)pg;
    if (!s_ok(load, out))
        return;
    const PGresult *r = out->result;
    s_init_packer(load, &pk);
    msgpack_pack_map(&pk, 1);
    s_key(&pk, "labels");
    msgpack_pack_array(&pk, (uint32_t)PQntuples(r));
    for (int i = 0; i < PQntuples(r); i++) {
        msgpack_pack_map(&pk, 6);
        s_key(&pk, "account");
        s_int(&pk, r, i, 0);
        s_key(&pk, "id");
        s_text(&pk, r, i, 1);
        s_key(&pk, "name");
        s_text(&pk, r, i, 2);
        s_key(&pk, "role");
        s_text(&pk, r, i, 3);
        s_key(&pk, "total");
        s_int(&pk, r, i, 4);
        s_key(&pk, "unread");
        s_int(&pk, r, i, 5);
    }
    s_done(load->state, load);
}

/* ------------------------------------------------------------ entry */

void ain__load_l3(ain__state_t *st, ain__load_t *load)
{
    const ain__view_t *v = &load->view;
    if (!st->pg) {
        s_fail(st, load, "no mail store is configured (DATABASE_URL)");
        return;
    }
    msgpack_sbuffer_clear(&load->out);
    char account[24];
    snprintf(account, sizeof account, "%llu", (unsigned long long)v->account);
    const char *acc = v->account ? account : NULL;
    switch (v->kind) {
    case AIN__VIEW_LIST:
        s_list(load);
        break;
    case AIN__VIEW_THREAD: {
        const char *params[] = {acc, v->id};
        s_query(load, AIN_Q_THREAD, 2, params, s_on_thread);
        break;
    }
    case AIN__VIEW_MESSAGE: {
        const char *params[] = {acc, v->id};
        s_query(load, AIN_Q_MESSAGE, 2, params, s_on_message);
        break;
    }
    case AIN__VIEW_COUNTS: {
        const char *params[] = {acc};
        s_query(load, AIN_Q_COUNTS, 1, params, s_on_counts);
        break;
    }
    }
}
