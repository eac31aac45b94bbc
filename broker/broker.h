/* broker.h: the Majordomo broker and the event bus.
 *
 * Speaks MDP/0.1 (ZeroMQ RFC 7) to any client and worker, answers MMI
 * (RFC 8) and runs the XSUB/XPUB event bus; on top of plain MDP it tracks
 * which worker holds which request, re-dispatches the request of a dead
 * worker once if it is idempotent, refuses explicitly (BUSY) when a bounded
 * queue is full, answers TIMEOUT for requests whose deadline passed, lets
 * native workers hold several requests (credit), and answers its own admin
 * service "broker". See broker/README.md for the design.
 *
 * One broker runs in one thread and owns all its sockets.
 */
#ifndef AIN_BROKER_BROKER_H
#define AIN_BROKER_BROKER_H

#include <czmq.h>

#include "runtime/proc.h"

typedef struct _ain_broker_t ain_broker_t;

enum { AIN_BROKER_ROUTER, AIN_BROKER_BUS_IN, AIN_BROKER_BUS_OUT };

/* Creates a broker (no endpoints bound yet). Caller owns it. */
ain_broker_t *ain_broker_new(const ain_proc_t *proc);

/* Binds one endpoint of the MDP router, or of the bus's publisher-facing
 * (BUS_IN) or subscriber-facing (BUS_OUT) side. Returns 0, or -1 with the
 * reason logged (e.g. address in use). */
int ain_broker_bind(ain_broker_t *self, int which, const char *endpoint);

/* Binds the endpoints of the configuration (AINBOX_BROKER_BIND and the
 * bus binds). Returns 0 or -1. */
int ain_broker_bind_config(ain_broker_t *self);

/* Routes until "$TERM" arrives on `pipe` or, without a pipe, until SIGTERM
 * or SIGINT. Then it answers what is queued with UNAVAILABLE, waits up to
 * AINBOX_SHUTDOWN_TIMEOUT_MS for in-flight replies, and tells workers
 * DISCONNECT. Signals 0 on `pipe` once it is routing. Returns 0, or -1 if
 * the loop failed. */
int ain_broker_run(ain_broker_t *self, zsock_t *pipe);

void ain_broker_destroy(ain_broker_t **self_p);

#endif
