/* worker.h: the worker side of the Majordomo Protocol, for native workers.
 *
 * One ain_worker_t is one registration of a service with the broker: a
 * DEALER socket, READY with our credit extension (proto/mdp.h), heartbeats
 * both ways, and a fresh socket with a new READY when the broker goes
 * silent or says DISCONNECT (a broker restart). The actor skeleton drives
 * it from its poll loop; it never blocks.
 *
 * The socket is replaced on reconnect: fetch it with ain_worker_socket()
 * every time the poll set is built.
 */
#ifndef AIN_RUNTIME_WORKER_H
#define AIN_RUNTIME_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "runtime/log.h"
#include "runtime/proc.h"

typedef struct _ain_worker_t ain_worker_t;

/* One request handed out by the worker: what names it to the broker (the
 * compact header with its token, or an MDP client address) and the
 * envelope bytes. Both are owned by whoever holds the work. */
typedef struct {
    zmq_msg_t address;
    zmq_msg_t body;
    bool compact; /* address is a compact header (proto/mdp.h) */
} ain_work_t;

/* Registers `service` (copied) with `credit` requests at once. `log` is
 * borrowed. Returns the worker; connecting happens in the background. */
ain_worker_t *ain_worker_new(const ain_proc_t *proc, const char *service, unsigned credit,
                             ain_log_t *log);

/* Sends DISCONNECT (if registered) and closes the socket. Safe twice. */
void ain_worker_destroy(ain_worker_t **self_p);

/* The current socket, for zmq_poll. Borrowed; replaced on reconnect. */
void *ain_worker_socket(const ain_worker_t *self);

/* Reads one message without blocking. Returns 1 with `work` filled (the
 * caller owns both parts), 0 if a protocol message was handled (or an
 * invalid one dropped and counted), -1 if nothing is waiting. */
int ain_worker_recv(ain_worker_t *self, ain_work_t *work);

/* Sends the REPLY for `work` (its address is moved out: empty afterwards)
 * with the envelope bytes (copied). Returns 0, or -1 if it could not be
 * sent (broker gone: the reply is dropped). */
int ain_worker_reply(ain_worker_t *self, ain_work_t *work, const void *envelope, size_t len);

/* Sends heartbeats, retries a pending READY and reconnects a silent
 * broker. Call after every poll. Returns the ms until it wants to run
 * again. */
int ain_worker_tick(ain_worker_t *self);

/* Announces a new credit (0 = send me nothing new). Returns 0 or -1. */
int ain_worker_set_credit(ain_worker_t *self, unsigned credit);

/* Times the worker re-registered since it was created. */
uint64_t ain_worker_reconnects(const ain_worker_t *self);

/* Malformed messages received from the broker and dropped. */
uint64_t ain_worker_invalid(const ain_worker_t *self);

/* True once READY has gone out on the current socket. */
bool ain_worker_registered(const ain_worker_t *self);

#endif
