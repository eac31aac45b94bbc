/* redispatch.c: kill the worker holding a request, time the re-dispatch
 * (see redispatch.h).
 *
 * Every wait here polls the broker's BROKER_WORKERS table with a deadline;
 * nothing waits for an event that might never come.
 */
#include "tools/bench/redispatch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/echo/echo.h"
#include "proto/body.h"
#include "proto/msgtype.h"
#include "runtime/clock.h"
#include "runtime/signal.h"
#include "tools/bench/drive.h"
#include "tools/bench/ours.h"

#define S_DELAY_MS       10000
#define S_MAX_WORKERS    16
#define S_START_WAIT_MS  5000
#define S_HOLDER_WAIT_MS 2000
#define S_MOVE_WAIT_MS   5000
#define S_GONE_WAIT_MS   5000
#define S_MAX_FAILS_ROW  3

typedef struct {
    pid_t pid;
    uint64_t instance;
} s_child_t;

typedef struct {
    uint64_t instance, inflight;
} s_worker_t;

/* ------------------------------------------------------------ children */

/* Reads "INSTANCE\n" from `fd` within S_START_WAIT_MS. Returns 0 or -1. */
static int s_read_instance(int fd, uint64_t *instance)
{
    char buf[32] = {0};
    size_t got = 0;
    int64_t until = ain_clock_mono_ms() + S_START_WAIT_MS;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(until - ain_clock_mono_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return -1;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    char *end = NULL;
    *instance = strtoull(buf, &end, 10);
    return *instance && end && *end == '\n' ? 0 : -1;
}

/* Forks and execs this binary as an echo worker. Returns 0 with `child`
 * filled (pid and instance), or -1 (child->pid > 0 if one must be reaped). */
static int s_spawn(const char *endpoint, s_child_t *child)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    char arg0[] = "ainbox-bench-broker", arg1[] = "--child-worker", ep[128], fd[16];
    snprintf(ep, sizeof ep, "%s", endpoint);
    snprintf(fd, sizeof fd, "%d", fds[1]);
    char *argv[] = {arg0, arg1, ep, fd, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls until exec */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent ||
            fcntl(fds[1], F_SETFD, 0) < 0)
            _exit(127);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fds[1]);
    child->pid = pid;
    int rc = pid > 0 ? s_read_instance(fds[0], &child->instance) : -1;
    close(fds[0]);
    return rc;
}

/* Kills and reaps `child` (waiting up to 2 s). */
static void s_reap(s_child_t *child)
{
    if (child->pid <= 0)
        return;
    kill(child->pid, SIGKILL);
    for (int i = 0; i < 2000; i++) {
        pid_t r = waitpid(child->pid, NULL, WNOHANG);
        if (r == child->pid || (r < 0 && errno != EINTR))
            break;
        ain__drive_sleep_ms(1);
    }
    child->pid = 0;
}

/* ----------------------------------------------------- the broker's table */

/* The echo workers in a BROKER_WORKERS body. Returns their count or -1. */
static int s_parse_workers(const void *data, size_t len, s_worker_t *out, int max)
{
    ain_body_t body;
    int n = -1;
    const msgpack_object *ws = NULL;
    if (ain_body_parse(&body, data, len) == AIN_STATUS_OK)
        ws = ain_mp_get(body.root, "workers");
    if (ws && ws->type == MSGPACK_OBJECT_ARRAY) {
        n = 0;
        for (uint32_t i = 0; i < ws->via.array.size && n < max; i++) {
            const msgpack_object *w = &ws->via.array.ptr[i];
            const char *svc;
            size_t slen;
            if (ain_mp_get_str(w, "service", &svc, &slen) == 1 && slen == 4 &&
                memcmp(svc, "echo", 4) == 0 &&
                ain_mp_get_u64(w, "instance", &out[n].instance) == 1 &&
                ain_mp_get_u64(w, "inflight", &out[n].inflight) == 1)
                n++;
        }
    }
    ain_body_release(&body);
    return n;
}

static int s_list_workers(ain_client_t *admin, s_worker_t *out, int max)
{
    static const uint8_t s_empty_map[] = {0x80};
    ain_reply_t reply;
    ain_status_t st = ain_client_call(admin, "broker", AIN_MSG_BROKER_WORKERS, 0, s_empty_map,
                                      sizeof s_empty_map, 1000, &reply);
    int n = -1;
    if (st == AIN_STATUS_OK)
        n = s_parse_workers(reply.env.body, reply.env.body_len, out, max);
    ain_reply_close(&reply);
    return n;
}

/* How many requests the worker of `instance` holds, or -1 if unlisted. */
static int64_t s_inflight(const s_worker_t *w, int n, uint64_t instance)
{
    for (int i = 0; i < n; i++)
        if (w[i].instance == instance)
            return (int64_t)w[i].inflight;
    return -1;
}

/* A condition on the table: returns >= 0 when met (the answer), -1 if not
 * yet. */
typedef int(s_check_fn)(const s_worker_t *w, int n, const s_child_t *kids);

static int s_both_listed(const s_worker_t *w, int n, const s_child_t *kids)
{
    bool both = s_inflight(w, n, kids[0].instance) >= 0 && s_inflight(w, n, kids[1].instance) >= 0;
    return both ? 0 : -1;
}

static int s_none_listed(const s_worker_t *w, int n, const s_child_t *kids)
{
    bool none = s_inflight(w, n, kids[0].instance) < 0 && s_inflight(w, n, kids[1].instance) < 0;
    return none ? 0 : -1;
}

static int s_holder(const s_worker_t *w, int n, const s_child_t *kids)
{
    for (int i = 0; i < 2; i++)
        if (s_inflight(w, n, kids[i].instance) >= 1)
            return i;
    return -1;
}

/* kids[0] is the survivor here. */
static int s_survivor_holds(const s_worker_t *w, int n, const s_child_t *kids)
{
    return s_inflight(w, n, kids[0].instance) >= 1 ? 0 : -1;
}

/* Polls the table every `every_ms` until `check` is met or `timeout_ms`
 * passes. Returns the check's answer, or -1 on timeout. */
static int s_poll(ain_client_t *admin, s_check_fn *check, const s_child_t *kids, int timeout_ms,
                  int every_ms)
{
    int64_t until = ain_clock_mono_ms() + timeout_ms;
    for (;;) {
        s_worker_t w[S_MAX_WORKERS];
        int n = s_list_workers(admin, w, S_MAX_WORKERS);
        int answer = n >= 0 ? check(w, n, kids) : -1;
        if (answer >= 0)
            return answer;
        if (ain_clock_mono_ms() >= until)
            return -1;
        ain__drive_sleep_ms(every_ms);
    }
}

/* ------------------------------------------------------ one repetition */

/* Packs the ECHO_DELAY body {delay_ms, data} into `sbuf`. */
static void s_pack_delay_body(msgpack_sbuffer *sbuf)
{
    static const char s_data[40] = "re-dispatch me";
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    ain_mp_pack_kv_u64(&pk, "delay_ms", S_DELAY_MS);
    ain_mp_pack_str(&pk, "data");
    msgpack_pack_bin(&pk, sizeof s_data);
    msgpack_pack_bin_body(&pk, s_data, sizeof s_data);
}

/* Sends ECHO_DELAY, retrying while the client connects. Returns 0 or -1. */
static int s_send_delayed(ain_client_t *client)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    s_pack_delay_body(&sbuf);
    int rc = -1;
    int64_t until = ain_clock_mono_ms() + S_START_WAIT_MS;
    while (rc < 0 && ain_clock_mono_ms() < until) {
        ain_envelope_t env = {.type = AIN_MSG_ECHO_DELAY,
                              .deadline_ms = ain_clock_wall_ms() + 6 * S_DELAY_MS,
                              .status = AIN_STATUS_OK,
                              .body = (const uint8_t *)sbuf.data,
                              .body_len = sbuf.size};
        rc = ain_client_send(client, "echo", &env);
        if (rc < 0 && errno != EAGAIN)
            break;
        if (rc < 0)
            ain__drive_sleep_ms(1);
    }
    msgpack_sbuffer_destroy(&sbuf);
    return rc;
}

/* Kills the holder and times the move to the survivor. Returns 0 or -1. */
static int s_kill_and_time(ain_client_t *admin, s_child_t *kids, double *ms)
{
    int holder = s_poll(admin, s_holder, kids, S_HOLDER_WAIT_MS, 1);
    if (holder < 0) {
        fprintf(stderr, "bench: the delayed request reached no worker\n");
        return -1;
    }
    s_child_t survivor = kids[1 - holder];
    int64_t t0 = ain__drive_now_ns();
    kill(kids[holder].pid, SIGKILL);
    if (s_poll(admin, s_survivor_holds, &survivor, S_MOVE_WAIT_MS, 1) < 0) {
        fprintf(stderr, "bench: no re-dispatch within %d ms\n", S_MOVE_WAIT_MS);
        return -1;
    }
    *ms = (double)(ain__drive_now_ns() - t0) / 1e6;
    return 0;
}

static int s_rep(const ain__ours_t *broker, ain_client_t *admin, double *ms)
{
    s_child_t kids[2] = {{0, 0}, {0, 0}};
    ain_client_t *client = NULL;
    int rc = -1;
    if (s_spawn(ain__ours_endpoint(broker), &kids[0]) == 0 &&
        s_spawn(ain__ours_endpoint(broker), &kids[1]) == 0 &&
        s_poll(admin, s_both_listed, kids, S_START_WAIT_MS, 5) == 0) {
        client = ain__ours_client(broker);
        if (client && s_send_delayed(client) == 0)
            rc = s_kill_and_time(admin, kids, ms);
    } else {
        fprintf(stderr, "bench: the worker processes did not start and register\n");
    }
    ain_client_destroy(&client);
    s_reap(&kids[0]);
    s_reap(&kids[1]);
    if (kids[0].instance && kids[1].instance &&
        s_poll(admin, s_none_listed, kids, S_GONE_WAIT_MS, 5) < 0)
        fprintf(stderr, "bench: the broker still lists a killed worker\n");
    return rc;
}

int ain__redispatch_run(int reps, ain__redispatch_t *out)
{
    memset(out, 0, sizeof *out);
    ain__ours_t *broker = ain__ours_new(true, false);
    if (!broker)
        return -1;
    ain_client_t *admin = ain__ours_client(broker);
    double *ms = out->ms;
    int fails_in_row = 0;
    if (reps > AIN__REDISPATCH_MAX_REPS)
        reps = AIN__REDISPATCH_MAX_REPS;
    for (int i = 0; admin && i < reps && fails_in_row < S_MAX_FAILS_ROW; i++) {
        if (s_rep(broker, admin, &ms[out->reps]) == 0) {
            out->reps++;
            fails_in_row = 0;
        } else {
            out->failed++;
            fails_in_row++;
        }
    }
    if (out->reps > 0) {
        out->median_ms = ain__drive_median(ms, out->reps);
        out->min_ms = ms[0];
        out->max_ms = ms[out->reps - 1];
    }
    ain_client_destroy(&admin);
    ain__ours_destroy(&broker);
    return out->reps > 0 ? 0 : -1;
}

int ain__redispatch_child(const char *endpoint, const char *fdtext)
{
    char *end = NULL;
    long fd = strtol(fdtext, &end, 10);
    if (!end || *end || fd < 3 || fd > 1024)
        return 2;
    ain_config_t *cfg = ain__ours_config_new(endpoint, false);
    if (!cfg)
        return 1;
    ain_proc_t *proc = ain_proc_new(cfg);
    dprintf((int)fd, "%" PRIu64 "\n", ain_proc_instance(proc));
    close((int)fd);
    ain_signal_install();
    int rc = ain_actor_run(&ain_echo_actor, proc, NULL);
    ain_proc_destroy(&proc);
    ain_config_destroy(&cfg);
    return rc == 0 ? 0 : 1;
}
