/* http.h: HTTP GETs on libcurl's multi interface, driven by an actor's loop.
 *
 * One multi handle per sync actor: its sockets are actor watches
 * (CURLMOPT_SOCKETFUNCTION) and its timeout an actor timer
 * (CURLMOPT_TIMERFUNCTION), so many accounts' calls share one thread and
 * its connections (keep-alive; HTTP/2 multiplexing where the server offers
 * it over TLS). Nothing here blocks. Each request has a deadline and a cap
 * on its answer's size. A request is known by an id: a completion whose
 * owner cancelled it finds nothing and is dropped.
 */
#ifndef AIN_ACTORS_SYNC_HTTP_H
#define AIN_ACTORS_SYNC_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/actor.h"

typedef struct _ain__http_t ain__http_t;

/* How a request ended. status is the HTTP status, or 0 when no answer came
 * (then error says why: timeout, connection, too large). body (borrowed
 * for the callback only) is NUL-terminated. retry_after_ms is the answer's
 * Retry-After (0 when absent). */
typedef struct {
    long status;
    const char *body;
    size_t len;
    const char *error;
    int64_t retry_after_ms;
    bool timed_out;
    bool too_large; /* the answer passed max_body: cut off */
} ain__http_result_t;

typedef void(ain__http_fn)(const ain__http_result_t *res, void *arg);

/* A client for `actor` (borrowed) with at most `max_conns` connections
 * (each one an actor watch). NULL if libcurl cannot start. */
ain__http_t *ain__http_new(ain_actor_t *actor, int max_conns);

/* Frees everything; requests in flight end without their callbacks. */
void ain__http_destroy(ain__http_t **self_p);

/* GET `url` (or, with `json` non-NULL, POST it as application/json) with
 * `Authorization: Bearer <bearer>` (all copied), to end
 * within `timeout_ms`, reading at most `max_body` bytes. Returns a request
 * id (> 0): `cb` then runs exactly once, later, on the actor's thread,
 * unless ain__http_cancel ends it first. Returns 0 when curl refused it. */
uint64_t ain__http_get(ain__http_t *self, const char *url, const char *bearer, const char *json,
                       int64_t timeout_ms, size_t max_body, ain__http_fn *cb, void *arg);

/* Ends request `id` without its callback. Unknown ids are ignored. */
void ain__http_cancel(ain__http_t *self, uint64_t id);

/* Requests in flight. */
size_t ain__http_pending(const ain__http_t *self);

#endif
