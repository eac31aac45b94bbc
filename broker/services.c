/* services.c: services, their queues and their workers.
 *
 * Pure bookkeeping, no sockets: which services exist (bounded), each one's
 * FIFO of waiting requests (a ring of slot indexes, grown on demand up to
 * AINBOX_QUEUE_MAX), the workers registered for it, and the ring of those
 * with credit left, from which dispatch takes workers in turn.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "runtime/crypto.h"
#include "runtime/alloc.h"

void ain__services_init(ain__services_t *s, uint32_t max_services, uint32_t queue_max)
{
    s->services = zhashx_new();
    s->workers = zhashx_new();
    s->max_services = max_services;
    s->queue_max = queue_max;
}

void ain__services_fini(ain__services_t *s)
{
    for (ain__worker_t *w = zhashx_first(s->workers); w; w = zhashx_next(s->workers))
        free(w);
    for (ain__service_t *svc = zhashx_first(s->services); svc; svc = zhashx_next(s->services)) {
        free(svc->queue);
        free(svc);
    }
    zhashx_destroy(&s->workers);
    zhashx_destroy(&s->services);
}

ain__service_t *ain__services_get(ain__services_t *s, const void *name, size_t len, bool create)
{
    char key[AIN_SERVICE_NAME_MAX + 1];
    if (!ain_mdp_service_valid(name, len))
        return NULL;
    memcpy(key, name, len);
    key[len] = '\0';
    ain__service_t *svc = zhashx_lookup(s->services, key);
    if (svc || !create || zhashx_size(s->services) >= s->max_services)
        return svc;
    svc = AIN_NEW(ain__service_t);
    memcpy(svc->name, key, len + 1);
    svc->qmax = s->queue_max;
    zhashx_insert(s->services, key, svc);
    return svc;
}

void ain__services_gc(ain__services_t *s, int64_t now_ms, int64_t idle_ms)
{
    zlistx_t *names = zhashx_keys(s->services);
    for (const char *name = zlistx_first(names); name; name = zlistx_next(names)) {
        ain__service_t *svc = zhashx_lookup(s->services, name);
        if (svc->nworkers == 0 && svc->qlen == 0 && now_ms - svc->idle_since_ms > idle_ms) {
            zhashx_delete(s->services, name);
            free(svc->queue);
            free(svc);
        }
    }
    zlistx_destroy(&names);
}

/* ------------------------------------------------------------ queue */

static int s_reserve(ain__service_t *svc)
{
    if (svc->qlen < svc->qcap)
        return 0;
    if (svc->qlen >= svc->qmax)
        return -1;
    uint32_t cap = svc->qcap ? svc->qcap * 2 : 16;
    if (cap > svc->qmax)
        cap = svc->qmax;
    uint32_t *q = ain_malloc(cap * sizeof *q);
    for (uint32_t i = 0; i < svc->qlen; i++)
        q[i] = svc->queue[(svc->qhead + i) % svc->qcap];
    free(svc->queue);
    svc->queue = q;
    svc->qcap = cap;
    svc->qhead = 0;
    return 0;
}

int ain__queue_push(ain__service_t *svc, uint32_t index)
{
    if (s_reserve(svc) < 0)
        return -1;
    svc->queue[(svc->qhead + svc->qlen++) % svc->qcap] = index;
    return 0;
}

int ain__queue_push_front(ain__service_t *svc, uint32_t index)
{
    if (s_reserve(svc) < 0)
        return -1;
    svc->qhead = (svc->qhead + svc->qcap - 1) % svc->qcap;
    svc->queue[svc->qhead] = index;
    svc->qlen++;
    return 0;
}

uint32_t ain__queue_pop(ain__service_t *svc)
{
    if (svc->qlen == 0)
        return AIN__NO_SLOT;
    uint32_t index = svc->queue[svc->qhead];
    svc->qhead = (svc->qhead + 1) % svc->qcap;
    svc->qlen--;
    return index;
}

void ain__queue_filter(ain__service_t *svc, bool (*keep)(uint32_t index, void *arg), void *arg)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < svc->qlen; i++) {
        uint32_t index = svc->queue[(svc->qhead + i) % svc->qcap];
        if (keep(index, arg))
            svc->queue[(svc->qhead + kept++) % svc->qcap] = index;
    }
    svc->qlen = kept;
}

/* ------------------------------------------------------------ workers */

ain__worker_t *ain__workers_find(ain__services_t *s, const void *id, size_t len)
{
    char key[2 * 255 + 1];
    if (len == 0 || len > 255)
        return NULL;
    ain_crypto_hex_encode(id, len, key, sizeof key);
    return zhashx_lookup(s->workers, key);
}

ain__worker_t *ain__workers_add(ain__services_t *s, ain__service_t *svc, const void *id, size_t len,
                                bool native, uint32_t credit, int64_t now_ms)
{
    if (len == 0 || len > 255 || ain__workers_find(s, id, len))
        return NULL;
    ain__worker_t *w = AIN_NEW(ain__worker_t);
    ain_crypto_hex_encode(id, len, w->key, sizeof w->key);
    memcpy(w->id, id, len);
    w->id_len = (uint8_t)len;
    w->service = svc;
    w->native = native;
    w->credit = credit;
    w->fd = -1;
    w->inflight_head = AIN__NO_SLOT;
    w->since_ms = now_ms;
    w->next = svc->workers;
    if (svc->workers)
        svc->workers->prev = w;
    svc->workers = w;
    svc->nworkers++;
    if (svc->kind == AIN__KIND_UNKNOWN)
        svc->kind = native ? AIN__KIND_NATIVE : AIN__KIND_PLAIN;
    zhashx_insert(s->workers, w->key, w);
    ain__worker_update(w);
    return w;
}

static void s_unavailable(ain__worker_t *w)
{
    ain__service_t *svc = w->service;
    if (!w->available)
        return;
    if (w->aprev)
        w->aprev->anext = w->anext;
    else
        svc->ahead = w->anext;
    if (w->anext)
        w->anext->aprev = w->aprev;
    else
        svc->atail = w->aprev;
    w->aprev = w->anext = NULL;
    w->available = false;
}

static void s_append_available(ain__worker_t *w)
{
    ain__service_t *svc = w->service;
    w->aprev = svc->atail;
    w->anext = NULL;
    if (svc->atail)
        svc->atail->anext = w;
    else
        svc->ahead = w;
    svc->atail = w;
    w->available = true;
}

void ain__worker_update(ain__worker_t *w)
{
    bool can = w->inflight < w->credit;
    if (can && !w->available)
        s_append_available(w);
    else if (!can && w->available)
        s_unavailable(w);
}

void ain__workers_remove(ain__services_t *s, ain__worker_t *w, int64_t now_ms)
{
    ain__service_t *svc = w->service;
    s_unavailable(w);
    if (w->prev)
        w->prev->next = w->next;
    else
        svc->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (--svc->nworkers == 0)
        svc->idle_since_ms = now_ms;
    zhashx_delete(s->workers, w->key);
    free(w);
}

ain__worker_t *ain__service_pick(ain__service_t *svc)
{
    ain__worker_t *w = svc->ahead;
    if (!w)
        return NULL;
    /* Round robin: the chosen worker goes to the back of the ring. */
    if (w != svc->atail) {
        s_unavailable(w);
        s_append_available(w);
    }
    return w;
}
