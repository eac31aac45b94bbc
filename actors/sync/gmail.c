/* gmail.c: the Gmail sync steps, one bounded step per JOB_RUN.
 *
 * Full sync (a first backfill, or a resync after history.list's 404): the
 * profile and labels (the mailbox's historyId is recorded first, so that
 * incremental sync continues from it); then metadata pages, inbox first and
 * newest first (messages.list, messages.get format=metadata); then bodies in
 * the same order (format=raw, parsed by mime.c) for messages the store has
 * no body of; then a sweep that deletes what the store holds and the
 * provider no longer listed (sync_seen). Incremental sync: one
 * history.list page per step, the added messages fetched whole (format=raw),
 * label changes and deletes in the records' order. The progress lives in
 * accounts.sync_full and sync_cursor; every step ends in ain__run_save.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "actors/sync/internal.h"
#include "actors/sync/mime.h"
#include "actors/sync/queries.h"
#include "proto/body.h"
#include "runtime/mpjson.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_BODY_PAGE 10 /* raw messages per step: each may be megabytes */
#define S_META_HEADERS                                                                             \
    "&metadataHeaders=Subject&metadataHeaders=From&metadataHeaders=To&metadataHeaders=Cc"          \
    "&metadataHeaders=Bcc&metadataHeaders=Message-ID&metadataHeaders=In-Reply-To"                  \
    "&metadataHeaders=References&metadataHeaders=Content-Type"

static void s_full(ain__run_t *r);

/* ------------------------------------------------------------ helpers */

/* Gmail ids as the store takes them: 1..200 printable characters, no space or ':'. */
static bool s_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > AIN__SYNC_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (id[i] <= ' ' || id[i] > '~' || id[i] == ':')
            return false;
    return true;
}

/* A page token or history id in a URL: Gmail's are opaque but URL-safe; refuse anything else
 * rather than escape it. */
static bool s_token_ok(const char *t)
{
    for (const char *p = t; p && *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '-' || *p == '_' || *p == '.' || *p == '~'))
            return false;
    return t && *t && strlen(t) < 512;
}

static const char *s_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Appends one change (stolen) to the run's MAIL_APPLY batch. */
static void s_op(ain__run_t *r, json_t *op)
{
    ain_mpjson_pack(&r->pk, op);
    r->nops++;
    json_decref(op);
}

static void s_set(json_t *o, const char *key, char *value) /* takes value */
{
    if (value)
        json_object_set_new(o, key, json_string(value));
    free(value);
}

static char *s_url(ain__run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *s_url(ain__run_t *r, const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    return ain_sprintf("%s/gmail/v1/users/me/%s", r->st->api, path);
}

/* ------------------------------------------------------------ messages into changes */

static const char *s_header(json_t *headers, const char *name)
{
    size_t i;
    json_t *h;
    json_array_foreach(headers, i, h)
    {
        const char *n = s_str(h, "name");
        if (n && strcasecmp(n, name) == 0)
            return s_str(h, "value");
    }
    return NULL;
}

static json_t *s_body_op(const char *id, const ain__mime_t *m)
{
    json_t *att = json_array();
    for (size_t i = 0; i < m->natt; i++) {
        const ain__mime_att_t *a = &m->att[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:b}", "id", a->part, "mime_type", a->mime_type,
                              "size", (json_int_t)a->size, "inline", a->is_inline);
        if (a->filename)
            json_object_set_new(o, "filename", json_string(a->filename));
        if (a->content_id)
            json_object_set_new(o, "content_id", json_string(a->content_id));
        json_array_append_new(att, o);
    }
    json_t *op = json_pack("{s:s, s:s, s:o}", "op", "upsert_body", "id", id, "attachments", att);
    if (m->html)
        json_object_set_new(op, "html", json_string(m->html));
    if (m->text)
        json_object_set_new(op, "text", json_string(m->text));
    return op;
}

/* upsert_message (and, with a raw message, upsert_body) for Gmail message `msg`. */
void ain__gmail_op_upsert(ain__run_t *r, json_t *msg, const char *raw, size_t raw_len)
{
    const char *id = s_str(msg, "id"), *tid = s_str(msg, "threadId");
    const char *date = s_str(msg, "internalDate");
    if (!s_id_ok(id) || !s_id_ok(tid) || !date) {
        ain_metric_inc(r->st->m.invalid);
        return;
    }
    json_t *op = json_pack("{s:s, s:s, s:s, s:s}", "op", "upsert_message", "id", id, "thread_id",
                           tid, "sent_at_ms", date);
    json_t *labels = json_object_get(msg, "labelIds");
    json_object_set_new(op, "labels", json_is_array(labels) ? json_incref(labels) : json_array());
    if (s_str(msg, "snippet"))
        json_object_set_new(op, "snippet", json_string(s_str(msg, "snippet")));
    json_t *size = json_object_get(msg, "sizeEstimate");
    if (json_is_integer(size))
        json_object_set(op, "size", size);
    ain__mime_t m;
    bool parsed = raw && ain__mime_parse(raw, raw_len, &m) == 0;
    if (raw && !parsed)
        ain_metric_inc(r->st->m.mime_errors);
    if (parsed) {
        s_set(op, "subject", m.subject ? ain_strdup(m.subject) : NULL);
        s_set(op, "from_name", m.from_name ? ain_strdup(m.from_name) : NULL);
        s_set(op, "from_addr", m.from_addr ? ain_strdup(m.from_addr) : NULL);
        s_set(op, "to", m.to ? ain_strdup(m.to) : NULL);
        s_set(op, "cc", m.cc ? ain_strdup(m.cc) : NULL);
        s_set(op, "bcc", m.bcc ? ain_strdup(m.bcc) : NULL);
        s_set(op, "header_message_id", m.message_id ? ain_strdup(m.message_id) : NULL);
        s_set(op, "in_reply_to", m.in_reply_to ? ain_strdup(m.in_reply_to) : NULL);
        s_set(op, "references", m.references ? ain_strdup(m.references) : NULL);
        bool files = false;
        for (size_t i = 0; i < m.natt; i++)
            files = files || (m.att[i].filename && !m.att[i].is_inline);
        json_object_set_new(op, "has_attachments", json_boolean(files));
    } else {
        json_t *headers = json_object_get(json_object_get(msg, "payload"), "headers");
        char *name = NULL, *addr = NULL;
        ain__mime_first(s_header(headers, "From"), &name, &addr);
        s_set(op, "from_name", name);
        s_set(op, "from_addr", addr);
        s_set(op, "subject", ain__mime_decode_text(s_header(headers, "Subject")));
        s_set(op, "to", ain__mime_addresses(s_header(headers, "To")));
        s_set(op, "cc", ain__mime_addresses(s_header(headers, "Cc")));
        s_set(op, "bcc", ain__mime_addresses(s_header(headers, "Bcc")));
        s_set(op, "header_message_id", ain__mime_decode_text(s_header(headers, "Message-ID")));
        s_set(op, "in_reply_to", ain__mime_decode_text(s_header(headers, "In-Reply-To")));
        s_set(op, "references", ain__mime_decode_text(s_header(headers, "References")));
        /* A guess until the body is read (the bodies pass corrects it): mixed means files. */
        const char *ct = s_header(headers, "Content-Type");
        json_object_set_new(op, "has_attachments",
                            json_boolean(ct && strncasecmp(ct, "multipart/mixed", 15) == 0));
    }
    s_op(r, op);
    ain_metric_inc(r->st->m.messages);
    if (parsed) {
        s_op(r, s_body_op(id, &m));
        ain_metric_inc(r->st->m.bodies);
        ain__mime_clear(&m);
    }
}

/* A format=raw answer: the message with its decoded bytes. */
static void s_on_raw(ain__run_t *r, int idx, long status, json_t *answer)
{
    if (status == 413) { /* too large to read whole: its metadata, after this batch */
        const char *url = r->urls[idx], *id = strstr(url, "/messages/");
        if (!r->large)
            r->large = json_array();
        if (id) {
            id += strlen("/messages/");
            json_array_append_new(r->large, json_stringn(id, strcspn(id, "?")));
        }
        return;
    }
    if (status == 404 || !answer)
        return; /* deleted since it was listed: the sweep or history handles it */
    const char *raw = s_str(answer, "raw");
    char *bytes = NULL;
    size_t len = 0;
    if (!raw || ain__mime_b64url(raw, strlen(raw), &bytes, &len) < 0) {
        ain_metric_inc(r->st->m.mime_errors);
        ain__gmail_op_upsert(r, answer, NULL, 0);
        return;
    }
    ain__gmail_op_upsert(r, answer, bytes, len);
    free(bytes);
}

static void s_on_meta(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx;
    if (status == 200 && answer)
        ain__gmail_op_upsert(r, answer, NULL, 0);
}

/* Messages too large to read raw get their metadata, then the step goes on to `next`. */
static void s_large_then(ain__run_t *r, ain__step_fn *next)
{
    size_t i;
    json_t *id;
    json_array_foreach(r->large, i, id) ain__run_add_url(
        r, s_url(r, "messages/%s?format=metadata" S_META_HEADERS, json_string_value(id)));
    json_decref(r->large);
    r->large = NULL;
    if (r->nurls == 0)
        next(r);
    else
        ain__run_batch(r, "messages.get", s_on_meta, next);
}

/* ------------------------------------------------------------ the end of a sync */

static void s_on_watch(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx;
    json_t *e = json_object_get(answer, "expiration");
    int64_t until = json_is_string(e) ? strtoll(json_string_value(e), NULL, 10)
                                      : (json_is_integer(e) ? json_integer_value(e) : 0);
    if (status == 200 && until > 0)
        r->watch_until_ms = until;
}

static void s_watched(ain__run_t *r)
{
    r->lenient = false;
    r->post = NULL;
    if (r->batch_failed || !r->watch_until_ms) {
        /* Gmail would not watch (the topic refuses it, a bad topic): the poll covers the
         * account; try again in an hour rather than at every run (it costs 100 units). */
        ain_warn(r->st->log, "sync: account %" PRIu64 ": users.watch failed; polling only",
                 r->account);
        r->watch_until_ms = ain_clock_wall_ms() + 86400000 + 3600000; /* due in an hour */
    }
    ain__run_save(r, AIN__END_DONE);
}

/* An incremental sync that is up to date ends here: the account's watch renewed if it ends
 * within a day (Gmail's watch lasts 7 days; Google advises renewing daily), then saved.
 * Over quota, the slice is delayed like any other (its changes are applied; the history is
 * read again from the saved cursor); other refusals do not end the job. */
static void s_done(ain__run_t *r)
{
    if (!r->st->topic[0] || !r->watch_due) {
        ain__run_save(r, AIN__END_DONE);
        return;
    }
    json_t *body = json_pack("{s:s}", "topicName", r->st->topic);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    free(r->post_body);
    r->post_body = text;
    r->post = text;
    r->lenient = true;
    ain__run_add_url(r, s_url(r, "watch"));
    ain__run_batch(r, "watch", s_on_watch, s_watched);
}

/* ------------------------------------------------------------ full sync */

static json_int_t s_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static void s_on_profile(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx, (void)status;
    const char *hid = s_str(answer, "historyId");
    json_t *h = json_object_get(answer, "historyId");
    char buf[32];
    if (!hid && json_is_integer(h)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(h));
        hid = buf;
    }
    if (hid && s_token_ok(hid))
        json_object_set_new(r->full, "hid", json_string(hid));
    json_object_set_new(r->full, "total", json_integer(s_int(answer, "messagesTotal")));
}

static void s_on_labels(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx, (void)status;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(answer, "labels"), i, l)
    {
        const char *id = s_str(l, "id"), *name = s_str(l, "name");
        if (s_id_ok(id))
            s_op(r, json_pack("{s:s, s:s, s:s}", "op", "upsert_label", "id", id, "name",
                              name ? name : id));
    }
}

static void s_full_started(ain__run_t *r)
{
    if (!s_str(r->full, "hid")) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the profile had no historyId");
        return;
    }
    json_object_set_new(r->full, "phase", json_string("meta"));
    json_object_set_new(r->full, "list", json_string("inbox"));
    json_object_set_new(r->full, "done", json_integer(0));
    json_object_set_new(r->full, "gen", json_integer(ain_clock_wall_ms()));
    ain__run_progress(r, "metadata");
    ain__run_save(r, AIN__END_CONTINUE);
}

static void s_labels_listed(ain__run_t *r)
{
    ain__run_apply(r, s_full_started);
}

static void s_profiled(ain__run_t *r)
{
    ain__run_add_url(r, s_url(r, "labels"));
    ain__run_batch(r, "labels.list", s_on_labels, s_labels_listed);
}

static void s_on_list(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx, (void)status;
    json_decref(r->page_ids);
    r->page_ids = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(answer, "messages"), i, m)
    {
        const char *id = s_str(m, "id");
        if (s_id_ok(id))
            json_array_append_new(r->page_ids, json_string(id));
    }
    free(r->next_page);
    const char *next = s_str(answer, "nextPageToken");
    r->next_page = next && s_token_ok(next) ? ain_strdup(next) : NULL;
}

/* The listed ids as a PostgreSQL text[] literal (ids are checked: no quotes or commas). */
static char *s_ids_array(json_t *ids)
{
    size_t n = json_array_size(ids), cap = 3 + n * (AIN__SYNC_ID_MAX + 3), len = 0;
    char *out = ain_malloc(cap);
    out[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s\"%s\"", i ? "," : "",
                                json_string_value(json_array_get(ids, i)));
    out[len++] = '}';
    out[len] = '\0';
    return out;
}

/* Next page, next list, or next phase; then save and continue. */
static void s_advance(ain__run_t *r)
{
    /* A copy: the "phase" string is replaced (and freed) below. */
    char phase[16];
    snprintf(phase, sizeof phase, "%s", s_str(r->full, "phase") ? s_str(r->full, "phase") : "");
    json_object_set_new(
        r->full, "done",
        json_integer(s_int(r->full, "done") + (json_int_t)json_array_size(r->page_ids)));
    if (r->next_page) {
        json_object_set_new(r->full, "page", json_string(r->next_page));
    } else {
        json_object_del(r->full, "page");
        if (strcmp(s_str(r->full, "list"), "inbox") == 0) {
            json_object_set_new(r->full, "list", json_string("rest"));
        } else {
            json_object_set_new(r->full, "list", json_string("inbox"));
            json_object_set_new(r->full, "phase",
                                json_string(strcmp(phase, "meta") == 0 ? "bodies" : "sweep"));
            if (strcmp(phase, "meta") == 0)
                json_object_set_new(r->full, "done", json_integer(0));
        }
    }
    ain__run_progress(r, strcmp(phase, "meta") == 0 ? "metadata" : "bodies");
    ain__run_save(r, AIN__END_CONTINUE);
}

static void s_fetched(ain__run_t *r)
{
    if (r->large)
        s_large_then(r, s_fetched);
    else
        ain__run_apply(r, s_advance);
}

static void s_on_have_body(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__run_t *r = ain__run_of(arg);
    if (ain__run_gone(r))
        return;
    if (!o->result) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the database did not answer");
        return;
    }
    size_t i;
    json_t *id;
    json_array_foreach(r->page_ids, i, id)
    {
        bool have = false;
        for (int k = 0; k < PQntuples(o->result) && !have; k++)
            have = strcmp(PQgetvalue(o->result, k, 0), json_string_value(id)) == 0;
        if (!have)
            ain__run_add_url(r, s_url(r, "messages/%s?format=raw", json_string_value(id)));
    }
    if (r->nurls == 0) {
        s_advance(r);
        return;
    }
    ain__run_batch(r, "messages.get", s_on_raw, s_fetched);
}

static void s_on_seen(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__run_t *r = ain__run_of(arg);
    if (ain__run_gone(r))
        return;
    if (!o->result) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the database did not answer");
        return;
    }
    char acc[24];
    snprintf(acc, sizeof acc, "%" PRIu64, r->account);
    if (strcmp(s_str(r->full, "phase"), "bodies") == 0) {
        char *ids = s_ids_array(r->page_ids);
        const char *params[] = {acc, ids};
        int rc = ain__run_query(r, AIN__Q_HAVE_BODY, 2, params, s_on_have_body);
        free(ids);
        if (rc < 0)
            ain__run_finish(r, AIN__END_RETRY, 0, "the database queue is full");
        return;
    }
    size_t i;
    json_t *id;
    json_array_foreach(r->page_ids, i, id) ain__run_add_url(
        r, s_url(r, "messages/%s?format=metadata" S_META_HEADERS, json_string_value(id)));
    ain__run_batch(r, "messages.get", s_on_meta, s_fetched);
}

static void s_listed(ain__run_t *r)
{
    if (!r->page_ids || json_array_size(r->page_ids) == 0) {
        s_advance(r);
        return;
    }
    char acc[24], gen[24];
    snprintf(acc, sizeof acc, "%" PRIu64, r->account);
    snprintf(gen, sizeof gen, "%" JSON_INTEGER_FORMAT, s_int(r->full, "gen"));
    char *ids = s_ids_array(r->page_ids);
    const char *params[] = {acc, gen, ids};
    int rc = ain__run_query(r, AIN__Q_SEEN, 3, params, s_on_seen);
    free(ids);
    if (rc < 0)
        ain__run_finish(r, AIN__END_RETRY, 0, "the database queue is full");
}

static void s_list(ain__run_t *r, int page)
{
    const char *list = s_str(r->full, "list");
    const char *token = s_str(r->full, "page");
    bool inbox = !list || strcmp(list, "inbox") == 0;
    char tok[600] = "";
    if (token && s_token_ok(token))
        snprintf(tok, sizeof tok, "&pageToken=%s", token);
    /* Inbox first, then everything else. Spam and trash are included in both: the store
     * mirrors them, and a message can carry INBOX and TRASH at once (labels, not folders), so
     * without it in the inbox list such a message would be in neither. */
    r->prepay = page;
    ain__run_add_url(r, s_url(r, "messages?includeSpamTrash=true&maxResults=%d%s%s", page,
                              inbox ? "&labelIds=INBOX" : "&q=-in%3Ainbox", tok));
    ain__run_batch(r, "messages.list", s_on_list, s_listed);
}

static void s_finished(ain__run_t *r);

static void s_swept(ain__run_t *r)
{
    if (r->resync) { /* a full page of deletes: more may follow */
        ain__run_save(r, AIN__END_CONTINUE);
        return;
    }
    s_finished(r);
}

static void s_on_unseen(ain_pg_t *pg, const ain_pg_outcome_t *o, void *arg)
{
    (void)pg;
    ain__run_t *r = ain__run_of(arg);
    if (ain__run_gone(r))
        return;
    if (!o->result) {
        ain__run_finish(r, AIN__END_RETRY, 0, "the database did not answer");
        return;
    }
    int n = PQntuples(o->result);
    for (int i = 0; i < n; i++)
        s_op(r, json_pack("{s:s, s:s}", "op", "delete_message", "id", PQgetvalue(o->result, i, 0)));
    ain_metric_add(r->st->m.deleted, n);
    r->resync = n == 500; /* (reused as "more to sweep") */
    ain__run_apply(r, s_swept);
}

static void s_finished(ain__run_t *r)
{
    r->new_cursor = ain_strdup(s_str(r->full, "hid"));
    json_t *total = json_object_get(r->full, "total");
    json_object_set_new(r->full, "done", json_integer(total ? json_integer_value(total) : 0));
    ain__run_progress(r, "done");
    json_decref(r->full);
    r->full = NULL;
    r->state = "idle";
    /* sync_seen goes only once the end is saved: cleared before, a slice that stopped in
     * between would sweep again with nothing seen, and delete the whole mailbox. */
    r->clear_seen = true;
    /* Saved now, and the next slice (history from the recorded id, then the watch) ends the
     * job: a watch refused over quota then delays a slice that lost nothing. */
    ain__run_save(r, AIN__END_CONTINUE);
}

static void s_full(ain__run_t *r)
{
    const char *phase = s_str(r->full, "phase");
    if (!phase || strcmp(phase, "profile") == 0) {
        json_object_set_new(r->full, "phase", json_string("profile"));
        ain__run_add_url(r, s_url(r, "profile"));
        ain__run_batch(r, "getProfile", s_on_profile, s_profiled);
    } else if (strcmp(phase, "meta") == 0) {
        s_list(r, r->st->page);
    } else if (strcmp(phase, "bodies") == 0) {
        s_list(r, r->st->page < S_BODY_PAGE ? r->st->page : S_BODY_PAGE);
    } else if (strcmp(phase, "sweep") == 0) {
        char acc[24], gen[24];
        snprintf(acc, sizeof acc, "%" PRIu64, r->account);
        snprintf(gen, sizeof gen, "%" JSON_INTEGER_FORMAT, s_int(r->full, "gen"));
        const char *params[] = {acc, gen};
        if (ain__run_query(r, AIN__Q_UNSEEN, 2, params, s_on_unseen) < 0)
            ain__run_finish(r, AIN__END_RETRY, 0, "the database queue is full");
    } else {
        json_decref(r->full); /* not ours: start again */
        r->full = json_pack("{s:s}", "phase", "profile");
        s_full(r);
    }
}

/* ------------------------------------------------------------ history */

static void s_on_history(ain__run_t *r, int idx, long status, json_t *answer)
{
    (void)idx;
    if (status == 404) {
        r->resync = true;
        return;
    }
    json_decref(r->hist);
    r->hist = json_incref(answer);
}

static void s_history_applied(ain__run_t *r)
{
    json_t *recs = json_object_get(r->hist, "history");
    const char *next = s_str(r->hist, "nextPageToken");
    const char *cursor = NULL;
    if (next && json_array_size(recs) > 0)
        cursor = s_str(json_array_get(recs, json_array_size(recs) - 1), "id");
    else if (!next)
        cursor = s_str(r->hist, "historyId");
    if (cursor && s_token_ok(cursor))
        r->new_cursor = ain_strdup(cursor);
    r->state = "idle";
    if (next)
        ain__run_save(r, AIN__END_CONTINUE);
    else
        s_done(r);
}

static void s_label_ops(ain__run_t *r, json_t *entries, const char *side)
{
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *id = s_str(json_object_get(e, "message"), "id");
        json_t *labels = json_object_get(e, "labelIds");
        if (s_id_ok(id) && json_is_array(labels))
            s_op(r, json_pack("{s:s, s:s, s:O}", "op", "set_labels", "id", id, side, labels));
    }
}

/* After the added messages were fetched (their upserts are first in the batch): label changes
 * and deletes in the records' order, on top of the fetched state. */
static void s_history_fetched(ain__run_t *r)
{
    if (r->large) {
        s_large_then(r, s_history_fetched);
        return;
    }
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(r->hist, "history"), i, rec)
    {
        s_label_ops(r, json_object_get(rec, "labelsAdded"), "add");
        s_label_ops(r, json_object_get(rec, "labelsRemoved"), "remove");
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(rec, "messagesDeleted"), k, e)
        {
            const char *id = s_str(json_object_get(e, "message"), "id");
            if (s_id_ok(id)) {
                s_op(r, json_pack("{s:s, s:s}", "op", "delete_message", "id", id));
                ain_metric_inc(r->st->m.deleted);
            }
        }
    }
    ain__run_apply(r, s_history_applied);
}

static void s_history_listed(ain__run_t *r)
{
    if (r->resync) {
        /* The start id is too old: a full resync, bounded like a backfill, whose sweep
         * makes the store equal the mailbox. */
        ain_metric_inc(r->st->m.resyncs);
        r->full = json_pack("{s:s}", "phase", "profile");
        ain__run_progress(r, "resync");
        r->state = "syncing";
        ain__run_save(r, AIN__END_CONTINUE);
        return;
    }
    json_t *seen = json_object();
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(r->hist, "history"), i, rec)
    {
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(rec, "messagesAdded"), k, e)
        {
            const char *id = s_str(json_object_get(e, "message"), "id");
            if (s_id_ok(id) && !json_object_get(seen, id) && r->nurls < AIN__SYNC_BATCH_MAX) {
                json_object_set_new(seen, id, json_true());
                ain__run_add_url(r, s_url(r, "messages/%s?format=raw", id));
            }
        }
    }
    json_decref(seen);
    if (r->nurls == 0) {
        s_history_fetched(r);
        return;
    }
    ain__run_batch(r, "messages.get", s_on_raw, s_history_fetched);
}

static void s_history(ain__run_t *r)
{
    if (!s_token_ok(r->cursor)) {
        r->full = json_pack("{s:s}", "phase", "profile");
        s_full(r);
        return;
    }
    /* Records per step: each added message is a raw fetch, so as few as a body page. */
    int n = r->st->page < 2 * S_BODY_PAGE ? r->st->page : 2 * S_BODY_PAGE;
    ain__run_add_url(r, s_url(r, "history?startHistoryId=%s&maxResults=%d", r->cursor, n));
    ain__run_batch(r, "history.list", s_on_history, s_history_listed);
}

void ain__gmail_step(ain__run_t *r)
{
    if (r->full)
        s_full(r);
    else if (!r->cursor) {
        r->full = json_pack("{s:s}", "phase", "profile");
        s_full(r);
    } else
        s_history(r);
}
