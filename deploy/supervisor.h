/* supervisor.h: runs the bundle's roles as threads; restarts failed actors.
 *
 * Each child is a role (the broker, an actor, the edge) running in its own
 * thread with a pipe to the supervisor. A child signals on its pipe once
 * it is ready and stops when it receives "$TERM". When a child's run
 * function returns with an error:
 *   - an AIN_RESTART child (an actor) is started again, up to
 *     `max_restarts` within `window_ms` (restart intensity, as in
 *     Erlang/OTP); one more and the supervisor gives up;
 *   - an AIN_PERMANENT child (broker, edge) is not restarted: the
 *     supervisor gives up at once.
 * Giving up means ain_supervisor_poll returns -1 and the bundle stops
 * rather than flapping. A thread cannot survive a segfault: that ends the
 * process, which is a process supervisor's job.
 */
#ifndef AIN_DEPLOY_SUPERVISOR_H
#define AIN_DEPLOY_SUPERVISOR_H

#include <stdint.h>

#include <czmq.h>

#include "runtime/log.h"

typedef struct _ain_supervisor_t ain_supervisor_t;

/* A role's body. It calls zsock_signal(pipe, 0) once ready, returns when
 * "$TERM" arrives on `pipe` (0) or when it fails (-1); failing before
 * signalling means it could not start. */
typedef int(ain_child_fn)(void *arg, zsock_t *pipe);

enum { AIN_RESTART, AIN_PERMANENT };

/* `log` is borrowed. */
ain_supervisor_t *ain_supervisor_new(int max_restarts, int64_t window_ms, ain_log_t *log);

/* Starts child `name` (copied) running fn(arg) and waits until it is
 * ready. `arg` is borrowed and must outlive the supervisor. Returns 0, or
 * -1 if it failed to start. */
int ain_supervisor_start(ain_supervisor_t *self, const char *name, ain_child_fn *fn, void *arg,
                         int policy);

/* Waits up to `timeout_ms` for children to end and restarts them. Returns
 * 0, or -1 once it gave up (see above). */
int ain_supervisor_poll(ain_supervisor_t *self, int timeout_ms);

/* Stops every child in reverse start order and waits for each; then frees
 * everything. Safe twice. */
void ain_supervisor_destroy(ain_supervisor_t **self_p);

uint64_t ain_supervisor_restarts(const ain_supervisor_t *self);

#endif
