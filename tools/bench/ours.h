/* ours.h: our request path, the real broker and echo actor, in-process.
 *
 * Over inproc it is the single-node bundle (deploy/bundle.h) with only the
 * echo actor: broker and actor threads on the bundle's inproc endpoints.
 * Over tcp the broker role binds a free 127.0.0.1 port (and the two bus
 * ports after it) and the echo actor role runs in its own thread connected
 * to that tcp endpoint, so both the client's hop and the worker's hop cross
 * the loopback, as in the bare tcp ceiling. Both run under the same
 * supervisor the bundle uses. One client (runtime/client.h), used by the
 * calling thread, sends ECHO requests.
 *
 * Settings come from the environment (e.g. AINBOX_WORKER_CREDIT applies)
 * except the endpoints, which are ours, and LOG_LEVEL, which defaults to
 * error here so routine warnings do not clutter the figures.
 */
#ifndef AIN_TOOLS_BENCH_OURS_H
#define AIN_TOOLS_BENCH_OURS_H

#include <stdbool.h>

#include "runtime/client.h"
#include "runtime/config.h"
#include "tools/bench/drive.h"

typedef struct _ain__ours_t ain__ours_t;

/* Starts a broker over inproc, or over tcp when `tcp`, plus an echo actor
 * thread when `actor`, and waits (up to 5 s) until "echo" has a worker.
 * Returns the running setup (caller owns it), or NULL with the reason on
 * stderr. */
ain__ours_t *ain__ours_new(bool tcp, bool actor);

/* Stops the roles in reverse order and frees everything. Safe twice. */
void ain__ours_destroy(ain__ours_t **self_p);

/* The broker endpoint clients connect to, the ZeroMQ context and the
 * configuration. Borrowed from the setup. */
const char *ain__ours_endpoint(const ain__ours_t *self);
void *ain__ours_zmq(const ain__ours_t *self);
const ain_config_t *ain__ours_config(const ain__ours_t *self);

/* A new client of this broker. Caller owns it. */
ain_client_t *ain__ours_client(const ain__ours_t *self);

/* Builds a configuration from the environment with our endpoints on top:
 * broker `endpoint` (NULL: leave the endpoints alone), bound too when
 * `bind`. Returns it (caller owns it), or NULL with the reason on stderr. */
ain_config_t *ain__ours_config_new(const char *endpoint, bool bind);

/* The client's send and receive (ECHO to "echo"), with the setup as
 * `ctx`. */
extern const ain__drive_ops_t ain__ours_ops;

#endif
