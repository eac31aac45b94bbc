/* l1.c: the cache actor's in-process layer, W-TinyLFU over a byte budget (see l1.h).
 *
 * Each entry is one allocation: bookkeeping, then the key, then the value;
 * what it costs the budget is exactly that allocation's requested size.
 * Entries sit on three intrusive LRU queues (window, probation, protected;
 * head is most recent), on their user's list, and in a chained hash table
 * keyed by (user, key); users are found through a second such table, so
 * invalidating a user walks only that user's entries. Both tables double
 * when their load passes one and never shrink (the byte budget bounds
 * them). Under AIN_L1_LRU everything lives in the window queue, which is
 * then as large as the whole budget, and no sketch is kept.
 *
 * Frequencies are recorded by gets (hits and misses alike), not by puts:
 * the usual pattern is a miss, a computation, then a put, and counting the
 * put as well would count that one request twice. The key hash is unkeyed
 * (fixed seed): see s_hash.
 */
#include "actors/cache/l1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/cache/sketch.h"
#include "runtime/alloc.h"

#define S_ENTRY_GUESS   1024 /* bytes per entry, to size the sketch and the window's floor */
#define S_ADMIT_RANDOM  6    /* a candidate this frequent that loses still gets in 1 in 128 */
#define S_TABLE_BUCKETS 64   /* initial buckets in each hash table */

enum { S_WINDOW, S_PROBATION, S_PROTECTED, S_QUEUES };

/* A hash table node; the first member of what it indexes. */
typedef struct s_link {
    struct s_link *next;
    uint64_t hash;
} s_link_t;

typedef struct {
    s_link_t **buckets; /* mask + 1 of them, a power of two */
    size_t mask, count;
} s_table_t;

typedef struct s_entry s_entry_t;

typedef struct {
    s_link_t link; /* in self->users */
    uint64_t user;
    s_entry_t *head; /* the user's entries; never empty while the user exists */
} s_user_t;

struct s_entry {
    s_link_t link;            /* in self->entries */
    s_entry_t *prev, *next;   /* in queue `queue`, towards the head / the tail */
    s_entry_t *uprev, *unext; /* in owner's list */
    s_user_t *owner;
    uint64_t user;
    ain_l1_value_t value; /* value.data points into key[], after the key */
    size_t size;          /* what it costs the budget */
    size_t key_len;
    int queue;
    char key[];
};

typedef struct {
    s_entry_t *head, *tail; /* most and least recently used */
    size_t bytes;
} s_queue_t;

struct _ain_l1_t {
    ain_l1_policy_t policy;
    size_t capacity, bytes;
    size_t window_max;    /* beyond this the window's LRU entries seek admission */
    size_t protected_max; /* beyond this protected LRU entries drop to probation */
    size_t entry_max;     /* the largest entry that can ever be stored */
    s_queue_t q[S_QUEUES];
    s_table_t entries, users;
    ain_sketch_t *sketch; /* NULL under AIN_L1_LRU */
    uint64_t rng;         /* xorshift state for the admission tie-break */
    ain_l1_stats_t stats; /* the counters; sizes are filled in by ain_l1_stats */
};

/* ------------------------------------------------------------ hashing */

#define S_P1 0x9e3779b185ebca87ULL /* xxHash64's primes */
#define S_P2 0xc2b2ae3d27d4eb4fULL
#define S_P3 0x165667b19e3779f9ULL

static uint64_t s_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t s_round(uint64_t acc, uint64_t word)
{
    return s_rotl(acc + word * S_P2, 31) * S_P1;
}

static uint64_t s_avalanche(uint64_t h)
{
    h = (h ^ (h >> 33)) * S_P2;
    h = (h ^ (h >> 29)) * S_P3;
    return h ^ (h >> 32);
}

/* (user, key) to 64 well-mixed bits: xxHash64's round and finalizer over
 * one lane, 8 bytes at a time. Fast for short keys and good enough for
 * tables and the sketch; not keyed, so someone who controls many keys of
 * one user could aim them at one bucket. Keys are built by the actor, so
 * that needs a hostile key source first; a per-instance seed fixes it. */
static uint64_t s_hash(uint64_t user, const char *key, size_t len)
{
    uint64_t h = s_round(S_P3 + len * S_P1, user);
    for (; len >= 8; key += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = s_round(h, w);
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, key, len);
        h = s_round(h, w);
    }
    return s_avalanche(h);
}

/* xorshift64: the cache's and the selftest's deterministic randomness. */
static uint64_t s_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* ------------------------------------------------------------ hash tables */

static void s_table_init(s_table_t *t)
{
    t->buckets = ain_calloc(S_TABLE_BUCKETS, sizeof *t->buckets);
    t->mask = S_TABLE_BUCKETS - 1;
    t->count = 0;
}

static s_link_t *s_table_chain(const s_table_t *t, uint64_t hash)
{
    return t->buckets[hash & t->mask];
}

static void s_table_grow(s_table_t *t)
{
    size_t n = (t->mask + 1) * 2;
    s_link_t **buckets = ain_calloc(n, sizeof *buckets);
    for (size_t i = 0; i <= t->mask; i++) {
        s_link_t *l = t->buckets[i];
        while (l) {
            s_link_t *next = l->next;
            l->next = buckets[l->hash & (n - 1)];
            buckets[l->hash & (n - 1)] = l;
            l = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->mask = n - 1;
}

static void s_table_insert(s_table_t *t, s_link_t *l)
{
    if (t->count > t->mask)
        s_table_grow(t);
    l->next = t->buckets[l->hash & t->mask];
    t->buckets[l->hash & t->mask] = l;
    t->count++;
}

static void s_table_remove(s_table_t *t, s_link_t *l)
{
    s_link_t **p = &t->buckets[l->hash & t->mask];
    while (*p != l)
        p = &(*p)->next;
    *p = l->next;
    t->count--;
}

/* ------------------------------------------------------------ queues */

static void s_queue_push(ain_l1_t *self, s_entry_t *e, int queue)
{
    s_queue_t *q = &self->q[queue];
    e->queue = queue;
    e->prev = NULL;
    e->next = q->head;
    if (q->head)
        q->head->prev = e;
    else
        q->tail = e;
    q->head = e;
    q->bytes += e->size;
}

static void s_queue_unlink(ain_l1_t *self, s_entry_t *e)
{
    s_queue_t *q = &self->q[e->queue];
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    q->bytes -= e->size;
}

/* Makes `e` the most recent entry of `queue` (its own or another). */
static void s_queue_move(ain_l1_t *self, s_entry_t *e, int queue)
{
    s_queue_unlink(self, e);
    s_queue_push(self, e, queue);
}

/* ------------------------------------------------------------ entries */

static s_user_t *s_user_find(const ain_l1_t *self, uint64_t user)
{
    uint64_t hash = s_avalanche(user);
    for (s_link_t *l = s_table_chain(&self->users, hash); l; l = l->next)
        if (((s_user_t *)l)->user == user)
            return (s_user_t *)l;
    return NULL;
}

/* Puts `e` at the head of its user's list, creating the user if new. */
static void s_user_attach(ain_l1_t *self, s_entry_t *e)
{
    s_user_t *u = s_user_find(self, e->user);
    if (!u) {
        u = AIN_NEW(s_user_t);
        u->user = e->user;
        u->link.hash = s_avalanche(e->user);
        s_table_insert(&self->users, &u->link);
    }
    e->owner = u;
    e->uprev = NULL;
    e->unext = u->head;
    if (u->head)
        u->head->uprev = e;
    u->head = e;
}

/* Takes `e` off its user's list; a user left with no entries is freed. */
static void s_user_detach(ain_l1_t *self, s_entry_t *e)
{
    s_user_t *u = e->owner;
    if (e->uprev)
        e->uprev->unext = e->unext;
    else
        u->head = e->unext;
    if (e->unext)
        e->unext->uprev = e->uprev;
    if (!u->head) {
        s_table_remove(&self->users, &u->link);
        free(u);
    }
}

static s_entry_t *s_find(const ain_l1_t *self, uint64_t hash, uint64_t user, const char *key,
                         size_t key_len)
{
    for (s_link_t *l = s_table_chain(&self->entries, hash); l; l = l->next) {
        s_entry_t *e = (s_entry_t *)l;
        if (l->hash == hash && e->user == user && e->key_len == key_len &&
            (key_len == 0 || memcmp(e->key, key, key_len) == 0))
            return e;
    }
    return NULL;
}

/* What an entry costs the budget, or SIZE_MAX if that overflows. */
static size_t s_cost(size_t key_len, size_t len)
{
    size_t fixed = sizeof(s_entry_t);
    if (key_len > SIZE_MAX - fixed || len > SIZE_MAX - fixed - key_len)
        return SIZE_MAX;
    return fixed + key_len + len;
}

/* Indexes `e` and makes it the most recent entry of `queue`. */
static void s_link(ain_l1_t *self, s_entry_t *e, int queue)
{
    s_table_insert(&self->entries, &e->link);
    s_user_attach(self, e);
    s_queue_push(self, e, queue);
    self->bytes += e->size;
}

/* Unindexes and frees `e`. */
static void s_drop(ain_l1_t *self, s_entry_t *e)
{
    s_table_remove(&self->entries, &e->link);
    s_user_detach(self, e);
    s_queue_unlink(self, e);
    self->bytes -= e->size;
    free(e);
}

/* ------------------------------------------------------------ policy */

/* While protected is over its share, its LRU entry goes back to probation
 * (as probation's most recent: it was hot not long ago). */
static void s_demote(ain_l1_t *self)
{
    while (self->q[S_PROTECTED].bytes > self->protected_max)
        s_queue_move(self, self->q[S_PROTECTED].tail, S_PROBATION);
}

/* A hit: window and protected entries become their queue's most recent;
 * a probation entry has proved itself and moves up to protected. */
static void s_promote(ain_l1_t *self, s_entry_t *e)
{
    int queue = e->queue == S_PROBATION ? S_PROTECTED : e->queue;
    s_queue_move(self, e, queue);
    if (queue == S_PROTECTED)
        s_demote(self);
}

/* Whether a candidate of frequency `freq` is worth more than `victim`.
 * Ties go to the victim. An attacker who makes victims look hot (colliding
 * hashes) could otherwise shut the main area; a warm candidate that loses
 * still gets in now and then. */
static bool s_beats(ain_l1_t *self, unsigned freq, const s_entry_t *victim)
{
    if (freq > ain_sketch_estimate(self->sketch, victim->link.hash))
        return true;
    return freq >= S_ADMIT_RANDOM && (s_rand(&self->rng) & 127) == 0;
}

/* Makes room in the main area for `c`, the window's LRU entry, by evicting
 * victims it beats; false as soon as one beats it (then `c` must go). */
static bool s_admit(ain_l1_t *self, const s_entry_t *c)
{
    unsigned freq = ain_sketch_estimate(self->sketch, c->link.hash);
    while (self->bytes > self->capacity) {
        s_entry_t *v = self->q[S_PROBATION].tail;
        if (!v)
            v = self->q[S_PROTECTED].tail;
        if (!v)
            return true; /* cannot happen: the window alone always fits */
        if (!s_beats(self, freq, v))
            return false;
        self->stats.evictions++;
        s_drop(self, v);
    }
    return true;
}

/* The entry to evict when something must go regardless of frequency. */
static s_entry_t *s_victim(const ain_l1_t *self)
{
    for (int q = S_PROBATION; q < S_QUEUES; q++)
        if (self->q[q].tail)
            return self->q[q].tail;
    return self->q[S_WINDOW].tail;
}

/* Restores the bounds after an insertion: the window's overflow seeks
 * admission into probation, then whatever is still over budget is evicted
 * from the main area's LRU end. Returns true if `fresh` did not survive. */
static bool s_evict(ain_l1_t *self, const s_entry_t *fresh)
{
    while (self->q[S_WINDOW].bytes > self->window_max) {
        s_entry_t *c = self->q[S_WINDOW].tail;
        if (s_admit(self, c)) {
            s_queue_move(self, c, S_PROBATION);
            continue;
        }
        if (c == fresh)
            fresh = NULL; /* freed below: never compare with it again */
        self->stats.rejected++;
        s_drop(self, c);
    }
    while (self->bytes > self->capacity) {
        s_entry_t *v = s_victim(self);
        if (v == fresh)
            fresh = NULL;
        self->stats.evictions++;
        s_drop(self, v);
    }
    return fresh == NULL;
}

/* The sketch is first sized from a guess of the entry size (capacity / 1
 * KiB). Small values mean many more entries than that: distinct items then
 * share counters, and the sample (10 x width accesses) spans too few
 * accesses per entry to tell warm from cold. So once the cache holds more
 * entries than the sketch is wide, the sketch doubles, keeping what it
 * knew of the cached entries. Happens log2(entries / guess) times. */
static void s_sketch_fit(ain_l1_t *self)
{
    size_t width = ain_sketch_width(self->sketch);
    if (self->entries.count <= width || width >= AIN_SKETCH_MAX_WIDTH)
        return;
    ain_sketch_t *wider = ain_sketch_new(2 * width);
    for (int q = 0; q < S_QUEUES; q++) {
        for (const s_entry_t *e = self->q[q].head; e; e = e->next) {
            unsigned n = ain_sketch_estimate(self->sketch, e->link.hash);
            while (n--)
                ain_sketch_add(wider, e->link.hash);
        }
    }
    ain_sketch_destroy(&self->sketch);
    self->sketch = wider;
}

/* ------------------------------------------------------------ public */

ain_l1_t *ain_l1_new(size_t capacity_bytes, ain_l1_policy_t policy)
{
    ain_l1_t *self = AIN_NEW(ain_l1_t);
    self->policy = policy;
    self->capacity = capacity_bytes;
    if (policy == AIN_L1_LRU) {
        self->window_max = SIZE_MAX; /* never overflows: only the total is bounded */
        self->entry_max = capacity_bytes;
    } else {
        /* 1%, but at least one typical entry, unless that is half the cache */
        size_t least = S_ENTRY_GUESS < capacity_bytes / 2 ? S_ENTRY_GUESS : capacity_bytes / 2;
        self->window_max = capacity_bytes / 100 > least ? capacity_bytes / 100 : least;
        self->entry_max = capacity_bytes - self->window_max;
        self->protected_max = self->entry_max / 5 * 4;
        self->sketch = ain_sketch_new(capacity_bytes / S_ENTRY_GUESS);
    }
    s_table_init(&self->entries);
    s_table_init(&self->users);
    self->rng = 0x9e3779b97f4a7c15ULL;
    return self;
}

void ain_l1_destroy(ain_l1_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_l1_t *self = *self_p;
    ain_l1_clear(self);
    free(self->entries.buckets);
    free(self->users.buckets);
    ain_sketch_destroy(&self->sketch);
    free(self);
    *self_p = NULL;
}

const ain_l1_value_t *ain_l1_get(ain_l1_t *self, uint64_t user, const char *key, size_t key_len,
                                 int64_t now_ms)
{
    uint64_t hash = s_hash(user, key, key_len);
    if (self->sketch)
        ain_sketch_add(self->sketch, hash);
    s_entry_t *e = s_find(self, hash, user, key, key_len);
    if (e && now_ms >= e->value.expires_ms) {
        self->stats.expired++;
        s_drop(self, e);
        e = NULL;
    }
    if (!e) {
        self->stats.misses++;
        return NULL;
    }
    self->stats.hits++;
    s_promote(self, e);
    return &e->value;
}

/* A new, unlinked entry holding copies of the key and the value. */
static s_entry_t *s_entry_new(uint64_t hash, uint64_t user, const char *key, size_t key_len,
                              const uint8_t *data, size_t len, size_t size)
{
    s_entry_t *e = ain_malloc(size);
    e->link.hash = hash;
    e->user = user;
    e->size = size;
    e->key_len = key_len;
    if (key_len)
        memcpy(e->key, key, key_len);
    if (len)
        memcpy(e->key + key_len, data, len);
    e->value.data = (const uint8_t *)e->key + key_len;
    e->value.len = len;
    return e;
}

int ain_l1_put(ain_l1_t *self, uint64_t user, const char *key, size_t key_len, const uint8_t *data,
               size_t len, int64_t expires_ms, int64_t delta_ms, uint64_t etag, int64_t now_ms)
{
    self->stats.puts++;
    uint64_t hash = s_hash(user, key, key_len);
    int queue = S_WINDOW;
    s_entry_t *old = s_find(self, hash, user, key, key_len);
    if (old) {
        queue = old->queue; /* a replacement keeps its standing */
        s_drop(self, old);
    }
    size_t size = s_cost(key_len, len);
    if (size > self->entry_max || now_ms >= expires_ms) {
        self->stats.rejected++;                 /* the stale value, if any, is gone too */
        return size > self->entry_max ? -1 : 1; /* dead on arrival: worth nothing */
    }
    s_entry_t *e = s_entry_new(hash, user, key, key_len, data, len, size);
    e->value.expires_ms = expires_ms;
    e->value.delta_ms = delta_ms;
    e->value.etag = etag;
    s_link(self, e, queue);
    if (queue == S_PROTECTED)
        s_demote(self);
    int rc = s_evict(self, e) ? 1 : 0;
    if (self->sketch)
        s_sketch_fit(self);
    return rc;
}

/* Whether `e`'s key starts with one of the prefixes (any key if none). */
static bool s_matches(const s_entry_t *e, const char *const *prefixes, size_t nprefixes)
{
    if (nprefixes == 0)
        return true;
    for (size_t i = 0; i < nprefixes; i++) {
        size_t n = strlen(prefixes[i]);
        if (n <= e->key_len && memcmp(e->key, prefixes[i], n) == 0)
            return true;
    }
    return false;
}

size_t ain_l1_invalidate(ain_l1_t *self, uint64_t user, const char *const *prefixes,
                         size_t nprefixes)
{
    s_user_t *u = s_user_find(self, user);
    s_entry_t *e = u ? u->head : NULL;
    size_t dropped = 0;
    while (e) { /* dropping the last entry frees u: walk by entries only */
        s_entry_t *next = e->unext;
        if (s_matches(e, prefixes, nprefixes)) {
            s_drop(self, e);
            dropped++;
        }
        e = next;
    }
    self->stats.invalidated += dropped;
    return dropped;
}

int ain_l1_remove(ain_l1_t *self, uint64_t user, const char *key, size_t key_len)
{
    s_entry_t *e = s_find(self, s_hash(user, key, key_len), user, key, key_len);
    if (!e)
        return 0;
    s_drop(self, e);
    return 1;
}

/* Frees every node of a table and empties it, keeping its buckets. */
static void s_table_free_all(s_table_t *t)
{
    for (size_t i = 0; i <= t->mask; i++) {
        s_link_t *l = t->buckets[i];
        while (l) {
            s_link_t *next = l->next;
            free(l);
            l = next;
        }
        t->buckets[i] = NULL;
    }
    t->count = 0;
}

/* The access history (sketch) and the counters stay: they describe the
 * workload, not the contents. */
void ain_l1_clear(ain_l1_t *self)
{
    s_table_free_all(&self->entries);
    s_table_free_all(&self->users);
    memset(self->q, 0, sizeof self->q);
    self->bytes = 0;
}

void ain_l1_stats(const ain_l1_t *self, ain_l1_stats_t *out)
{
    *out = self->stats;
    out->entries = self->entries.count;
    out->bytes = self->bytes;
    out->capacity = self->capacity;
}

/* ---------------------------------------------------------------- selftest */

#define S_FOREVER INT64_MAX

/* Every queue against its counters, tags and the table; the bounds. */
static int s_check_queues(const ain_l1_t *self)
{
    size_t count = 0, total = 0;
    for (int q = 0; q < S_QUEUES; q++) {
        size_t bytes = 0;
        const s_entry_t *prev = NULL;
        for (const s_entry_t *e = self->q[q].head; e; prev = e, e = e->next) {
            if (e->queue != q || e->prev != prev ||
                s_find(self, e->link.hash, e->user, e->key, e->key_len) != e)
                return -1;
            bytes += e->size;
            count++;
        }
        if (prev != self->q[q].tail || bytes != self->q[q].bytes)
            return -1;
        total += bytes;
    }
    if (self->q[S_WINDOW].bytes > self->window_max ||
        self->q[S_PROTECTED].bytes > self->protected_max)
        return -1;
    return count == self->entries.count && total == self->bytes && total <= self->capacity ? 0 : -1;
}

/* Every user has entries, and the users' lists hold every entry once. */
static int s_check_users(const ain_l1_t *self)
{
    size_t listed = 0;
    for (size_t i = 0; i <= self->users.mask; i++) {
        for (const s_link_t *l = self->users.buckets[i]; l; l = l->next) {
            const s_user_t *u = (const s_user_t *)l;
            if (!u->head || u->head->uprev)
                return -1;
            for (const s_entry_t *e = u->head; e; e = e->unext, listed++)
                if (e->owner != u || e->user != u->user || (e->unext && e->unext->uprev != e))
                    return -1;
        }
    }
    return listed == self->entries.count ? 0 : -1;
}

static int s_check(const ain_l1_t *self)
{
    return s_check_queues(self) || s_check_users(self) ? -1 : 0;
}

static int s_put(ain_l1_t *c, uint64_t user, const char *key, const char *value, int64_t expires)
{
    return ain_l1_put(c, user, key, strlen(key), (const uint8_t *)value, strlen(value), expires, 5,
                      42, 0);
}

static const ain_l1_value_t *s_get(ain_l1_t *c, uint64_t user, const char *key, int64_t now)
{
    return ain_l1_get(c, user, key, strlen(key), now);
}

static bool s_is(const ain_l1_value_t *v, const char *value)
{
    return v && v->len == strlen(value) && memcmp(v->data, value, v->len) == 0;
}

static int s_test_basic(void)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, AIN_L1_TINYLFU);
    int rc = s_put(c, 1, "a", "hello", S_FOREVER) != 0;
    const ain_l1_value_t *v = s_get(c, 1, "a", 0);
    rc |= !s_is(v, "hello") || v->delta_ms != 5 || v->etag != 42 || v->expires_ms != S_FOREVER;
    rc |= s_get(c, 2, "a", 0) != NULL || s_get(c, 1, "ab", 0) != NULL; /* other user, key */
    rc |= s_put(c, 1, "a", "world!", S_FOREVER) != 0 || !s_is(s_get(c, 1, "a", 0), "world!");
    rc |= s_put(c, 1, "", "empty key", S_FOREVER) != 0 || !s_is(s_get(c, 1, "", 0), "empty key");
    rc |= s_put(c, 1, "z", "", S_FOREVER) != 0 || !s_is(s_get(c, 1, "z", 0), "");
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= st.hits != 4 || st.misses != 2 || st.puts != 4 || st.entries != 3 ||
          st.capacity != 64 * 1024 || st.bytes != 3 * sizeof(s_entry_t) + 1 + 6 + 9 + 1;
    rc |= s_check(c);
    ain_l1_destroy(&c);
    ain_l1_destroy(&c); /* safe twice */
    return rc;
}

static int s_test_ttl(void)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, AIN_L1_TINYLFU);
    int rc = s_put(c, 1, "t", "v", 1000) != 0;
    rc |= !s_is(s_get(c, 1, "t", 999), "v");
    rc |= s_get(c, 1, "t", 1000) != NULL; /* expires at expires_ms */
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= st.expired != 1 || st.misses != 1 || st.hits != 1 || st.entries != 0 || st.bytes != 0;
    rc |= s_get(c, 1, "t", 1001) != NULL; /* gone: a plain miss now */
    ain_l1_stats(c, &st);
    rc |= st.expired != 1 || st.misses != 2 || c->users.count != 0;
    rc |= s_put(c, 1, "t", "v", S_FOREVER) != 0;
    rc |= ain_l1_put(c, 1, "t", 1, (const uint8_t *)"w", 1, 1000, 0, 0, 1000) != 1; /* dead */
    rc |= s_get(c, 1, "t", 0) != NULL || c->bytes != 0; /* and the old value went with it */
    ain_l1_destroy(&c);
    return rc;
}

/* One random operation on `c`; after a put, the byte bound and the -1
 * rule are checked. Values are mostly small, 1 in 100 up to 70 KiB. */
static int s_random_op(ain_l1_t *c, uint64_t *rng, const uint8_t *value, int64_t now)
{
    char key[32];
    uint64_t r = s_rand(rng);
    uint64_t user = r % 8;
    size_t klen = (size_t)snprintf(key, sizeof key, "k/%u", (unsigned)(r >> 8) % 64);
    size_t len = (r >> 24) % 100 ? (r >> 32) % 1000 : (r >> 32) % (70 * 1024);
    int op = (int)((r >> 48) % 20);
    if (op < 12) {
        int put = ain_l1_put(c, user, key, klen, value, len, now + (int64_t)(r >> 52), 0, 0, now);
        return c->bytes > c->capacity || (put == -1) != (s_cost(klen, len) > c->entry_max);
    }
    if (op < 18)
        ain_l1_get(c, user, key, klen, now);
    else if (op < 19)
        ain_l1_remove(c, user, key, klen);
    else
        ain_l1_invalidate(c, user, (const char *const[]){"k/1"}, 1);
    return 0;
}

/* Random puts of random sizes never leave the cache over its budget. */
static int s_test_bound(ain_l1_policy_t policy)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, policy);
    uint8_t *value = ain_calloc(70 * 1024, 1);
    uint64_t rng = 1;
    int rc = 0;
    for (int i = 0; i < 20000 && !rc; i++) {
        rc |= s_random_op(c, &rng, value, i);
        if (i % 256 == 0)
            rc |= s_check(c);
    }
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= s_check(c) || !st.expired || !st.rejected || !st.evictions || !st.invalidated;
    free(value);
    ain_l1_destroy(&c);
    return rc;
}

static int s_test_invalidate(void)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, AIN_L1_TINYLFU);
    const char *keys[] = {"msgs/1", "msgs/2", "folders/a", "count"};
    const char *prefixes[] = {"msgs/", "count"};
    int rc = 0;
    for (uint64_t u = 1; u <= 2; u++)
        for (int k = 0; k < 4; k++)
            rc |= s_put(c, u, keys[k], "v", S_FOREVER) != 0;
    rc |= ain_l1_invalidate(c, 1, prefixes, 2) != 3;
    rc |= s_get(c, 1, "msgs/1", 0) || s_get(c, 1, "count", 0) || !s_get(c, 1, "folders/a", 0);
    for (int k = 0; k < 4; k++)
        rc |= !s_get(c, 2, keys[k], 0); /* the other user's keys are untouched */
    rc |= ain_l1_invalidate(c, 2, NULL, 0) != 4;
    for (int k = 0; k < 4; k++)
        rc |= s_get(c, 2, keys[k], 0) != NULL;
    rc |= !s_get(c, 1, "folders/a", 0) || c->users.count != 1; /* user 2's head is gone */
    rc |= ain_l1_invalidate(c, 3, NULL, 0) != 0;
    rc |= ain_l1_invalidate(c, 1, (const char *const[]){"folders/a/b"}, 1) != 0;
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= st.invalidated != 7 || st.entries != 1 || s_check(c);
    ain_l1_destroy(&c);
    return rc;
}

static int s_test_remove_clear(void)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, AIN_L1_TINYLFU);
    int rc = s_put(c, 1, "k", "v", S_FOREVER) != 0;
    rc |= ain_l1_remove(c, 1, "k", 1) != 1 || ain_l1_remove(c, 1, "k", 1) != 0;
    rc |= s_get(c, 1, "k", 0) != NULL || c->users.count != 0 || c->bytes != 0;
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        rc |= s_put(c, (uint64_t)i % 10, key, "value", S_FOREVER) != 0;
    }
    ain_l1_clear(c);
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= st.entries != 0 || st.bytes != 0 || c->users.count != 0 || s_get(c, 3, "k3", 0);
    rc |= s_put(c, 3, "k3", "again", S_FOREVER) != 0 || !s_is(s_get(c, 3, "k3", 0), "again");
    rc |= s_check(c);
    ain_l1_destroy(&c);
    return rc;
}

/* -1 for what can never fit (and the stale value is dropped); exactly the
 * largest entry still fits. */
static int s_test_too_large(void)
{
    ain_l1_t *c = ain_l1_new(64 * 1024, AIN_L1_TINYLFU);
    uint8_t *big = ain_calloc(64 * 1024, 1);
    size_t most = c->entry_max - sizeof(s_entry_t) - 3;
    int rc = s_put(c, 1, "big", "small", S_FOREVER) != 0;
    rc |= ain_l1_put(c, 1, "big", 3, big, 64 * 1024, S_FOREVER, 0, 0, 0) != -1;
    rc |= s_get(c, 1, "big", 0) != NULL;
    rc |= ain_l1_put(c, 1, "big", 3, big, most + 1, S_FOREVER, 0, 0, 0) != -1;
    rc |= ain_l1_put(c, 1, "big", 3, big, most, S_FOREVER, 0, 0, 0) != 0;
    rc |= s_get(c, 1, "big", 0) == NULL || c->bytes != c->entry_max || s_check(c);
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    rc |= st.rejected != 2;
    ain_l1_destroy(&c);
    c = ain_l1_new(4096, AIN_L1_LRU); /* LRU: the whole budget */
    rc |= ain_l1_put(c, 1, "big", 3, big, 4096 - sizeof(s_entry_t) - 3, S_FOREVER, 0, 0, 0) != 0;
    rc |= ain_l1_put(c, 1, "big", 3, big, 4097 - sizeof(s_entry_t) - 3, S_FOREVER, 0, 0, 0) != -1;
    free(big);
    ain_l1_destroy(&c);
    return rc;
}

/* A get, and a put of `len` bytes on a miss: how a caller uses the cache. */
static bool s_access(ain_l1_t *c, const char *prefix, uint32_t n, size_t len)
{
    static const uint8_t value[1024]; /* const: not mutable state */
    char key[16];
    size_t klen = (size_t)snprintf(key, sizeof key, "%s%07u", prefix, (unsigned)n);
    if (ain_l1_get(c, 1, key, klen, 0))
        return true;
    ain_l1_put(c, 1, key, klen, value, len, S_FOREVER, 0, 0, 0);
    return false;
}

/* Admission by frequency: into a full cache of entries read 3 times, a
 * large newcomer (it skips the window) is refused until it is read more
 * often than they are. */
static int s_test_admit(void)
{
    ain_l1_t *c = ain_l1_new(16 * 1024, AIN_L1_TINYLFU);
    for (uint32_t n = 0; n < 60; n++)
        for (int i = 0; i < 3; i++)
            s_access(c, "k", n, 200);
    uint8_t big[4000] = {0};
    int rc = c->bytes + sizeof big < c->capacity; /* full */
    rc |= ain_l1_put(c, 1, "big", 3, big, sizeof big, S_FOREVER, 0, 0, 0) != 1;
    rc |= s_get(c, 1, "big", 0) != NULL;
    for (int i = 0; i < 4; i++)
        s_get(c, 1, "big", 0);
    rc |= ain_l1_put(c, 1, "big", 3, big, sizeof big, S_FOREVER, 0, 0, 0) != 0;
    rc |= s_get(c, 1, "big", 0) == NULL || s_check(c);
    ain_l1_destroy(&c);
    return rc;
}

/* Small values: more entries than the first sketch is wide make it grow,
 * and what it knew of cached entries survives the growth. */
static int s_test_sketch_fit(void)
{
    ain_l1_t *c = ain_l1_new(1024 * 1024, AIN_L1_TINYLFU); /* guess: 1024 entries */
    int rc = ain_sketch_width(c->sketch) != 1024;
    for (int i = 0; i < 5; i++)
        s_access(c, "hot", 0, 16);
    for (uint32_t n = 0; n < 3000; n++)
        s_access(c, "k", n, 16);
    uint64_t hot = s_hash(1, "hot0000000", 10);
    rc |= ain_sketch_width(c->sketch) != 4096 || ain_sketch_estimate(c->sketch, hot) < 5;
    rc |= c->entries.count != 3001 || s_check(c);
    ain_l1_destroy(&c);
    return rc;
}

/* How many of 500 hot entries (read 20 times each) survive a scan of
 * 20000 keys read once, in a cache of about 1000 entries. */
static size_t s_scan_survivors(ain_l1_policy_t policy)
{
    ain_l1_t *c = ain_l1_new(1000 * s_cost(8, 900), policy);
    for (int round = 0; round < 20; round++)
        for (uint32_t n = 0; n < 500; n++)
            s_access(c, "h", n, 900);
    for (uint32_t n = 0; n < 20000; n++)
        s_access(c, "s", n, 900);
    size_t survivors = 0;
    for (uint32_t n = 0; n < 500; n++)
        survivors += s_access(c, "h", n, 900);
    if (s_check(c))
        survivors = SIZE_MAX;
    ain_l1_destroy(&c);
    return survivors;
}

/* `n` accesses to `keys` keys, Zipf(1.0) by rank (inverse CDF lookup). */
static uint32_t *s_zipf_trace(size_t keys, size_t n)
{
    double *cdf = ain_malloc(keys * sizeof *cdf);
    double sum = 0;
    for (size_t i = 0; i < keys; i++)
        cdf[i] = sum += 1.0 / (double)(i + 1);
    uint32_t *trace = ain_malloc(n * sizeof *trace);
    uint64_t rng = 42;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(s_rand(&rng) >> 11) / 9007199254740992.0 * sum; /* [0, sum) */
        size_t lo = 0, hi = keys - 1;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        trace[i] = (uint32_t)lo;
    }
    free(cdf);
    return trace;
}

static double s_hit_rate(ain_l1_policy_t policy, const uint32_t *trace, size_t n, size_t entries,
                         size_t len)
{
    ain_l1_t *c = ain_l1_new(entries * s_cost(8, len), policy);
    for (size_t i = 0; i < n; i++)
        s_access(c, "z", trace[i], len);
    ain_l1_stats_t st;
    ain_l1_stats(c, &st);
    ain_l1_destroy(&c);
    return (double)st.hits / (double)(st.hits + st.misses);
}

/* Zipf(1.0) over 100k keys, cache of 5% of them: TinyLFU well above LRU. */
static int s_test_zipf(bool verbose)
{
    enum { KEYS = 100000, N = 1000000, ENTRIES = KEYS / 20 };
    uint32_t *trace = s_zipf_trace(KEYS, N);
    int rc = 0;
    size_t lens[] = {16, 900};
    for (int i = 0; i < 2; i++) {
        double tinylfu = s_hit_rate(AIN_L1_TINYLFU, trace, N, ENTRIES, lens[i]);
        double lru = s_hit_rate(AIN_L1_LRU, trace, N, ENTRIES, lens[i]);
        if (verbose)
            printf("l1: zipf 1.0, %d keys, %d cached, %zu-byte values: tinylfu %.3f, lru %.3f\n",
                   KEYS, ENTRIES, lens[i], tinylfu, lru);
        rc |= !(tinylfu > lru + 0.05);
    }
    free(trace);
    return rc;
}

int ain_l1_test(bool verbose)
{
    static const struct {
        const char *name;
        int (*test)(void);
    } tests[] = {
        {"basic", s_test_basic},
        {"ttl", s_test_ttl},
        {"invalidate", s_test_invalidate},
        {"remove/clear", s_test_remove_clear},
        {"too large", s_test_too_large},
        {"admission", s_test_admit},
        {"sketch growth", s_test_sketch_fit},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (tests[i].test() != 0) {
            fprintf(stderr, "l1: %s failed\n", tests[i].name);
            return -1;
        }
    }
    if (s_test_bound(AIN_L1_TINYLFU) != 0 || s_test_bound(AIN_L1_LRU) != 0) {
        fprintf(stderr, "l1: byte bound or structure broken under random operations\n");
        return -1;
    }
    size_t hot_tinylfu = s_scan_survivors(AIN_L1_TINYLFU), hot_lru = s_scan_survivors(AIN_L1_LRU);
    if (verbose)
        printf("l1: hot entries surviving a scan: tinylfu %zu/500, lru %zu/500\n", hot_tinylfu,
               hot_lru);
    if (hot_tinylfu < 450 || hot_lru > 50) {
        fprintf(stderr, "l1: scan resistance: tinylfu kept %zu, lru %zu\n", hot_tinylfu, hot_lru);
        return -1;
    }
    if (s_test_zipf(verbose) != 0) {
        fprintf(stderr, "l1: tinylfu does not beat lru on zipf by 0.05\n");
        return -1;
    }
    return 0;
}
