/* frames.h: raw ZeroMQ multipart messages without copies, and our socket
 * defaults.
 *
 * The broker, worker and client use zmq_msg_t directly (not zmsg) on the
 * hot path: a frame received here is sent onward by moving it, never
 * copied. ain_frames_recv reads one whole multipart message into a fixed
 * array; parts beyond AIN_FRAMES_MAX are read and discarded (the message is
 * then marked truncated), so a hostile peer cannot make us allocate.
 */
#ifndef AIN_RUNTIME_FRAMES_H
#define AIN_RUNTIME_FRAMES_H

#include <stdbool.h>
#include <stddef.h>

#include <zmq.h>

#include "runtime/config.h"

#define AIN_FRAMES_MAX 16

typedef struct {
    zmq_msg_t part[AIN_FRAMES_MAX];
    int count;
    bool truncated; /* more parts arrived than fit; they were dropped */
    size_t bytes;   /* total payload bytes of the kept parts */
} ain_frames_t;

/* Receives one complete multipart message. `flags` may be ZMQ_DONTWAIT.
 * Returns the number of parts kept (>= 1), or -1 with errno set (EAGAIN
 * when nothing is waiting); after -1 nothing needs closing. After success
 * the caller closes the parts with ain_frames_close (parts moved out with
 * ain_frames_take need no closing). */
int ain_frames_recv(ain_frames_t *f, void *socket, int flags);

/* Closes every part still owned by `f`. Safe to call twice. */
void ain_frames_close(ain_frames_t *f);

/* Moves part `i` into `out` (initialised by this call); `f` keeps an
 * empty part in its place. */
void ain_frames_take(ain_frames_t *f, int i, zmq_msg_t *out);

/* libzmq's accessors take non-const messages, so these do too. */
static inline size_t ain_frame_size(zmq_msg_t *m)
{
    return zmq_msg_size(m);
}

static inline const void *ain_frame_data(zmq_msg_t *m)
{
    return zmq_msg_data(m);
}

/* True if the frame holds exactly these bytes / this string. */
bool ain_frame_is(zmq_msg_t *m, const void *data, size_t len);
bool ain_frame_is_str(zmq_msg_t *m, const char *s);

/* Sends bytes (copied) or a string as one part. Returns 0 or -1 (errno). */
int ain_send_bytes(void *socket, const void *data, size_t len, int flags);
int ain_send_str(void *socket, const char *s, int flags);

/* Sends `m` by moving it; `m` is empty afterwards whatever happens (closed
 * on failure). Returns 0 or -1 (errno). */
int ain_send_frame(void *socket, zmq_msg_t *m, int flags);

/* Sends a copy of `m` (a reference, for large frames), keeping `m`. */
int ain_send_copy(void *socket, zmq_msg_t *m, int flags);

/* Creates a socket with our defaults: bounded linger; a hard message-size
 * ceiling of twice AINBOX_MSG_MAX_BYTES (the logical limit is enforced
 * with an answer, this only stops abuse); ZMTP heartbeats and reconnect
 * back-off from AINBOX_HEARTBEAT_*. `cfg` may be NULL for built-in
 * defaults. Returns the socket or NULL (errno). */
void *ain_socket_new(void *zmq, int type, const ain_config_t *cfg);

/* True if a message is waiting on `socket`. Costs no system call, so a
 * busy loop can check its sockets this way and block in zmq_poll only when
 * all are drained. */
bool ain_socket_readable(void *socket);

/* Sets an int option; returns 0 or -1. */
int ain_socket_set(void *socket, int option, int value);

#endif
