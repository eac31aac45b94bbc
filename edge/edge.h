/* edge.h: the HTTP edge: civetweb in front, MDP requests behind.
 *
 * Each civetweb worker thread owns an MDP client (runtime/client.h); a
 * request is matched against the route table (edge/routes.c), answered by
 * asking actors through the broker, and written back as JSON. Server-sent
 * event streams are handed from civetweb to the stream pump thread
 * (edge/pump.c), which feeds them from the bus. See edge/README.md.
 */
#ifndef AIN_EDGE_EDGE_H
#define AIN_EDGE_EDGE_H

#include <czmq.h>

#include "runtime/proc.h"

typedef struct _ain_edge_t ain_edge_t;

/* Starts listening on AINBOX_HTTP_ADDR:HTTP_PORT. `proc` is borrowed.
 * Returns the edge, or NULL if it cannot listen (logged). */
ain_edge_t *ain_edge_new(const ain_proc_t *proc);

/* Serves until "$TERM" on `pipe` or, without a pipe, SIGTERM/SIGINT.
 * Signals 0 on `pipe` once serving. Returns 0. */
int ain_edge_run(ain_edge_t *self, zsock_t *pipe);

/* Stops: ends the streams, lets requests in flight finish (each has a
 * deadline), stops civetweb. Safe twice. */
void ain_edge_destroy(ain_edge_t **self_p);

/* Selftests of the edge's inner parts (tests/unit/selftest.c): the socket
 * hand-off against the civetweb we link, the per-address connection count, and the stream
 * pump's streams. */
int ain_edge_handoff_test(bool verbose);
int ain_edge_guard_test(bool verbose);
int ain_edge_streams_test(bool verbose);

#endif
