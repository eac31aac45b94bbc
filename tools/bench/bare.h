/* bare.h: the ceiling, a bare libzmq request path with the same shape as
 * ours.
 *
 * A zmq_proxy between a ROUTER frontend and a DEALER backend in its own
 * thread (the "broker"), an echo thread (a DEALER that sends back whatever
 * multipart message it receives: the "actor"), and one client DEALER used
 * by the calling thread, which sends [""][body] and reads [""][body]. No
 * envelope, no msgpack, no bookkeeping: what ZeroMQ alone costs for the
 * same hops. Everything has its own ZeroMQ context (one I/O thread, like
 * CZMQ's) and is bound to inproc:// or to ports the kernel picks on
 * 127.0.0.1.
 */
#ifndef AIN_TOOLS_BENCH_BARE_H
#define AIN_TOOLS_BENCH_BARE_H

#include <stdbool.h>

#include "tools/bench/drive.h"

typedef struct _ain__bare_t ain__bare_t;

/* Starts the proxy and echo threads over inproc, or tcp when `tcp`.
 * Returns the running setup (caller owns it), or NULL with the reason on
 * stderr. */
ain__bare_t *ain__bare_new(bool tcp);

/* Stops the threads and frees everything. Safe twice. */
void ain__bare_destroy(ain__bare_t **self_p);

/* The client's send and receive, with the setup as `ctx`. */
extern const ain__drive_ops_t ain__bare_ops;

#endif
