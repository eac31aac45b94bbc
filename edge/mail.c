/* mail.c: the answers of the mail routes, shaped from the cache actor's data (its field names:
 * actors/cache/README.md and loaders.c).
 *
 *   envelope          the provider-neutral /api/v1 routes: the data as the cache keeps it, in
 *                     the original's envelope {data, error: null, meta: null, requestId: null}
 *   gmail_threads     GET /threads:      {nextPageToken, total?, threads: [{threadId, id, subject,
 *                     from, originFrom, latestFrom, to, date, snippet, labelIds, isUnread}]}
 *   gmail_sent        GET /threads/sent: the same without originFrom and latestFrom
 *   gmail_drafts      GET /drafts:       {nextPageToken, drafts: [{draftId, id, subject, from,
 *                     to, date, snippet, labelIds}]}
 *   gmail_thread      GET /threads/:id:  {threadId, messages: [{id, threadId, subject, from, to,
 *                     date, snippet, labelIds, isUnread, text, html, attachments}]}
 *   spam_stats        GET /gmail/spam-stats, /outlook/spam-stats: {total, unread}
 *   email_content     GET /emails/:id/content: {id, subject, from: {name, email}, to, cc, bcc,
 *                     date, hasHtml, srcDoc, textFallback, inlineCidCount, attachments}
 *   outlook_messages  GET /outlook/inbox|sent|drafts|messages: {folder, unreadOnly,
 *                     nextSkipToken, total?, messages: [{id, conversationId, subject, from, to,
 *                     date, snippet, isRead, hasAttachments, importance, latestFrom,
 *                     originFrom}]}
 *   outlook_thread    GET /outlook/thread/:id: {threadId, messages: [... as above, html, text,
 *                     attachments]}
 *
 * Dates: Gmail shapes carry the header form (RFC 5322, UTC), Outlook shapes Graph's ISO 8601.
 * HTML: only the sanitised document the cache keeps (`safe_html`) ever reaches a browser; with
 * allowRemoteImages=true, /emails/:id/content lets it load its https images (mail/html.h).
 * Attachments carry their metadata and provider id; their bytes (the original inlined them as
 * base64) are not in the store: fetching them arrives with the sync issues.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge/internal.h"
#include "mail/html.h"

/* ------------------------------------------------------------ requests */

int ain__mail_gmail_q(const char *q, json_t *fields, const char **why)
{
    /* The original's mapping (routes/gmail.js): the folder is the only operator the frontend
     * puts in q; search text after it needs a search index the store does not have yet. */
    static const struct {
        const char *q, *field, *value;
    } folders[] = {{"", "role", "inbox"},         {"is:starred", "role", "starred"},
                   {"in:trash", "role", "trash"}, {"in:spam", "role", "spam"},
                   {"in:inbox", "role", "inbox"}, {"in:archive", "archive", "true"}};
    while (*q == ' ')
        q++;
    size_t n = strlen(q);
    while (n && q[n - 1] == ' ')
        n--;
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++)
        if (strlen(folders[i].q) == n && strncmp(folders[i].q, q, n) == 0) {
            json_object_set_new(fields, folders[i].field,
                                strcmp(folders[i].value, "true") == 0
                                    ? json_true()
                                    : json_string(folders[i].value));
            return 0;
        }
    *why = "search (q other than in:inbox, in:archive, in:trash, in:spam or is:starred) is not "
           "supported yet";
    return -1;
}

int ain__mail_outlook_folder(const char *folder, json_t *fields, const char **why)
{
    static const char *const names[][2] = {{"inbox", "inbox"},        {"archive", "archive"},
                                           {"deleteditems", "trash"}, {"junkemail", "spam"},
                                           {"sentitems", "sent"},     {"drafts", "drafts"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(folder, names[i][0]) == 0) {
            json_object_set_new(fields, "role", json_string(names[i][1]));
            return 0;
        }
    *why = "must be inbox, archive, deleteditems, junkemail, sentitems or drafts";
    return -1;
}

/* ------------------------------------------------------------ helpers */

static const char *s_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static json_int_t s_int(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static bool s_true(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* A copy of o[key] (an array), or [] when absent. */
static json_t *s_array(json_t *o, const char *key)
{
    json_t *a = json_object_get(o, key);
    return json_is_array(a) ? json_deep_copy(a) : json_array();
}

/* A string, or null for an empty one. */
static json_t *s_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

/* `ms` as an RFC 5322 date (UTC): what a Date header looks like, the original's `date`. */
static json_t *s_header_date(json_int_t ms)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char buf[48];
    if (!gmtime_r(&secs, &tm))
        return json_null();
    snprintf(buf, sizeof buf, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return json_string(buf);
}

static json_t *s_iso_date(json_int_t ms)
{
    char buf[40];
    ain__http_iso_time(ms, buf, sizeof buf);
    return json_string(buf);
}

/* "Name <addr>", or the address alone. */
static json_t *s_sender(json_t *msg)
{
    const char *name = s_str(msg, "from_name"), *addr = s_str(msg, "from_addr");
    if (!name[0])
        return json_string(addr);
    char buf[640];
    snprintf(buf, sizeof buf, "%s <%s>", name, addr);
    return json_string(buf);
}

/* An address header ("A <a@x>, \"B, C\" <b@y>") as a list of its addresses, split at commas
 * outside quotes and angle brackets. */
static json_t *s_addresses(const char *header)
{
    json_t *list = json_array();
    const char *start = header;
    bool quoted = false;
    int angle = 0;
    for (const char *p = header;; p++) {
        if (*p == '"' && (p == header || p[-1] != '\\'))
            quoted = !quoted;
        else if (!quoted && *p == '<')
            angle++;
        else if (!quoted && *p == '>' && angle > 0)
            angle--;
        if (*p == '\0' || (*p == ',' && !quoted && angle == 0)) {
            const char *a = start, *b = p;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (b > a)
                json_array_append_new(list, json_stringn(a, (size_t)(b - a)));
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return list;
}

static json_t *s_attachments(json_t *msg)
{
    json_t *out = json_array(), *a;
    size_t i;
    json_array_foreach(json_object_get(msg, "attachments"), i, a)
    {
        json_array_append_new(
            out, json_pack("{s:s,s:s,s:s,s:I,s:o,s:b}", "attachmentId", s_str(a, "id"), "filename",
                           s_str(a, "filename"), "mimeType", s_str(a, "mime_type"), "size",
                           s_int(a, "size"), "contentId", s_or_null(s_str(a, "content_id")),
                           "inline", s_true(a, "inline")));
    }
    return out;
}

/* The sanitised document, or null: raw mail HTML never leaves the store. */
static json_t *s_safe_html(json_t *msg)
{
    return s_or_null(s_str(msg, "safe_html"));
}

static json_t *s_page_token(json_t *data)
{
    return s_or_null(s_str(data, "next_cursor"));
}

/* `total` when the store counted the list (a label or role's first page), else absent. */
static void s_total(json_t *out, json_t *data)
{
    json_t *total = json_object_get(data, "total");
    if (json_is_integer(total))
        json_object_set(out, "total", total);
}

/* ------------------------------------------------------------ shapes */

/* Drops a message's raw `html`, should the data carry it. */
static void s_drop_raw_html(json_t *msg)
{
    if (json_is_object(msg))
        json_object_del(msg, "html");
}

json_t *ain__shape_envelope(ain__http_t *http, json_t *data)
{
    (void)http;
    json_t *m;
    size_t i;
    /* Lists and counts as they are; a thread or message without its raw html. */
    bool bodies = json_object_get(data, "message") || json_object_get(data, "messages");
    json_t *out = bodies ? json_deep_copy(data) : json_incref(data);
    if (bodies) {
        s_drop_raw_html(json_object_get(out, "message"));
        json_array_foreach(json_object_get(out, "messages"), i, m) s_drop_raw_html(m);
    }
    return json_pack("{s:o,s:n,s:n,s:n}", "data", out, "error", "meta", "requestId");
}

/* The list's threads, each as one(t), with the original's originFrom (the thread's first sender)
 * and latestFrom when `origins`; NULL for data without a list. */
static json_t *s_items(json_t *data, json_t *(*one)(json_t *t), bool origins)
{
    json_t *threads = json_object_get(data, "threads"), *t;
    if (!json_is_array(threads))
        return NULL;
    json_t *list = json_array();
    size_t i;
    json_array_foreach(threads, i, t)
    {
        json_t *item = one(t);
        if (origins) {
            json_object_set_new(item, "originFrom", json_string(s_str(t, "from")));
            json_object_set_new(item, "latestFrom", json_string(s_str(t, "latest_from")));
        }
        json_array_append_new(list, item);
    }
    return list;
}

static json_t *s_gmail_item(json_t *t)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:b}", "threadId", s_str(t, "id"), "id",
                     s_str(t, "message"), "subject", s_str(t, "subject"), "from", s_str(t, "from"),
                     "to", s_str(t, "to"), "date", s_header_date(s_int(t, "date")), "snippet",
                     s_str(t, "snippet"), "labelIds", s_array(t, "labels"), "isUnread",
                     s_int(t, "unread") > 0);
}

static json_t *s_gmail_list(json_t *data, bool origins)
{
    json_t *list = s_items(data, s_gmail_item, origins);
    if (!list)
        return NULL;
    json_t *out = json_pack("{s:o,s:o}", "nextPageToken", s_page_token(data), "threads", list);
    s_total(out, data);
    return out;
}

json_t *ain__shape_gmail_threads(ain__http_t *http, json_t *data)
{
    (void)http;
    return s_gmail_list(data, true);
}

json_t *ain__shape_gmail_sent(ain__http_t *http, json_t *data)
{
    (void)http;
    return s_gmail_list(data, false);
}

json_t *ain__shape_gmail_drafts(ain__http_t *http, json_t *data)
{
    json_t *page = s_gmail_list(data, false);
    (void)http;
    if (!page)
        return NULL;
    /* Until the sync actors store Gmail's draft resource ids, a draft is named by its message. */
    json_t *drafts = json_object_get(page, "threads"), *d;
    size_t i;
    json_array_foreach(drafts, i, d)
    {
        json_object_set(d, "draftId", json_object_get(d, "id"));
        json_object_del(d, "threadId");
        json_object_del(d, "isUnread");
    }
    json_object_set(page, "drafts", drafts);
    json_object_del(page, "threads");
    return page;
}

/* {threadId, messages: [one(m)...]} of a thread's data. */
static json_t *s_thread(json_t *data, json_t *(*one)(json_t *m))
{
    json_t *thread = json_object_get(data, "thread");
    json_t *messages = json_object_get(data, "messages"), *m;
    if (!json_is_object(thread) || !json_is_array(messages))
        return NULL;
    json_t *list = json_array();
    size_t i;
    json_array_foreach(messages, i, m) json_array_append_new(list, one(m));
    return json_pack("{s:s,s:o}", "threadId", s_str(thread, "id"), "messages", list);
}

static json_t *s_gmail_message(json_t *m)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:s,s:o,s:b,s:o,s:o,s:o}", "id", s_str(m, "id"),
                     "threadId", s_str(m, "thread"), "subject", s_str(m, "subject"), "from",
                     s_sender(m), "to", s_str(m, "to"), "date", s_header_date(s_int(m, "date")),
                     "snippet", s_str(m, "snippet"), "labelIds", s_array(m, "labels"), "isUnread",
                     s_true(m, "unread"), "text", s_or_null(s_str(m, "text")), "html",
                     s_safe_html(m), "attachments", s_attachments(m));
}

json_t *ain__shape_gmail_thread(ain__http_t *http, json_t *data)
{
    (void)http;
    return s_thread(data, s_gmail_message);
}

json_t *ain__shape_spam_stats(ain__http_t *http, json_t *data)
{
    json_t *labels = json_object_get(data, "labels"), *l;
    (void)http;
    if (!json_is_array(labels))
        return NULL;
    json_int_t total = 0, unread = 0;
    size_t i;
    json_array_foreach(labels, i, l)
    {
        if (strcmp(s_str(l, "role"), "spam") == 0) {
            total += s_int(l, "total");
            unread += s_int(l, "unread");
        }
    }
    return json_pack("{s:I,s:I}", "total", total, "unread", unread);
}

json_t *ain__shape_email_content(ain__http_t *http, json_t *data)
{
    json_t *m = json_object_get(data, "message");
    if (!json_is_object(m))
        return NULL;
    json_t *doc = s_safe_html(m);
    json_int_t cids = s_int(m, "cid_images");
    /* The original ignored allowRemoteImages; here it lets the document load https images. */
    char allow[8];
    if (json_is_string(doc) &&
        ain__http_query(http, "allowRemoteImages", allow, sizeof allow) > 0 &&
        strcmp(allow, "true") == 0) {
        size_t len;
        char *opened = ain_html_allow_remote(json_string_value(doc), json_string_length(doc), &len);
        if (opened) {
            json_decref(doc);
            doc = json_stringn(opened, len);
            free(opened);
        }
    }
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:I,s:I,s:o}", "id",
                     s_str(m, "id"), "subject", s_str(m, "subject"), "from", "name",
                     s_str(m, "from_name"), "email", s_str(m, "from_addr"), "to",
                     s_addresses(s_str(m, "to")), "cc", s_addresses(s_str(m, "cc")), "bcc",
                     s_addresses(s_str(m, "bcc")), "date", s_header_date(s_int(m, "date")),
                     "hasHtml", !json_is_null(doc), "srcDoc", doc, "textFallback",
                     s_or_null(s_str(m, "text")), "inlineCidCount", cids, "blockedImages",
                     s_int(m, "blocked_images"), "attachments", s_attachments(m));
}

/* One Outlook message summary; `t` is a list thread or a thread's message. */
static json_t *s_outlook_item(json_t *t, bool from_thread)
{
    json_t *from = from_thread ? json_string(s_str(t, "from")) : s_sender(t);
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:s,s:b,s:b,s:s}", "id",
                     s_str(t, from_thread ? "message" : "id"), "conversationId",
                     s_str(t, from_thread ? "id" : "thread"), "subject", s_str(t, "subject"),
                     "from", from, "to", s_addresses(s_str(t, "to")), "date",
                     s_iso_date(s_int(t, "date")), "snippet", s_str(t, "snippet"), "isRead",
                     from_thread ? s_int(t, "unread") == 0 : !s_true(t, "unread"), "hasAttachments",
                     s_true(t, "has_attachments"), "importance", "normal");
}

static json_t *s_outlook_list_item(json_t *t)
{
    return s_outlook_item(t, true);
}

json_t *ain__shape_outlook_messages(ain__http_t *http, json_t *data)
{
    json_t *list = s_items(data, s_outlook_list_item, true);
    if (!list)
        return NULL;
    /* The folder's Graph name: the path's last segment, or ?folder= (checked by the request). */
    char folder[32] = "inbox";
    const char *slash = strrchr(http->path, '/');
    if (ain__http_query(http, "folder", folder, sizeof folder) < 0 && slash &&
        strcmp(slash, "/messages") != 0)
        snprintf(folder, sizeof folder, "%s", slash + 1);
    /* The original ignored $filter, and so does this: nothing is filtered, unreadOnly is false. */
    json_t *out = json_pack("{s:s,s:b,s:o,s:o}", "folder", folder, "unreadOnly", 0, "nextSkipToken",
                            s_page_token(data), "messages", list);
    s_total(out, data);
    return out;
}

static json_t *s_outlook_message(json_t *m)
{
    json_t *item = s_outlook_item(m, false);
    json_object_set_new(item, "html", s_safe_html(m));
    json_object_set_new(item, "text", s_or_null(s_str(m, "text")));
    json_object_set_new(item, "attachments", s_attachments(m));
    return item;
}

json_t *ain__shape_outlook_thread(ain__http_t *http, json_t *data)
{
    (void)http;
    return s_thread(data, s_outlook_message);
}

int ain__notifications_count(ain__http_t *http)
{
    /* The original's notifications are calendar invitations and reminders; Ainbox has no
     * calendar yet, so there is nothing to count. The frontend polls this every 30 s. */
    return ain__http_json(http, 200, json_pack("{s:b,s:i}", "success", 1, "count", 0));
}
