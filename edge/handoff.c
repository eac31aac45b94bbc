/* handoff.c: takes a stream's socket away from civetweb, so no worker
 * thread stays behind it.
 *
 * civetweb 1.15 has no call that gives up a connection: its request info
 * names the client (address and port) but not the socket, and a handler
 * that returns has its connection closed. So, once the SSE handler has
 * written the response head with civetweb, ain__handoff_take finds
 * civetweb's socket for the connection by asking the kernel who each
 * descriptor is connected to, keeps a duplicate of it, and puts an
 * unconnected dummy socket under civetweb's descriptor number. civetweb
 * then closes the dummy (its linger, shutdown and drain calls fail
 * harmlessly on an unconnected socket) and its worker is free; the
 * duplicate is the only handle left on the real connection.
 * docs/platform-notes.md, section 1, has the measurements behind this.
 *
 * Limits: plain HTTP only (civetweb's own TLS keeps its state inside
 * civetweb: terminate TLS in front); bytes a client pipelined after its
 * request and civetweb already buffered are lost (SSE clients send none);
 * it relies on civetweb's close path touching only the descriptor number,
 * which ain_edge_handoff_test checks against the civetweb we link.
 *
 * Also here: the set of descriptors the pump owns, which the probe skips,
 * so finding a socket costs a few syscalls even with 10,000 streams open.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

/* Descriptors tracked at most: the bitmap is 1/8 byte per descriptor. */
#define S_FDSET_MAX (1 << 22)

struct ain__fdset {
    int size;
    atomic_uint_fast64_t *words;
};

ain__fdset_t *ain__fdset_new(void)
{
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (n == RLIM_INFINITY || n > S_FDSET_MAX)
        n = S_FDSET_MAX;
    ain__fdset_t *self = AIN_NEW(ain__fdset_t);
    self->size = (int)n;
    self->words = ain_calloc(((size_t)n + 63) / 64, sizeof *self->words);
    return self;
}

void ain__fdset_destroy(ain__fdset_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->words);
    free(*self_p);
    *self_p = NULL;
}

int ain__fdset_size(const ain__fdset_t *self)
{
    return self->size;
}

void ain__fdset_add(ain__fdset_t *self, int fd)
{
    if (fd >= 0 && fd < self->size)
        atomic_fetch_or(&self->words[fd / 64], (uint_fast64_t)1 << (fd % 64));
}

void ain__fdset_del(ain__fdset_t *self, int fd)
{
    if (fd >= 0 && fd < self->size)
        atomic_fetch_and(&self->words[fd / 64], ~((uint_fast64_t)1 << (fd % 64)));
}

bool ain__fdset_has(const ain__fdset_t *self, int fd)
{
    if (fd < 0 || fd >= self->size)
        return false;
    return (atomic_load(&self->words[fd / 64]) >> (fd % 64)) & 1;
}

/* The address and port of a socket address as civetweb writes them. */
static int s_addr(const struct sockaddr_storage *ss, char *text, size_t size)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)size) ? ntohs(in->sin_port) : -1;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)size) ? ntohs(in6->sin6_port)
                                                                           : -1;
    }
    return -1;
}

/* Is `fd` the TCP connection from `info`'s client to its server port? The
 * four-tuple names one connection; anything else (listeners, pipes, other
 * clients, free numbers) fails one of the two calls or the comparison. */
static bool s_is_connection(int fd, const struct mg_request_info *info, int *family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[INET6_ADDRSTRLEN];
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 ||
        s_addr(&ss, text, sizeof text) != info->remote_port || strcmp(text, info->remote_addr) != 0)
        return false;
    *family = ss.ss_family;
    len = sizeof ss;
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
           s_addr(&ss, text, sizeof text) == info->server_port;
}

int ain__handoff_take(struct mg_connection *conn, ain__fdset_t *owned)
{
    const struct mg_request_info *info = mg_get_request_info(conn);
    if (!info || info->is_ssl)
        return -1;
    /* civetweb's socket got the lowest free number when it was accepted,
     * so scanning up from 3 finds it early; the pump's are skipped. */
    int found = -1, family = AF_INET;
    for (int fd = 3; fd < ain__fdset_size(owned) && found < 0; fd++)
        if (!ain__fdset_has(owned, fd) && s_is_connection(fd, info, &family))
            found = fd;
    if (found < 0)
        return -1;
    int mine = fcntl(found, F_DUPFD_CLOEXEC, 3);
    if (mine < 0)
        return -1;
    int dummy = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* From dup3 on, civetweb's number names the dummy: whatever civetweb
     * does to it next cannot reach the client. */
    if (dummy < 0 || dup3(dummy, found, O_CLOEXEC) < 0) {
        if (dummy >= 0)
            close(dummy);
        close(mine);
        return -1;
    }
    close(dummy);
    int flags = fcntl(mine, F_GETFL);
    if (flags < 0 || fcntl(mine, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(mine); /* the client sees the connection end and reconnects */
        return -1;
    }
    ain__fdset_add(owned, mine);
    return mine;
}

/* ------------------------------------------------------------- selftest */

typedef struct {
    ain__fdset_t *owned;
    atomic_int taken;
} s_test_t;

static int s_test_take(struct mg_connection *conn, void *arg)
{
    s_test_t *t = arg;
    mg_disable_connection_keep_alive(conn);
    mg_printf(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    atomic_store(&t->taken, ain__handoff_take(conn, t->owned));
    return 200;
}

static int s_test_ping(struct mg_connection *conn, void *arg)
{
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npong");
    return 200;
}

/* A connected client socket with a 5 s receive timeout, after `request`. */
static int s_test_client(int port, const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {5, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until `want` appears in what arrived (or EOF/timeout); returns
 * whether it did. */
static bool s_test_read(int fd, const char *want)
{
    char buf[1024];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, want))
            return true;
    }
    return false;
}

static int s_test_wait_taken(s_test_t *t)
{
    for (int i = 0; i < 500 && atomic_load(&t->taken) == -2; i++)
        usleep(10000);
    return atomic_load(&t->taken);
}

int ain_edge_handoff_test(bool verbose)
{
    s_test_t t = {ain__fdset_new(), -2};
    /* One worker thread: the second request is served only if the
     * hand-off freed it. */
    const char *options[] = {"listening_ports", "127.0.0.1:0", "num_threads", "1", NULL};
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    struct mg_context *mg = mg_start(&callbacks, NULL, options);
    struct mg_server_port port;
    if (!mg || mg_get_server_ports(mg, 1, &port) != 1) {
        fprintf(stderr, "handoff: civetweb did not start\n");
        ain__fdset_destroy(&t.owned);
        return 1;
    }
    mg_set_request_handler(mg, "/take", s_test_take, &t);
    mg_set_request_handler(mg, "/ping", s_test_ping, NULL);
    int failures = 0;
#define S_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "handoff: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
    int client = s_test_client(port.port, "GET /take HTTP/1.1\r\nHost: x\r\n\r\n");
    S_CHECK(client >= 0);
    S_CHECK(s_test_read(client, "\r\n\r\n"));
    int mine = s_test_wait_taken(&t);
    S_CHECK(mine >= 0 && ain__fdset_has(t.owned, mine));
    S_CHECK(mine >= 0 && (fcntl(mine, F_GETFL) & O_NONBLOCK));
    /* The worker is free again: another request is answered. */
    int other = s_test_client(port.port, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    S_CHECK(other >= 0 && s_test_read(other, "pong"));
    if (other >= 0)
        close(other);
    /* civetweb has closed its side; ours still reaches the client, and
     * closing it ends the client's stream. */
    if (mine >= 0) {
        S_CHECK(write(mine, "data: after\n\n", 13) == 13);
        S_CHECK(s_test_read(client, "data: after"));
        ain__fdset_del(t.owned, mine);
        S_CHECK(!ain__fdset_has(t.owned, mine));
        close(mine);
        char byte;
        S_CHECK(read(client, &byte, 1) == 0);
    }
    if (client >= 0)
        close(client);
    mg_stop(mg);
    ain__fdset_destroy(&t.owned);
    ain__fdset_destroy(&t.owned); /* safe twice */
#undef S_CHECK
    if (verbose)
        printf("handoff: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
