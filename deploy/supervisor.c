/* supervisor.c: role threads with restart intensity (see supervisor.h).
 *
 * Protocol on each child's pipe (CZMQ signals, child to supervisor):
 *   0 ready; 1 could not start; 2 ended cleanly; 3 ended with a failure.
 * The child always sends one of 1, 2, 3 as its last act, so the supervisor
 * can wait for it and join the thread without guessing.
 */
#include "deploy/supervisor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/alloc.h"
#include "runtime/clock.h"

#define S_MAX_CHILDREN 64

enum { S_READY = 0, S_START_FAILED = 1, S_ENDED = 2, S_FAILED = 3 };

typedef struct {
    char *name;
    ain_child_fn *fn;
    void *arg;
    int policy;
    pthread_t thread;
    bool running;
    zsock_t *pipe;       /* supervisor's end */
    zsock_t *child_pipe; /* child's end, used only by the child thread */
} s_child_t;

struct _ain_supervisor_t {
    ain_log_t *log;
    s_child_t *children[S_MAX_CHILDREN];
    int count;
    int max_restarts;
    int64_t window_ms;
    int64_t *recent; /* times of the last max_restarts restarts (ring) */
    int recent_next;
    uint64_t restarts;
};

static void *s_thread(void *arg)
{
    s_child_t *child = arg;
    char name[16]; /* the kernel keeps 15 characters: top -H, perf, gdb show it */
    snprintf(name, sizeof name, "ain-%s", child->name);
    pthread_setname_np(pthread_self(), name);
    int rc = child->fn(child->arg, child->child_pipe);
    /* A child that failed before signalling ready could not start. */
    zsock_signal(child->child_pipe, rc == 0 ? S_ENDED : S_FAILED);
    return NULL;
}

/* Starts the thread and waits for its first signal. Returns 0 if ready. */
static int s_launch(s_child_t *child)
{
    child->pipe = zsys_create_pipe(&child->child_pipe);
    if (pthread_create(&child->thread, NULL, s_thread, child) != 0) {
        zsock_destroy(&child->pipe);
        zsock_destroy(&child->child_pipe);
        return -1;
    }
    child->running = true;
    int status = zsock_wait(child->pipe);
    return status == S_READY ? 0 : -1;
}

/* Waits for the thread's last signal if it has not come, and joins it. */
static void s_reap(s_child_t *child, bool last_signal_read)
{
    if (!child->running)
        return;
    if (!last_signal_read)
        zsock_wait(child->pipe);
    pthread_join(child->thread, NULL);
    zsock_destroy(&child->pipe);
    zsock_destroy(&child->child_pipe);
    child->running = false;
}

ain_supervisor_t *ain_supervisor_new(int max_restarts, int64_t window_ms, ain_log_t *log)
{
    ain_supervisor_t *self = AIN_NEW(ain_supervisor_t);
    self->log = log;
    self->max_restarts = max_restarts;
    self->window_ms = window_ms;
    self->recent = ain_calloc((size_t)max_restarts + 1, sizeof(int64_t)); /* +1: never 0 bytes */
    return self;
}

int ain_supervisor_start(ain_supervisor_t *self, const char *name, ain_child_fn *fn, void *arg,
                         int policy)
{
    if (self->count >= S_MAX_CHILDREN)
        return -1;
    s_child_t *child = AIN_NEW(s_child_t);
    child->name = ain_strdup(name);
    child->fn = fn;
    child->arg = arg;
    child->policy = policy;
    self->children[self->count++] = child;
    if (s_launch(child) < 0) {
        s_reap(child, true);
        ain_error(self->log, "%s failed to start", name);
        return -1;
    }
    return 0;
}

/* Records a restart; -1 if that makes more than max_restarts in the
 * window. The ring holds the times of the last max_restarts restarts: the
 * one about to be overwritten is the (max_restarts)th before this one, so
 * if it is inside the window, this is restart max_restarts + 1 in it. */
static int s_count_restart(ain_supervisor_t *self)
{
    int64_t now = ain_clock_mono_ms();
    self->restarts++;
    if (self->max_restarts == 0)
        return -1;
    int64_t oldest = self->recent[self->recent_next];
    self->recent[self->recent_next] = now;
    self->recent_next = (self->recent_next + 1) % self->max_restarts;
    return oldest != 0 && now - oldest < self->window_ms ? -1 : 0;
}

/* A child ended: its last signal is `status`. Returns -1 to give up. */
static int s_child_ended(ain_supervisor_t *self, s_child_t *child, int status)
{
    s_reap(child, true);
    if (status == S_ENDED) {
        ain_info(self->log, "%s ended", child->name);
        return 0;
    }
    if (child->policy == AIN_PERMANENT) {
        ain_error(self->log, "%s failed; the bundle cannot go on without it", child->name);
        return -1;
    }
    if (s_count_restart(self) < 0) {
        ain_error(self->log, "restart intensity exceeded (more than %d in %ld ms): giving up",
                  self->max_restarts, (long)self->window_ms);
        return -1;
    }
    ain_warn(self->log, "%s failed; restarting it", child->name);
    if (s_launch(child) < 0) {
        s_reap(child, true);
        ain_error(self->log, "%s failed to start again", child->name);
    }
    return 0;
}

int ain_supervisor_poll(ain_supervisor_t *self, int timeout_ms)
{
    zmq_pollitem_t items[S_MAX_CHILDREN];
    s_child_t *which[S_MAX_CHILDREN];
    int n = 0;
    for (int i = 0; i < self->count; i++) {
        if (!self->children[i]->running)
            continue;
        which[n] = self->children[i];
        items[n++] = (zmq_pollitem_t){zsock_resolve(self->children[i]->pipe), 0, ZMQ_POLLIN, 0};
    }
    if (zmq_poll(items, n, timeout_ms) <= 0)
        return 0;
    for (int i = 0; i < n; i++)
        if ((items[i].revents & ZMQ_POLLIN) &&
            s_child_ended(self, which[i], zsock_wait(which[i]->pipe)) < 0)
            return -1;
    return 0;
}

void ain_supervisor_destroy(ain_supervisor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_supervisor_t *self = *self_p;
    for (int i = self->count - 1; i >= 0; i--) {
        s_child_t *child = self->children[i];
        if (child->running) {
            zstr_send(child->pipe, "$TERM");
            s_reap(child, false);
        }
        free(child->name);
        free(child);
    }
    free(self->recent);
    free(self);
    *self_p = NULL;
}

uint64_t ain_supervisor_restarts(const ain_supervisor_t *self)
{
    return self->restarts;
}
