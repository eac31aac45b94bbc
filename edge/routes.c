/* routes.c: every HTTP route of the edge, declared once, as data.
 *
 * A route names its method, path, handler and the authentication it
 * requires. Later issues add the inbox API here; nothing else in the edge
 * needs to change to add a route.
 */
#include <stdio.h>
#include <string.h>

#include "edge/internal.h"

/* The event stream does not count against the API limit: a refusal there
 * would be a 429, on which a browser's EventSource gives up for good;
 * streams are bounded by the stream caps instead. */
static const ain__route_t s_routes[] = {
    {"GET", "/health", ain__health, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/stats", ain__stats, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/api/v1/emails/stream", ain__sse_stream, AIN__AUTH_USER, AIN__LIMIT_NONE},
    {"GET", "/api/v1/limits", ain__limits_usage, AIN__AUTH_USER, AIN__LIMIT_API},
    {"GET", "/api/v1/session", ain__session_get, AIN__AUTH_USER, AIN__LIMIT_API},
    /* Refresh and logout authenticate by the refresh token themselves (the access token may
     * have expired: that is why they are called). */
    {"POST", "/api/v1/session/refresh", ain__session_refresh, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"POST", "/auth/refresh", ain__session_refresh, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"POST", "/auth/logout", ain__session_logout, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/api/v1/terms", ain__terms_get, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"POST", "/api/v1/terms/accept", ain__terms_accept, AIN__AUTH_USER, AIN__LIMIT_API},
    /* Sign-in with a provider (oauth.c): full-page navigations, the original's paths. */
    {"GET", "/google", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/auth/google", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/google/callback", ain__oauth_callback, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/auth/outlook", ain__oauth_login, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    {"GET", "/auth/outlook/callback", ain__oauth_callback, AIN__AUTH_NONE, AIN__LIMIT_NONE},
    /* Development and test only: answers 404 in production. */
    {"POST", "/api/v1/dev/session", ain__session_dev_open, AIN__AUTH_NONE, AIN__LIMIT_NONE},
};

const ain__route_t *ain__routes_find(const char *method, const char *path, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        if (strcmp(s_routes[i].path, path) != 0)
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
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        if (strcmp(s_routes[i].path, path) != 0)
            continue;
        int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", s_routes[i].method);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
}
