/* ours.c: the real broker and echo actor as in-process roles (see ours.h).
 *
 * A tcp broker needs three consecutive free ports (router, bus in, bus
 * out: the bus endpoints are derived as port + 1 and + 2). The kernel picks
 * the first, the next two are checked by binding them; since another
 * process may take one before the broker binds, a failed start is retried
 * with new ports.
 */
#include "tools/bench/ours.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/echo/echo.h"
#include "deploy/bundle.h"
#include "deploy/roles.h"
#include "deploy/supervisor.h"
#include "proto/msgtype.h"
#include "runtime/alloc.h"
#include "runtime/endpoint.h"

#define S_PORT_TRIES    8
#define S_READY_WAIT_MS 5000
#define S_MAX_ENV       256

struct _ain__ours_t {
    ain_config_t *cfg;
    ain_bundle_t *bundle; /* inproc */
    ain_proc_t *proc;     /* tcp: the broker's and the actor's */
    ain_log_t *log;
    ain_supervisor_t *sup;
    ain_broker_role_t broker;
    ain_actor_role_t actor;
    ain_client_t *client;
    char endpoint[96];
};

/* Binds a listening-free TCP socket on 127.0.0.1:port (0: any). Returns
 * the port bound and keeps the socket in *fd, or -1. */
static int s_hold_port(int port, int *fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0)
        return -1;
    if (bind(*fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(*fd, (struct sockaddr *)&sa, &len) < 0) {
        close(*fd);
        *fd = -1;
        return -1;
    }
    return ntohs(sa.sin_port);
}

/* A port P such that P, P + 1 and P + 2 were free a moment ago, or -1. */
static int s_free_port_triple(void)
{
    for (int attempt = 0; attempt < 32; attempt++) {
        int fd[3] = {-1, -1, -1};
        int port = s_hold_port(0, &fd[0]);
        bool ok = port > 0 && port + 2 <= 65535 && s_hold_port(port + 1, &fd[1]) > 0 &&
                  s_hold_port(port + 2, &fd[2]) > 0;
        for (int i = 0; i < 3; i++)
            if (fd[i] >= 0)
                close(fd[i]);
        if (ok)
            return port;
    }
    return -1;
}

ain_config_t *ain__ours_config_new(const char *endpoint, bool bind)
{
    char *mine[8] = {NULL};
    int n = 0;
    if (endpoint) {
        char *in = ain_endpoint_derive(endpoint, 1, "-bus-in");
        char *out = ain_endpoint_derive(endpoint, 2, "-bus-out");
        mine[n++] = ain_sprintf("AINBOX_BROKER=%s", endpoint);
        mine[n++] = ain_sprintf("AINBOX_BUS_IN=%s", in ? in : "");
        mine[n++] = ain_sprintf("AINBOX_BUS_OUT=%s", out ? out : "");
        if (bind) {
            mine[n++] = ain_sprintf("AINBOX_BROKER_BIND=%s", endpoint);
            mine[n++] = ain_sprintf("AINBOX_BUS_IN_BIND=%s", in ? in : "");
            mine[n++] = ain_sprintf("AINBOX_BUS_OUT_BIND=%s", out ? out : "");
        }
        free(in);
        free(out);
    }
    char *envp[S_MAX_ENV + 16];
    char level[] = "LOG_LEVEL=error";
    int k = 0;
    envp[k++] = level; /* the environment may override it */
    for (char **e = environ; *e && k < S_MAX_ENV; e++)
        envp[k++] = *e;
    for (int i = 0; i < n; i++)
        envp[k++] = mine[i];
    envp[k] = NULL;
    char *error = NULL;
    ain_config_t *cfg = ain_config_load(envp, "", NULL, &error);
    if (!cfg)
        fprintf(stderr, "bench: configuration: %s\n", error);
    free(error);
    for (int i = 0; i < n; i++)
        free(mine[i]);
    return cfg;
}

/* Starts the broker role bound to a fresh tcp port. Returns 0 or -1. */
static int s_start_tcp_broker(ain__ours_t *self)
{
    for (int attempt = 0; attempt < S_PORT_TRIES; attempt++) {
        int port = s_free_port_triple();
        if (port < 0)
            break;
        snprintf(self->endpoint, sizeof self->endpoint, "tcp://127.0.0.1:%d", port);
        self->cfg = ain__ours_config_new(self->endpoint, true);
        if (!self->cfg)
            return -1;
        self->proc = ain_proc_new(self->cfg);
        self->log = ain_proc_logger(self->proc, "bench");
        self->sup = ain_supervisor_new(0, 1000, self->log);
        self->broker = (ain_broker_role_t){self->proc, true, NULL, NULL, NULL};
        if (ain_supervisor_start(self->sup, "broker", ain_role_broker, &self->broker,
                                 AIN_PERMANENT) == 0)
            return 0;
        ain_supervisor_destroy(&self->sup); /* a port was taken meanwhile: again */
        ain_log_destroy(&self->log);
        ain_proc_destroy(&self->proc);
        ain_config_destroy(&self->cfg);
    }
    fprintf(stderr, "bench: cannot bind a broker on 127.0.0.1\n");
    return -1;
}

static int s_start_tcp(ain__ours_t *self, bool actor)
{
    if (s_start_tcp_broker(self) < 0)
        return -1;
    if (!actor)
        return 0;
    self->actor = (ain_actor_role_t){self->proc, &ain_echo_actor};
    return ain_supervisor_start(self->sup, "echo", ain_role_actor, &self->actor, AIN_PERMANENT);
}

static int s_start_inproc(ain__ours_t *self, bool actor)
{
    self->cfg = ain__ours_config_new(NULL, false);
    if (!self->cfg)
        return -1;
    ain_bundle_opts_t opts = {.edge = false, .bind_tcp = false, .actors = actor ? "echo" : ""};
    self->bundle = ain_bundle_new(self->cfg, &opts);
    if (!self->bundle)
        return -1;
    snprintf(self->endpoint, sizeof self->endpoint, "%s",
             ain_proc_broker(ain_bundle_proc(self->bundle)));
    return 0;
}

/* Waits until the broker knows a worker of "echo". Returns 0 or -1. */
static int s_wait_echo(ain__ours_t *self)
{
    int64_t until = ain__drive_now_ns() + (int64_t)S_READY_WAIT_MS * 1000000;
    while (ain__drive_now_ns() < until) {
        if (ain_client_mmi_service(self->client, "echo", 1000) == 200)
            return 0;
        ain__drive_sleep_ms(10);
    }
    fprintf(stderr, "bench: the echo actor did not register within %d ms\n", S_READY_WAIT_MS);
    return -1;
}

ain__ours_t *ain__ours_new(bool tcp, bool actor)
{
    ain__ours_t *self = AIN_NEW(ain__ours_t);
    int rc = tcp ? s_start_tcp(self, actor) : s_start_inproc(self, actor);
    if (rc == 0) {
        self->client = ain__ours_client(self);
        rc = self->client ? 0 : -1;
    }
    if (rc == 0 && actor)
        rc = s_wait_echo(self);
    if (rc < 0) {
        fprintf(stderr, "bench: our %s setup failed\n", tcp ? "tcp" : "inproc");
        ain__ours_destroy(&self);
    }
    return self;
}

void ain__ours_destroy(ain__ours_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__ours_t *self = *self_p;
    ain_client_destroy(&self->client);
    ain_bundle_destroy(&self->bundle);
    ain_supervisor_destroy(&self->sup);
    ain_log_destroy(&self->log);
    ain_proc_destroy(&self->proc);
    ain_config_destroy(&self->cfg);
    free(self);
    *self_p = NULL;
}

const char *ain__ours_endpoint(const ain__ours_t *self)
{
    return self->endpoint;
}

void *ain__ours_zmq(const ain__ours_t *self)
{
    return ain_proc_zmq(self->bundle ? ain_bundle_proc(self->bundle) : self->proc);
}

const ain_config_t *ain__ours_config(const ain__ours_t *self)
{
    return self->cfg;
}

ain_client_t *ain__ours_client(const ain__ours_t *self)
{
    return ain_client_new(ain__ours_zmq(self), self->endpoint, self->cfg);
}

static int s_send(void *ctx, const void *body, size_t len)
{
    ain__ours_t *self = ctx;
    ain_envelope_t env = {AIN_MSG_ECHO, 0, 0, 0, 0, AIN_STATUS_OK, body, len};
    return ain_client_send(self->client, "echo", &env);
}

static int s_recv(void *ctx, void *body, size_t cap, int timeout_ms)
{
    ain__ours_t *self = ctx;
    ain_reply_t reply;
    if (ain_client_recv(self->client, &reply, timeout_ms) != 1) {
        zmq_msg_close(&reply.frame);
        return -1;
    }
    int len = -1;
    if (reply.env.status == AIN_STATUS_OK && reply.env.body_len <= cap) {
        memcpy(body, reply.env.body, reply.env.body_len);
        len = (int)reply.env.body_len;
    }
    ain_reply_close(&reply);
    return len;
}

const ain__drive_ops_t ain__ours_ops = {s_send, s_recv};
