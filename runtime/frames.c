/* frames.c: multipart receive into a fixed array, frame sends, socket
 * defaults. */
#include "runtime/frames.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* libzmq (from Debian, not built with ThreadSanitizer) hands a message
 * buffer to another thread through a lock-free pipe TSan cannot see. Under
 * TSan we declare that hand-over ourselves: a release on the buffer before
 * sending it, an acquire after receiving it. Every message passes through
 * ain_send_frame or ain_frames_recv, so these two places cover all. */
#if defined(AIN_TSAN)
#include <sanitizer/tsan_interface.h>
#define S_HANDED_OVER(msg) __tsan_release(zmq_msg_data(msg))
#define S_TAKEN_OVER(msg)  __tsan_acquire(zmq_msg_data(msg))
#else
#define S_HANDED_OVER(msg) ((void)0)
#define S_TAKEN_OVER(msg)  ((void)0)
#endif

int ain_frames_recv(ain_frames_t *f, void *socket, int flags)
{
    f->count = 0;
    f->truncated = false;
    f->bytes = 0;
    int more = 1;
    while (more) {
        zmq_msg_t scratch; /* where parts beyond the array are read and dropped */
        zmq_msg_t *m = f->count < AIN_FRAMES_MAX ? &f->part[f->count] : &scratch;
        zmq_msg_init(m);
        /* Only the first part can be missing; later parts of a multipart
         * message are already here, so a blocking read cannot block. */
        if (zmq_msg_recv(m, socket, f->count == 0 ? flags : 0) < 0) {
            int err = errno;
            zmq_msg_close(m);
            ain_frames_close(f);
            errno = err;
            return -1;
        }
        more = zmq_msg_more(m);
        S_TAKEN_OVER(m);
        if (m == &scratch) {
            f->truncated = true;
            zmq_msg_close(m);
        } else {
            f->bytes += zmq_msg_size(m);
            f->count++;
        }
    }
    return f->count;
}

void ain_frames_close(ain_frames_t *f)
{
    for (int i = 0; i < f->count; i++)
        zmq_msg_close(&f->part[i]);
    f->count = 0;
}

void ain_frames_take(ain_frames_t *f, int i, zmq_msg_t *out)
{
    zmq_msg_init(out);
    zmq_msg_move(out, &f->part[i]);
}

bool ain_frame_is(zmq_msg_t *m, const void *data, size_t len)
{
    return ain_frame_size(m) == len && (len == 0 || memcmp(ain_frame_data(m), data, len) == 0);
}

bool ain_frame_is_str(zmq_msg_t *m, const char *s)
{
    return ain_frame_is(m, s, strlen(s));
}

int ain_send_bytes(void *socket, const void *data, size_t len, int flags)
{
    return zmq_send(socket, data, len, flags) < 0 ? -1 : 0;
}

int ain_send_str(void *socket, const char *s, int flags)
{
    return ain_send_bytes(socket, s, strlen(s), flags);
}

int ain_send_frame(void *socket, zmq_msg_t *m, int flags)
{
    S_HANDED_OVER(m);
    if (zmq_msg_send(m, socket, flags) < 0) {
        int err = errno;
        zmq_msg_close(m);
        zmq_msg_init(m);
        errno = err;
        return -1;
    }
    return 0;
}

int ain_send_copy(void *socket, zmq_msg_t *m, int flags)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, m);
    int rc = ain_send_frame(socket, &copy, flags);
    zmq_msg_close(&copy);
    return rc;
}

bool ain_socket_readable(void *socket)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

int ain_socket_set(void *socket, int option, int value)
{
    return zmq_setsockopt(socket, option, &value, sizeof value);
}

void *ain_socket_new(void *zmq, int type, const ain_config_t *cfg)
{
    void *s = zmq_socket(zmq, type);
    if (!s)
        return NULL;
    long hb = cfg ? ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_MS) : 1000;
    long liveness = cfg ? ain_config_int(cfg, AIN_CFG_AINBOX_HEARTBEAT_LIVENESS) : 3;
    int64_t max = 2 * (cfg ? ain_config_int(cfg, AIN_CFG_AINBOX_MSG_MAX_BYTES) : 4194304);
    ain_socket_set(s, ZMQ_LINGER, 200);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    ain_socket_set(s, ZMQ_HEARTBEAT_IVL, (int)hb);
    ain_socket_set(s, ZMQ_HEARTBEAT_TIMEOUT, (int)(hb * liveness));
    ain_socket_set(s, ZMQ_HEARTBEAT_TTL, (int)(hb * liveness));
    ain_socket_set(s, ZMQ_RECONNECT_IVL, 100);
    ain_socket_set(s, ZMQ_RECONNECT_IVL_MAX, 2000);
    return s;
}
