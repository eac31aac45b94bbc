/* cors.c: cross-origin requests from the configured origins.
 *
 * The frontend runs on its own origin and calls the API with credentials
 * (cookies), and it sends `Content-Type: application/json` even on GET, so
 * every call is preflighted (../shared/docs/ainbox-contract.md section 1).
 * The original reflected any origin; we allow the origins an operator
 * lists in AINBOX_CORS_ORIGINS plus the origin of FRONTEND_BASE_URL, and
 * nothing else: a credentialed API must not answer every site's scripts.
 *
 * For an allowed Origin every answer carries `Access-Control-Allow-Origin`
 * (that origin), `Access-Control-Allow-Credentials: true` and the headers a
 * script may read (RateLimit, Retry-After, ETag). A preflight for a known
 * route and method gets 204 with the route's methods and the request
 * headers we accept (Authorization, Content-Type, If-None-Match,
 * Last-Event-ID: EventSource may send it cross-origin); from any other
 * origin, 403. `Vary: Origin` always, so caches keep answers apart.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

#define S_ORIGINS_MAX 32
#define S_ORIGIN_MAX  256

struct ain__cors {
    int n;
    char origin[S_ORIGINS_MAX][S_ORIGIN_MAX]; /* "https://host[:port]", lowercase */
};

/* The origin of `url` (scheme://host[:port], lowercase) into out; a path is
 * allowed only if `path_ok`. Returns 0 or -1. */
static int s_origin(const char *url, size_t len, bool path_ok, char *out)
{
    size_t scheme = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
    if (!scheme || len <= scheme || len >= S_ORIGIN_MAX)
        return -1;
    size_t end = scheme;
    while (end < len && url[end] != '/')
        end++;
    if (end == scheme || (!path_ok && end < len && !(end == len - 1 && url[end] == '/')))
        return -1;
    for (size_t i = scheme; i < end; i++)
        if (!isalnum((unsigned char)url[i]) && !strchr(".-:[]", url[i]))
            return -1;
    for (size_t i = 0; i < end; i++)
        out[i] = (char)tolower((unsigned char)url[i]);
    out[end] = '\0';
    return 0;
}

ain__cors_t *ain__cors_new(const ain_config_t *cfg, const char **why)
{
    ain__cors_t *self = AIN_NEW(ain__cors_t);
    const char *list = ain_config_str(cfg, AIN_CFG_AINBOX_CORS_ORIGINS);
    for (const char *s = list ? list : ""; *s;) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t len = strcspn(s, ", ");
        if (len == 0)
            break;
        if (self->n == S_ORIGINS_MAX || s_origin(s, len, false, self->origin[self->n]) < 0) {
            *why = "AINBOX_CORS_ORIGINS: at most 32 origins, each http(s)://host[:port]";
            free(self);
            return NULL;
        }
        self->n++;
        s += len;
    }
    const char *front = ain_config_str(cfg, AIN_CFG_FRONTEND_BASE_URL);
    if (front && front[0]) {
        if (self->n == S_ORIGINS_MAX ||
            s_origin(front, strlen(front), true, self->origin[self->n]) < 0) {
            *why = "FRONTEND_BASE_URL: not an http(s) URL";
            free(self);
            return NULL;
        }
        self->n++;
    }
    return self;
}

void ain__cors_destroy(ain__cors_t **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

/* The request's Origin if it is allowed, else NULL. */
static const char *s_allowed(const ain__http_t *http)
{
    const ain__cors_t *self = http->edge->cors;
    const char *origin = mg_get_header(http->conn, "Origin");
    char canon[S_ORIGIN_MAX];
    if (!self || !origin || s_origin(origin, strlen(origin), false, canon) < 0)
        return NULL;
    for (int i = 0; i < self->n; i++)
        if (strcmp(self->origin[i], canon) == 0)
            return origin;
    return NULL;
}

static void s_append(ain__http_t *http, const char *text)
{
    size_t used = strlen(http->headers);
    snprintf(http->headers + used, sizeof http->headers - used, "%s", text);
}

void ain__cors_headers(ain__http_t *http)
{
    if (!http->edge->cors || http->edge->cors->n == 0)
        return;
    const char *origin = s_allowed(http);
    if (origin) {
        char lines[S_ORIGIN_MAX + 200];
        snprintf(
            lines, sizeof lines,
            "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\n"
            "Access-Control-Expose-Headers: RateLimit, RateLimit-Policy, Retry-After, ETag\r\n",
            origin);
        s_append(http, lines);
    }
    s_append(http, "Vary: Origin\r\n");
}

bool ain__cors_preflight(ain__http_t *http, int *status)
{
    const char *method = mg_get_header(http->conn, "Access-Control-Request-Method");
    if (strcmp(http->info->request_method, "OPTIONS") != 0 || !method ||
        !mg_get_header(http->conn, "Origin"))
        return false;
    const char *origin = s_allowed(http);
    if (!origin) {
        *status = ain__http_error(http, 403, "CORS_REFUSED", "this origin may not call the API");
        return true;
    }
    bool known = false;
    char allow[64], lines[768];
    ain__routes_allow(http->path, allow, sizeof allow);
    if (!ain__routes_find(method, http->path, &known, NULL, 0)) {
        *status = known ? ain__http_error_allow(http, allow)
                        : ain__http_error(http, 404, "NOT_FOUND", "no such route");
        return true;
    }
    snprintf(lines, sizeof lines,
             "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\n"
             "Access-Control-Allow-Methods: %s\r\n"
             "Access-Control-Allow-Headers: Authorization, Content-Type, If-None-Match, "
             "Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n"
             "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n"
             "Content-Length: 0\r\n",
             origin, allow);
    ain__http_head(http->conn, 204, lines);
    ain__http_count(http->edge, 204);
    *status = 204;
    return true;
}
