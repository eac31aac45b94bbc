/* l1.h: the cache actor's in-process layer (L1).
 *
 * Bounded in bytes, not entries. Admission by W-TinyLFU (Einziger,
 * Friedman, Manes, "TinyLFU: A Highly Efficient Cache Admission Policy"):
 * a small LRU window (1% of the bytes) in front of a segmented LRU main
 * area (20% probation, 80% protected); a candidate leaving the window
 * enters the main area only if a count-min sketch of recent accesses says
 * it is used more often than the main area's eviction victim. On skewed
 * (Zipf) access this keeps far more hits than plain LRU; AIN_L1_LRU exists
 * to measure exactly that.
 *
 * Every entry belongs to a user and expires at its own time. A user's
 * entries can be dropped by key prefix (invalidation) without scanning the
 * whole cache. Each entry keeps what probabilistic early expiration
 * (XFetch) needs: how long its value took to compute.
 *
 * Pure logic, single-threaded (the actor's thread); no sockets, no clock:
 * callers pass the time.
 */
#ifndef AIN_ACTORS_CACHE_L1_H
#define AIN_ACTORS_CACHE_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _ain_l1_t ain_l1_t;

typedef enum {
    AIN_L1_TINYLFU, /* the policy we run */
    AIN_L1_LRU,     /* plain LRU over the same bytes, for comparison only */
} ain_l1_policy_t;

/* A cached value. Borrowed from the cache: valid until the next call that
 * changes the cache (put, invalidate, remove, clear, or a get). */
typedef struct {
    const uint8_t *data;
    size_t len;
    int64_t expires_ms; /* absolute, in the caller's clock */
    int64_t delta_ms;   /* how long computing it took (XFetch) */
    uint64_t etag;
} ain_l1_value_t;

typedef struct {
    uint64_t hits, misses, expired; /* expired: found but past expires_ms (counted as misses too) */
    uint64_t puts, rejected;        /* rejected: not admitted, or larger than the cache */
    uint64_t evictions, invalidated;
    uint64_t entries, bytes, capacity;
} ain_l1_stats_t;

/* A cache of at most `capacity_bytes` (keys, values and per-entry
 * overhead all count). Caller owns it. */
ain_l1_t *ain_l1_new(size_t capacity_bytes, ain_l1_policy_t policy);
void ain_l1_destroy(ain_l1_t **self_p);

/* The live value for (user, key) at `now_ms`, or NULL (absent or expired;
 * an expired entry is removed). Records the access for admission either
 * way. */
const ain_l1_value_t *ain_l1_get(ain_l1_t *self, uint64_t user, const char *key, size_t key_len,
                                 int64_t now_ms);

/* Stores a copy of `data` for (user, key), replacing any older value.
 * Returns 0 if stored, 1 if the admission policy refused it (the entry it
 * would have displaced is worth more), -1 if it can never fit. */
int ain_l1_put(ain_l1_t *self, uint64_t user, const char *key, size_t key_len, const uint8_t *data,
               size_t len, int64_t expires_ms, int64_t delta_ms, uint64_t etag, int64_t now_ms);

/* Drops `user`'s entries whose key starts with one of `prefixes`, or all
 * of that user's entries when `nprefixes` is 0. Returns how many. Costs
 * the number of that user's entries, not the size of the cache. */
size_t ain_l1_invalidate(ain_l1_t *self, uint64_t user, const char *const *prefixes,
                         size_t nprefixes);

/* Drops one entry; returns 1 if it was there. */
int ain_l1_remove(ain_l1_t *self, uint64_t user, const char *key, size_t key_len);

/* Drops everything. */
void ain_l1_clear(ain_l1_t *self);

void ain_l1_stats(const ain_l1_t *self, ain_l1_stats_t *out);

int ain_l1_test(bool verbose);

#endif
