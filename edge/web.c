/* web.c: the built-in demo page: GET /, /app.js, /app.css, in development and tests only.
 *
 * A small page a newcomer opens after ./deploy/run-bundle.sh: sign in with Google (the fake, in
 * the demo), the inbox, a thread, and new mail arriving live over EventSource. It is a client of
 * the public routes and nothing more (the session, the /api/v1 mail routes, the stream), so it
 * proves them rather than bypassing them. The files are those of edge/web/, embedded in the binary
 * at build time (cmake/Embed.cmake): no document root, no external asset, no CDN. In production the
 * routes answer 404 as unknown paths do: a product's frontend is its own deployment, and a demo
 * page has no place beside real users' sessions.
 *
 * The page runs under a Content-Security-Policy that allows only its own script and style and
 * connections to this origin; message bodies are the cache actor's sanitised documents, shown
 * in a sandboxed iframe (no script, no same-origin), as edge/README.md says a frontend should.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

#define S_HEADERS                                                                                  \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self' "            \
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; "                \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"

int ain__web_asset(ain__http_t *http)
{
    if (http->edge->production) {
        ain_metric_inc(http->edge->m.not_found);
        return ain__http_error(http, 404, "NOT_FOUND", "no such route");
    }
    /* Where sign-in sends the browser (FRONTEND_BASE_URL + /dashboard or /terms, oauth.c):
     * the page itself, when the demo names this edge as its frontend. */
    const char *path = strcmp(http->path, "/dashboard") == 0 || strcmp(http->path, "/terms") == 0
                           ? "/"
                           : http->path;
    for (size_t i = 0; i < ain__web_nfiles; i++) {
        const ain__web_file_t *f = &ain__web_files[i];
        if (strcmp(f->path, path) != 0)
            continue;
        char *headers = ain_sprintf("Content-Type: %s\r\nContent-Length: %zu\r\n" S_HEADERS "%s",
                                    f->type, f->len, http->headers);
        ain__http_head(http->conn, 200, headers);
        free(headers);
        mg_write(http->conn, f->data, f->len);
        ain__http_count(http->edge, 200);
        ain_metric_inc(http->edge->m.web_served);
        return 200;
    }
    ain_metric_inc(http->edge->m.not_found);
    return ain__http_error(http, 404, "NOT_FOUND", "no such route");
}
