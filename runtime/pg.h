/* pg.h: a small pool of asynchronous PostgreSQL connections, driven by an
 * actor's loop.
 *
 * libpq's non-blocking API (PQconnectStart/PQconnectPoll,
 * PQsendQueryParams, PQconsumeInput) with each connection's socket as an
 * actor watch, so queries run while the actor keeps answering other
 * requests. Each connection runs one query at a time; queries wait in a
 * bounded FIFO for a free connection. The server cancels a query past
 * AINBOX_PG_TIMEOUT_MS (statement_timeout); a connection that stays
 * silent longer is dropped. Lost connections are re-established with
 * back-off, and the queries they held fail (they are never silently
 * repeated: a write may have committed).
 *
 * Every query carries its caller's deadline: queued past it, it fails
 * unsent; running past it, it fails at once and its connection is dropped,
 * so the server ends the statement (client_connection_check_interval)
 * instead of holding a connection for a caller that stopped waiting.
 */
#ifndef AIN_RUNTIME_PG_H
#define AIN_RUNTIME_PG_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "runtime/actor.h"

typedef struct _ain_pg_t ain_pg_t;

/* How a query ended. On success `result` holds the rows (borrowed for the
 * callback only) and `error` is NULL; otherwise `result` is NULL, `error`
 * says why and `sqlstate` is the server's code ("23505"...) or "" when the
 * query never got an answer (connection lost, timed out, shutting down). */
typedef struct {
    PGresult *result;
    const char *error;
    const char *sqlstate;
    bool *taken; /* (for ain_pg_take) */
} ain_pg_outcome_t;

typedef void(ain_pg_fn)(ain_pg_t *pg, const ain_pg_outcome_t *outcome, void *arg);

/* Keeps a successful outcome's result past the callback (call it from the
 * callback); the caller then owns it and PQclears it. */
PGresult *ain_pg_take(const ain_pg_outcome_t *outcome);

/* `connections` connections to `conninfo` (a URI or conninfo string,
 * copied) for `actor` (borrowed). Starts connecting at once. */
ain_pg_t *ain_pg_new(ain_actor_t *actor, const char *conninfo, int connections);

/* Closes everything; queries still queued or running fail (their
 * callbacks run before this returns). Safe twice. */
void ain_pg_destroy(ain_pg_t **self_p);

/* Queues a query with text parameters (NULL = SQL NULL; all copied), for
 * a caller who waits until `deadline_ms` (wall clock, as in an envelope;
 * 0: no deadline beyond AINBOX_PG_TIMEOUT_MS). Past the deadline the query
 * fails (sqlstate "") whether or not it was sent; a write it carried may
 * still have committed, as with any lost connection.
 * `sql` must be a string constant: each connection prepares it once, on
 * first use, and knows it by its address from then on (so it is planned
 * once per connection, not per query).
 * Returns 0 and calls `fn` exactly once later, or returns -1 (the queue
 * holds AINBOX_PG_QUEUE_MAX queries) and never calls it. */
int ain_pg_query(ain_pg_t *self, int64_t deadline_ms, const char *sql, int nparams,
                 const char *const *params, ain_pg_fn *fn, void *arg);

/* For a pool of writes whose outcome must be known (the cache announces
 * every committed write): a query already sent is never dropped at its
 * caller's deadline; it runs until it ends or AINBOX_PG_TIMEOUT_MS. Queued
 * ones still fail unsent at their deadline. */
void ain_pg_finish_running(ain_pg_t *self);

/* Notifications (LISTEN/NOTIFY): every connection of this pool listens
 * on `channel` (an identifier: [a-z0-9_], at most 63; copied) from its
 * next (re)connection on, and `fn(pg, payload, arg)` runs for each
 * notification, payload borrowed for the call. After each (re)connection
 * it runs once with payload NULL: notifications sent while the connection
 * was down are lost, so the listener must look again. Meant for a pool
 * of its own (one connection, no queries) so a long query never delays a
 * wake-up. Returns 0, or -1 for a bad channel name. */
typedef void(ain_pg_notify_fn)(ain_pg_t *pg, const char *payload, void *arg);
int ain_pg_listen(ain_pg_t *self, const char *channel, ain_pg_notify_fn *fn, void *arg);

/* Connections ready for queries right now. */
int ain_pg_ready(const ain_pg_t *self);

typedef struct {
    uint64_t queries, failed, timeouts, reconnects;
    uint64_t abandoned; /* failed at their caller's deadline */
    uint64_t queued;    /* waiting now */
} ain_pg_stats_t;
void ain_pg_stats(const ain_pg_t *self, ain_pg_stats_t *out);

#endif
