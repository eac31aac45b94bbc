/* clients.c: the edge's broker clients, a fixed pool lent to one request at a time.
 *
 * civetweb has thousands of worker threads (AINBOX_EDGE_CONNECTIONS) so that clients reading
 * their requests slowly cannot hold every thread; but only a request being answered needs the
 * broker. So MDP clients are not per thread: AINBOX_EDGE_THREADS of them are made at start,
 * and a request borrows one for its handler (s_dispatch in edge.c), which also bounds how many
 * requests the edge has in front of the actors at once. A request that finds none free waits
 * (bounded) and is then refused with 503: the edge's own back-pressure, before the broker's.
 *
 * A client is used by one thread at a time: the mutex that hands it over orders every use
 * before the next (ZeroMQ allows a socket to move between threads with a full barrier).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

struct ain__clients {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int size, free_count;
    ain_client_t **all;  /* every client, for destroy */
    ain_client_t **free; /* a stack of the free ones */
};

ain__clients_t *ain__clients_new(const ain_proc_t *proc, int size, const atomic_bool *gate)
{
    ain__clients_t *self = AIN_NEW(ain__clients_t);
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->freed, &attr);
    pthread_condattr_destroy(&attr);
    self->all = ain_calloc((size_t)size, sizeof *self->all);
    self->free = ain_calloc((size_t)size, sizeof *self->free);
    for (int i = 0; i < size; i++) {
        ain_client_t *c =
            ain_client_new(ain_proc_zmq(proc), ain_proc_broker(proc), ain_proc_config(proc));
        if (!c) {
            ain__clients_destroy(&self);
            return NULL;
        }
        ain_client_set_gate(c, gate); /* refused at once while the broker is unreachable */
        self->all[self->size++] = c;
        self->free[self->free_count++] = c;
    }
    return self;
}

void ain__clients_destroy(ain__clients_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__clients_t *self = *self_p;
    for (int i = 0; i < self->size; i++)
        ain_client_destroy(&self->all[i]);
    free(self->all);
    free(self->free);
    pthread_cond_destroy(&self->freed);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

ain_client_t *ain__clients_take(ain__clients_t *self, int wait_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    ain_client_t *c = NULL;
    pthread_mutex_lock(&self->lock);
    int rc = 0;
    while (self->free_count == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&self->freed, &self->lock, &until);
    if (self->free_count > 0)
        c = self->free[--self->free_count];
    pthread_mutex_unlock(&self->lock);
    return c;
}

void ain__clients_give(ain__clients_t *self, ain_client_t *client)
{
    if (!client)
        return;
    pthread_mutex_lock(&self->lock);
    self->free[self->free_count++] = client;
    pthread_cond_signal(&self->freed);
    pthread_mutex_unlock(&self->lock);
}

int ain__clients_busy(ain__clients_t *self)
{
    pthread_mutex_lock(&self->lock);
    int busy = self->size - self->free_count;
    pthread_mutex_unlock(&self->lock);
    return busy;
}
