/* client.h: the client side of the Majordomo Protocol with our envelope.
 *
 * A DEALER socket to the broker, so many requests may be in flight; replies
 * are matched by the envelope's correlation id. ain_client_call is the
 * synchronous form (send, wait for the matching reply until the deadline,
 * drop stale replies of earlier calls). One client belongs to one thread.
 *
 * Sockets use ZMQ_IMMEDIATE: while the broker is unreachable a send fails
 * at once instead of queueing a request that would arrive stale; the call
 * retries until its deadline, so a restarted broker is picked up again by
 * the next request without any action from the caller.
 */
#ifndef AIN_RUNTIME_CLIENT_H
#define AIN_RUNTIME_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "proto/envelope.h"
#include "runtime/config.h"

typedef struct _ain_client_t ain_client_t;

/* A received reply. `env.body` points into `frame`; valid until
 * ain_reply_close. */
typedef struct {
    zmq_msg_t frame;
    ain_envelope_t env;
} ain_reply_t;

void ain_reply_close(ain_reply_t *reply);

/* Connects to `endpoint`. `cfg` (borrowed, may be NULL) gives socket
 * defaults and the default timeout. Returns the client or NULL. */
ain_client_t *ain_client_new(void *zmq, const char *endpoint, const ain_config_t *cfg);
void ain_client_destroy(ain_client_t **self_p);

/* The socket, for polling many requests at once. Borrowed. */
void *ain_client_socket(const ain_client_t *self);

/* Sends a request to `service`. A zero corr is assigned (and written back
 * into env); a zero deadline becomes now + the default timeout; a zero
 * trace gets a random id. Returns 0, or -1 with errno (EAGAIN: no broker
 * connection right now). Does not block. */
int ain_client_send(ain_client_t *self, const char *service, ain_envelope_t *env);

/* Waits up to `timeout_ms` (0: do not wait) for one reply. Returns 1 with
 * `reply` filled (close it), 0 if none came, -1 on a socket error.
 * Malformed replies are dropped and counted. */
int ain_client_recv(ain_client_t *self, ain_reply_t *reply, int timeout_ms);

/* Sends one request and waits for its reply until `timeout_ms` passes
 * (<= 0: the default timeout). Returns the reply's status with `reply`
 * filled (close it), or, with `reply` empty, AIN_STATUS_TIMEOUT (no answer
 * in time) or AIN_STATUS_UNAVAILABLE (the broker could not be reached).
 * `body` is copied. */
ain_status_t ain_client_call(ain_client_t *self, const char *service, uint16_t type, uint64_t user,
                             const void *body, size_t len, int timeout_ms, ain_reply_t *reply);

/* While *down (borrowed; may be NULL) is true, ain_client_call and
 * ain_client_mmi_service fail at once (UNAVAILABLE, -1) instead of waiting
 * for their deadline: its owner watches the broker and knows it cannot be
 * reached (edge/link.c). */
void ain_client_set_gate(ain_client_t *self, const atomic_bool *down);

/* Asks the broker's MMI whether `service` has workers. Returns 200, 404,
 * 501, or -1 if no answer came in `timeout_ms`. Synchronous: replies to
 * other requests still in flight that arrive meanwhile are dropped (and
 * counted), so do not mix it with ain_client_send on one client. */
int ain_client_mmi_service(ain_client_t *self, const char *service, int timeout_ms);

/* Replies dropped because they were malformed or answered nothing we
 * asked. */
uint64_t ain_client_dropped(const ain_client_t *self);

#endif
