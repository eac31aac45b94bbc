/* bare.c: the libzmq ceiling, proxy + echo thread + client (see bare.h).
 *
 * Sockets are created and bound or connected by the calling thread, then
 * handed to the thread that uses them (pthread_create is the full memory
 * barrier libzmq asks for when a socket changes threads). The proxy is the
 * plain zmq_proxy and the echo thread blocks in zmq_msg_recv: both as fast
 * as libzmq goes (a control socket would add a poll per message). They
 * stop when the context is shut down (their calls fail with ETERM).
 */
#include "tools/bench/bare.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "runtime/alloc.h"

#define S_MAX_PARTS 8

struct _ain__bare_t {
    void *zmq;
    void *front, *back; /* proxy thread's */
    void *worker;       /* worker thread's */
    void *client;       /* the calling thread's */
    pthread_t proxy_thread, worker_thread;
    bool proxy_running, worker_running;
};

static void *s_socket(ain__bare_t *self, int type)
{
    void *s = zmq_socket(self->zmq, type);
    int zero = 0;
    if (s)
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    return s;
}

/* Binds `s` to a fresh inproc name or a kernel-chosen 127.0.0.1 port and
 * writes the endpoint peers connect to into `ep`. Returns 0 or -1. */
static int s_bind(ain__bare_t *self, void *s, bool tcp, const char *role, char *ep, size_t cap)
{
    char want[96];
    if (tcp)
        snprintf(want, sizeof want, "tcp://127.0.0.1:*");
    else
        snprintf(want, sizeof want, "inproc://bench-bare-%p-%s", (void *)self, role);
    if (!s || zmq_bind(s, want) < 0)
        return -1;
    size_t len = cap;
    return zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
}

static void *s_proxy(void *arg)
{
    ain__bare_t *self = arg;
    zmq_proxy(self->front, self->back, NULL); /* returns on ETERM */
    return NULL;
}

/* Sends back every message, blocking between them, until ETERM. */
static void *s_worker(void *arg)
{
    ain__bare_t *self = arg;
    for (;;) {
        zmq_msg_t part[S_MAX_PARTS];
        int n = 0, more = 1;
        while (more && n < S_MAX_PARTS) {
            zmq_msg_init(&part[n]);
            if (zmq_msg_recv(&part[n], self->worker, 0) < 0) {
                for (int i = 0; i <= n; i++)
                    zmq_msg_close(&part[i]);
                return NULL; /* ETERM: the context is shutting down */
            }
            more = zmq_msg_more(&part[n++]);
        }
        for (int i = 0; i < n; i++)
            if (zmq_msg_send(&part[i], self->worker, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
                zmq_msg_close(&part[i]);
    }
}

/* Creates every socket and wires them up. Returns 0 or -1. */
static int s_wire(ain__bare_t *self, bool tcp)
{
    char front[128], back[128];
    self->front = s_socket(self, ZMQ_ROUTER);
    self->back = s_socket(self, ZMQ_DEALER);
    self->worker = s_socket(self, ZMQ_DEALER);
    self->client = s_socket(self, ZMQ_DEALER);
    if (s_bind(self, self->front, tcp, "front", front, sizeof front) < 0 ||
        s_bind(self, self->back, tcp, "back", back, sizeof back) < 0)
        return -1;
    if (!self->worker || !self->client || zmq_connect(self->worker, back) < 0 ||
        zmq_connect(self->client, front) < 0)
        return -1;
    return 0;
}

ain__bare_t *ain__bare_new(bool tcp)
{
    ain__bare_t *self = AIN_NEW(ain__bare_t);
    self->zmq = zmq_ctx_new();
    if (s_wire(self, tcp) < 0) {
        fprintf(stderr, "bench: bare %s setup failed: %s\n", tcp ? "tcp" : "inproc",
                zmq_strerror(errno));
        ain__bare_destroy(&self);
        return NULL;
    }
    self->proxy_running = pthread_create(&self->proxy_thread, NULL, s_proxy, self) == 0;
    self->worker_running = pthread_create(&self->worker_thread, NULL, s_worker, self) == 0;
    if (!self->proxy_running || !self->worker_running) {
        fprintf(stderr, "bench: cannot start the bare threads\n");
        ain__bare_destroy(&self);
    }
    return self;
}

static void s_close(void **s)
{
    if (*s)
        zmq_close(*s);
    *s = NULL;
}

void ain__bare_destroy(ain__bare_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__bare_t *self = *self_p;
    zmq_ctx_shutdown(self->zmq); /* the threads' blocking calls now fail */
    if (self->proxy_running)
        pthread_join(self->proxy_thread, NULL);
    if (self->worker_running)
        pthread_join(self->worker_thread, NULL);
    void **all[] = {&self->front, &self->back, &self->worker, &self->client};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        s_close(all[i]);
    zmq_ctx_term(self->zmq);
    free(self);
    *self_p = NULL;
}

static int s_send(void *ctx, const void *body, size_t len)
{
    ain__bare_t *self = ctx;
    if (zmq_send(self->client, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    return zmq_send(self->client, body, len, 0) < 0 ? -1 : 0;
}

/* Reads [""][body]; returns the body length or -1. Waits in a blocking
 * receive with a timeout, as our client does (the fastest way libzmq has
 * to wait on one socket). */
static int s_recv(void *ctx, void *body, size_t cap, int timeout_ms)
{
    ain__bare_t *self = ctx;
    zmq_setsockopt(self->client, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    char empty[8];
    int more = 0;
    size_t size = sizeof more;
    if (zmq_recv(self->client, empty, sizeof empty, 0) != 0 ||
        zmq_getsockopt(self->client, ZMQ_RCVMORE, &more, &size) < 0 || !more)
        return -1;
    int len = zmq_recv(self->client, body, cap, 0);
    return len < 0 || (size_t)len > cap ? -1 : len;
}

const ain__drive_ops_t ain__bare_ops = {s_send, s_recv};
