/* rendered.c: the JSON answers of message routes, kept by (user, path, query) with the ETag of
 * the data they were made from.
 *
 * A request whose data has not changed then costs one revalidation with the actor (call.c sends
 * the kept tag as `if_none_match`; the cache actor answers `not_modified`, a few bytes) and a
 * copy, instead of decoding the data and building JSON again: on an inbox page that was the
 * largest part of the edge's work (perf under wrk: jansson 22 % of all samples, malloc/free about
 * 20 %).
 *
 * Freshness is the actor's. An answer is served from here either because the actor confirmed, on
 * that request, that its tag is current; or because the actor confirmed it less than a lease ago
 * (AINBOX_EDGE_FRESH_MS) and no invalidation of the user has reached the edge since (each answer
 * keeps inval.c's stamp from before that confirmation; call.c checks it is still current), which
 * costs no round trip at all. Bounded: S_SLOTS slots, direct-mapped by a hash of the key
 * (a newer answer replaces whatever held its slot), answers of at most S_ENTRY_MAX bytes, and a
 * byte budget over all (AINBOX_EDGE_RENDER_BYTES; past it an answer is not kept). The budget is
 * checked under the slot's lock only, so puts racing in other shards may pass it by at most one
 * answer each (S_LOCKS x S_ENTRY_MAX in the worst case). Thread-safe:
 * one mutex per S_LOCKS slots.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "edge/internal.h"
#include "runtime/alloc.h"

#define S_SLOTS     4096
#define S_LOCKS     64
#define S_ENTRY_MAX (1024 * 1024)

typedef struct {
    uint64_t user;
    char *key; /* "path?query" */
    char etag[17];
    char *body;
    size_t len;
    uint64_t stamp;       /* inval.c's stamp from before the actor confirmed the tag; 0: none */
    int64_t confirmed_ms; /* when the actor last confirmed it (monotonic) */
} s_slot_t;

struct ain__rendered {
    pthread_mutex_t locks[S_LOCKS];
    s_slot_t slots[S_SLOTS];
    size_t budget;
    atomic_size_t bytes;
};

ain__rendered_t *ain__rendered_new(size_t budget)
{
    if (budget == 0)
        return NULL;
    ain__rendered_t *self = AIN_NEW(ain__rendered_t);
    for (int i = 0; i < S_LOCKS; i++)
        pthread_mutex_init(&self->locks[i], NULL);
    self->budget = budget;
    return self;
}

static void s_clear(ain__rendered_t *self, s_slot_t *slot)
{
    atomic_fetch_sub(&self->bytes, slot->len);
    free(slot->key);
    free(slot->body);
    memset(slot, 0, sizeof *slot);
}

void ain__rendered_destroy(ain__rendered_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain__rendered_t *self = *self_p;
    for (int i = 0; i < S_SLOTS; i++)
        s_clear(self, &self->slots[i]);
    for (int i = 0; i < S_LOCKS; i++)
        pthread_mutex_destroy(&self->locks[i]);
    free(self);
    *self_p = NULL;
}

/* FNV-1a over the user and the key. */
static size_t s_index(uint64_t user, const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 8; i++) {
        h ^= (user >> (8 * i)) & 0xff;
        h *= 1099511628211ULL;
    }
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % S_SLOTS);
}

static bool s_holds(const s_slot_t *slot, uint64_t user, const char *key)
{
    return slot->key && slot->user == user && strcmp(slot->key, key) == 0;
}

/* The slot of (user, key), locked; *lock is what to unlock. */
static s_slot_t *s_lock(ain__rendered_t *self, uint64_t user, const char *key,
                        pthread_mutex_t **lock)
{
    size_t i = s_index(user, key);
    *lock = &self->locks[i % S_LOCKS];
    pthread_mutex_lock(*lock);
    return &self->slots[i];
}

/* A copy of the slot's answer and its length. */
static char *s_copy(const s_slot_t *slot, size_t *len)
{
    char *copy = ain_malloc(slot->len + 1);
    memcpy(copy, slot->body, slot->len);
    copy[slot->len] = '\0';
    *len = slot->len;
    return copy;
}

bool ain__rendered_etag(ain__rendered_t *self, uint64_t user, const char *key, char etag[17])
{
    if (!self)
        return false;
    pthread_mutex_t *lock;
    s_slot_t *slot = s_lock(self, user, key, &lock);
    bool found = s_holds(slot, user, key);
    if (found)
        memcpy(etag, slot->etag, 17);
    pthread_mutex_unlock(lock);
    return found;
}

char *ain__rendered_get(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                        size_t *len)
{
    if (!self)
        return NULL;
    char *copy = NULL;
    pthread_mutex_t *lock;
    s_slot_t *slot = s_lock(self, user, key, &lock);
    if (s_holds(slot, user, key) && strcmp(slot->etag, etag) == 0)
        copy = s_copy(slot, len);
    pthread_mutex_unlock(lock);
    return copy;
}

char *ain__rendered_fresh(ain__rendered_t *self, uint64_t user, const char *key, int64_t now,
                          int64_t lease_ms, uint64_t *stamp, char etag[17], size_t *len)
{
    if (!self)
        return NULL;
    char *copy = NULL;
    pthread_mutex_t *lock;
    s_slot_t *slot = s_lock(self, user, key, &lock);
    if (s_holds(slot, user, key) && slot->stamp && now - slot->confirmed_ms < lease_ms) {
        copy = s_copy(slot, len);
        *stamp = slot->stamp;
        memcpy(etag, slot->etag, 17);
    }
    pthread_mutex_unlock(lock);
    return copy;
}

void ain__rendered_confirm(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                           uint64_t stamp, int64_t now)
{
    if (!self)
        return;
    pthread_mutex_t *lock;
    s_slot_t *slot = s_lock(self, user, key, &lock);
    if (s_holds(slot, user, key) && strcmp(slot->etag, etag) == 0) {
        slot->stamp = stamp;
        slot->confirmed_ms = now;
    }
    pthread_mutex_unlock(lock);
}

void ain__rendered_put(ain__rendered_t *self, uint64_t user, const char *key, const char *etag,
                       const char *body, size_t len, uint64_t stamp, int64_t now)
{
    if (!self || len > S_ENTRY_MAX || strlen(etag) != 16)
        return;
    pthread_mutex_t *lock;
    s_slot_t *slot = s_lock(self, user, key, &lock);
    s_clear(self, slot);
    if (atomic_load(&self->bytes) + len <= self->budget) {
        slot->user = user;
        slot->key = ain_strdup(key);
        memcpy(slot->etag, etag, 17);
        slot->body = ain_malloc(len ? len : 1);
        memcpy(slot->body, body, len);
        slot->len = len;
        slot->stamp = stamp;
        slot->confirmed_ms = now;
        atomic_fetch_add(&self->bytes, len);
    }
    pthread_mutex_unlock(lock);
}

size_t ain__rendered_bytes(const ain__rendered_t *self)
{
    return self ? atomic_load(&self->bytes) : 0;
}
