/* requests.c: the broker's request table.
 *
 * Slots live in fixed chunks that never move (zmq_msg_t must not be moved
 * by memcpy), are recycled through a free list, and are named on the wire
 * by an 8-byte token: the slot index and its generation. A reply whose
 * token names a freed or reused slot therefore matches nothing, instead of
 * answering somebody else's request.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/internal.h"
#include "runtime/alloc.h"

#define S_CHUNK 256

void ain__requests_init(ain__requests_t *t, uint32_t max)
{
    memset(t, 0, sizeof *t);
    t->max = max;
    t->free_head = AIN__NO_SLOT;
}

void ain__requests_fini(ain__requests_t *t)
{
    for (uint32_t i = 0; i < t->capacity; i++) {
        ain__request_t *r = ain__requests_get(t, i);
        if (r->state != AIN__REQ_FREE)
            ain__requests_free(t, i);
    }
    for (uint32_t c = 0; c < t->nchunks; c++)
        free(t->chunks[c]);
    free(t->chunks);
    memset(t, 0, sizeof *t);
}

ain__request_t *ain__requests_get(const ain__requests_t *t, uint32_t index)
{
    return &t->chunks[index / S_CHUNK][index % S_CHUNK];
}

static void s_grow(ain__requests_t *t)
{
    t->chunks = ain_realloc(t->chunks, (t->nchunks + 1) * sizeof *t->chunks);
    t->chunks[t->nchunks++] = ain_calloc(S_CHUNK, sizeof(ain__request_t));
    /* Thread the new slots onto the free list, lowest index first. */
    for (uint32_t i = S_CHUNK; i-- > 0;) {
        uint32_t index = t->capacity + i;
        ain__requests_get(t, index)->next_free = t->free_head;
        t->free_head = index;
    }
    t->capacity += S_CHUNK;
}

ain__request_t *ain__requests_alloc(ain__requests_t *t, uint32_t *index)
{
    if (t->used >= t->max)
        return NULL;
    if (t->free_head == AIN__NO_SLOT)
        s_grow(t);
    uint32_t i = t->free_head;
    ain__request_t *r = ain__requests_get(t, i);
    t->free_head = r->next_free;
    uint32_t gen = r->gen;
    memset(r, 0, sizeof *r);
    r->gen = gen;
    r->state = AIN__REQ_QUEUED;
    zmq_msg_init(&r->client);
    zmq_msg_init(&r->header);
    zmq_msg_init(&r->body);
    t->used++;
    *index = i;
    return r;
}

void ain__requests_free(ain__requests_t *t, uint32_t index)
{
    ain__request_t *r = ain__requests_get(t, index);
    zmq_msg_close(&r->client);
    zmq_msg_close(&r->header);
    zmq_msg_close(&r->body);
    for (int i = 0; r->extra && i < r->nbody - 1; i++)
        zmq_msg_close(&r->extra[i]);
    free(r->extra);
    r->extra = NULL;
    r->state = AIN__REQ_FREE;
    r->gen++;
    r->next_free = t->free_head;
    t->free_head = index;
    t->used--;
}

void ain__requests_token(const ain__requests_t *t, uint32_t index,
                         uint8_t token[AIN_MDP_TOKEN_BYTES])
{
    uint32_t gen = ain__requests_get(t, index)->gen;
    memcpy(token, &index, 4);
    memcpy(token + 4, &gen, 4);
}

ain__request_t *ain__requests_by_token(const ain__requests_t *t, const void *token, size_t len,
                                       uint32_t *index)
{
    uint32_t i, gen;
    if (len != AIN_MDP_TOKEN_BYTES)
        return NULL;
    memcpy(&i, token, 4);
    memcpy(&gen, (const uint8_t *)token + 4, 4);
    if (i >= t->capacity)
        return NULL;
    ain__request_t *r = ain__requests_get(t, i);
    if (r->gen != gen || r->state != AIN__REQ_INFLIGHT)
        return NULL;
    *index = i;
    return r;
}
