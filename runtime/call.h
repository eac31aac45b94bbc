/* call.h: an actor's asynchronous requests to other services.
 *
 * An actor that must ask another service in the middle of its own work
 * (the mail writer publishing events, the jobs actor dispatching a job,
 * the sync actor asking for a token or a provider slot) cannot block its
 * loop in ain_client_call. ain_calls_t is one MDP client owned by the
 * actor, driven by the actor's own poll loop: ain_call sends and returns
 * at once; the callback runs later on the actor's thread, exactly once per
 * call that ain_call accepted, with the reply or with the reason there was
 * none (TIMEOUT at the deadline, UNAVAILABLE when the broker could not be
 * reached). A reply that comes after its call ended is dropped (its
 * correlation id no longer names a pending call) and counted, never handed
 * to a freed argument. ain_call_cancel ends a call without its callback
 * (for an owner that is going away).
 *
 * Bounded: at most `max_pending` calls in flight (ain_calls_new); beyond
 * that ain_call refuses (returns 0, nothing runs later).
 */
#ifndef AIN_RUNTIME_CALL_H
#define AIN_RUNTIME_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.h"
#include "proto/status.h"
#include "runtime/actor.h"

typedef struct _ain_calls_t ain_calls_t;

/* `reply` is the answer's envelope (status, body; borrowed for the
 * callback's duration), or NULL when none came: then `status` says why
 * (AIN_STATUS_TIMEOUT, AIN_STATUS_UNAVAILABLE). */
typedef void(ain_call_fn)(ain_status_t status, const ain_envelope_t *reply, void *arg);

/* A client to the actor's broker (its process's endpoint and CURVE keys),
 * watched by the actor's loop; `max_pending` bounds the calls in flight
 * (0: 4096). Call from the actor's start hook. Returns NULL on failure. */
ain_calls_t *ain_calls_new(ain_actor_t *actor, size_t max_pending);

/* Ends every pending call without its callback, then frees. */
void ain_calls_destroy(ain_calls_t **self_p);

/* Sends request `type` (body copied) to `service` for `user`, to be
 * answered before `deadline_ms` (wall clock, ms; 0: the configured
 * request timeout from now). Returns a call id (> 0), or 0 when refused
 * (too many pending; the callback will not run). */
uint64_t ain_call(ain_calls_t *self, const char *service, uint16_t type, uint64_t user,
                  const void *body, size_t len, int64_t deadline_ms, ain_call_fn *cb, void *arg);

/* Ends call `id` without running its callback; a later reply is dropped.
 * Unknown or finished ids are ignored. */
void ain_call_cancel(ain_calls_t *self, uint64_t id);

/* Calls in flight. */
size_t ain_calls_pending(const ain_calls_t *self);

#endif
