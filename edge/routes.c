/* routes.c: every HTTP route of the edge, declared once, as data.
 *
 * A route names its method, path, handler, the authentication it requires and whether it counts
 * against the user API limit. A message route (handler ain__call) also names the message and
 * the actor that owns it, where each request field comes from, and the shape of the answer:
 * call.c is the one path that turns any of them into a message and the answer back into JSON.
 * Nothing else in the edge changes to add a route.
 *
 * A path segment ":name" matches any one non-empty segment (the param ":" reads it); the first
 * route whose path and method match wins, so literal paths come before captures.
 */
#include <stdio.h>
#include <string.h>

#include "edge/internal.h"
#include "proto/msgtype.h"

/* The event stream does not count against the API limit: a refusal there
 * would be a 429, on which a browser's EventSource gives up for good;
 * streams are bounded by the stream caps instead. */
#define USER AIN__AUTH_USER, AIN__LIMIT_API
#define CALL(...)                                                                                  \
    ain__call, USER, &(const ain__call_t)                                                          \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define LIST(shape, field, value, ...)                                                             \
    CALL("cache", AIN_MSG_MAIL_LIST, field, value, {__VA_ARGS__}, shape)

/* Request fields (call.c): from the query parameter NAME, or the path's captured segment. */
// clang-format off
#define STR(name, field)  {name, field, AIN__P_STR, 0, 0}
#define UINT(name, field) {name, field, AIN__P_UINT, 0, 0}
#define BOOL(name, field) {name, field, AIN__P_BOOL, 0, 0}
#define PATH(field)       {":", field, AIN__P_STR, 0, 0}
/* A number with a default when absent, clamped to max. */
#define UINT_CLAMPED(name, field, dflt, max) {name, field, AIN__P_UINT, dflt, max}
#define GMAIL_Q(name)        {name, NULL, AIN__P_GMAIL_Q, 0, 0}
#define OUTLOOK_FOLDER(name) {name, NULL, AIN__P_OUTLOOK_FOLDER, 0, 0}
#define NO_PARAMS            {NULL, NULL, 0, 0, 0}
// clang-format on

/* The Gmail list routes' paging: maxResults (20, at most 50, as the original) and pageToken. */
#define GMAIL_PAGE UINT_CLAMPED("maxResults", "limit", 20, 50), STR("pageToken", "cursor")
/* The Outlook twins': top (as Graph: 10 by default; the frontend asks 50) and skiptoken. */
#define OUTLOOK_PAGE UINT_CLAMPED("top", "limit", 10, 50), STR("skiptoken", "cursor")

static const ain__route_t s_routes[] = {
    {"GET", "/health", ain__health, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    /* Every process's metrics: administrators only in production. */
    {"GET", "/stats", ain__stats, AIN__AUTH_OPS, AIN__LIMIT_NONE, NULL},
    {"GET", "/api/v1/emails/stream", ain__sse_stream, AIN__AUTH_USER, AIN__LIMIT_NONE, NULL},
    {"GET", "/api/v1/limits", ain__limits_usage, USER, NULL},
    {"GET", "/api/v1/session", ain__session_get, USER, NULL},
    /* Refresh and logout authenticate by the refresh token themselves (the access token may
     * have expired: that is why they are called). */
    {"POST", "/api/v1/session/refresh", ain__session_refresh, AIN__AUTH_NONE, AIN__LIMIT_NONE,
     NULL},
    {"POST", "/auth/refresh", ain__session_refresh, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"POST", "/auth/logout", ain__session_logout, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/api/v1/terms", ain__terms_get, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"POST", "/api/v1/terms/accept", ain__terms_accept, USER, NULL},
    /* Sign-in with a provider (oauth.c): full-page navigations, the original's paths. */
    {"GET", "/google", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/auth/google", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/google/callback", ain__oauth_callback, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/auth/outlook", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/auth/outlook/callback", ain__oauth_callback, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    /* Development and test only: answers 404 in production. */
    {"POST", "/api/v1/dev/session", ain__session_dev_open, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    /* Gmail's Pub/Sub push (webhook.c): authenticated by the subscription's own secret, not by
     * a user, and not against a user's API limit (it is nobody's request). */
    {"POST", "/webhooks/gmail/notifications", ain__webhook_gmail, AIN__AUTH_NONE, AIN__LIMIT_NONE,
     NULL},
    /* The built-in demo page (web.c): development and test only, 404 in production. */
    {"GET", "/", ain__web_asset, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/app.js", ain__web_asset, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/app.css", ain__web_asset, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/dashboard", ain__web_asset, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},
    {"GET", "/terms", ain__web_asset, AIN__AUTH_NONE, AIN__LIMIT_NONE, NULL},

    /* The mail store, provider-neutral: the cache actor's data in the /api/v1 envelope. */
    {"GET", "/api/v1/labels",
     CALL("cache", AIN_MSG_MAIL_COUNTS, NULL, NULL, {UINT("account", "account")},
          ain__shape_envelope)},
    {"GET", "/api/v1/threads",
     LIST(ain__shape_envelope, NULL, NULL, STR("label", "label"), STR("role", "role"),
          BOOL("archive", "archive"), UINT("account", "account"), STR("cursor", "cursor"),
          UINT("limit", "limit"))},
    {"GET", "/api/v1/threads/:id",
     CALL("cache", AIN_MSG_MAIL_THREAD, "bodies", "true",
          {PATH("thread"), UINT("account", "account")}, ain__shape_envelope)},
    {"GET", "/api/v1/messages/:id",
     CALL("cache", AIN_MSG_MAIL_MESSAGE, NULL, NULL, {PATH("message"), UINT("account", "account")},
          ain__shape_envelope)},

    /* The original frontend's Gmail routes, with its shapes (ainbox-contract.md 1.3). */
    {"GET", "/threads", LIST(ain__shape_gmail_threads, NULL, NULL, GMAIL_Q("q"), GMAIL_PAGE)},
    {"GET", "/threads/sent", LIST(ain__shape_gmail_sent, "role", "sent", GMAIL_PAGE)},
    {"GET", "/threads/:id",
     CALL("cache", AIN_MSG_MAIL_THREAD, "bodies", "true", {PATH("thread")},
          ain__shape_gmail_thread)},
    {"GET", "/drafts", LIST(ain__shape_gmail_drafts, "role", "drafts", GMAIL_PAGE)},
    {"GET", "/gmail/spam-stats",
     CALL("cache", AIN_MSG_MAIL_COUNTS, NULL, NULL, {NO_PARAMS}, ain__shape_spam_stats)},
    {"GET", "/emails/:id/content",
     CALL("cache", AIN_MSG_MAIL_MESSAGE, NULL, NULL, {PATH("message")}, ain__shape_email_content)},
    {"GET", "/api/notifications/count", ain__notifications_count, USER, NULL},

    /* Their Outlook twins. */
    {"GET", "/outlook/inbox", LIST(ain__shape_outlook_messages, "role", "inbox", OUTLOOK_PAGE)},
    {"GET", "/outlook/sent", LIST(ain__shape_outlook_messages, "role", "sent", OUTLOOK_PAGE)},
    {"GET", "/outlook/drafts", LIST(ain__shape_outlook_messages, "role", "drafts", OUTLOOK_PAGE)},
    {"GET", "/outlook/messages",
     LIST(ain__shape_outlook_messages, NULL, NULL, OUTLOOK_FOLDER("folder"), OUTLOOK_PAGE)},
    {"GET", "/outlook/thread/:id",
     CALL("cache", AIN_MSG_MAIL_THREAD, "bodies", "true", {PATH("thread")},
          ain__shape_outlook_thread)},
    {"GET", "/outlook/spam-stats",
     CALL("cache", AIN_MSG_MAIL_COUNTS, NULL, NULL, {NO_PARAMS}, ain__shape_spam_stats)},
};

#define S_NROUTES (sizeof s_routes / sizeof s_routes[0])

/* Whether `path` matches `pattern`; the segment a ":name" matched goes into capture. */
static bool s_match(const char *pattern, const char *path, char *capture, size_t size)
{
    while (*pattern && *path) {
        if (*pattern == ':') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || (capture && n >= size)) /* too long for any id: no such object */
                return false;
            if (capture) {
                memcpy(capture, path, n);
                capture[n] = '\0';
            }
            path += n;
            while (*pattern && *pattern != '/')
                pattern++;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return *pattern == '\0' && *path == '\0';
}

const ain__route_t *ain__routes_find(const char *method, const char *path, bool *path_known,
                                     char *capture, size_t capture_size)
{
    *path_known = false;
    for (size_t i = 0; i < S_NROUTES; i++) {
        if (!s_match(s_routes[i].path, path, capture, capture_size))
            continue;
        *path_known = true;
        if (strcmp(s_routes[i].method, method) == 0)
            return &s_routes[i];
    }
    return NULL;
}

void ain__routes_allow(const char *path, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < S_NROUTES; i++) {
        if (!s_match(s_routes[i].path, path, NULL, 0))
            continue;
        int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", s_routes[i].method);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
}
