/* sketch.h: a count-min sketch of recent access frequency, with aging.
 *
 * The frequency half of TinyLFU admission (see l1.h): 4 rows of 4-bit
 * saturating counters (0..15), each row a power of two wide. An increment
 * raises only the row counters that hold the current minimum ("conservative
 * update"), which keeps estimates of rare items low. After 10 x width
 * increments every counter is halved, so the sketch follows a changing
 * workload instead of remembering the past forever. Like any count-min
 * sketch it errs one way only: an estimate is never below the item's
 * (halved, saturated) true count, only above it when items collide.
 *
 * It stores no keys: callers pass a well-mixed 64-bit hash of the item and
 * each row derives its own index from it. Pure logic, single-threaded.
 */
#ifndef AIN_ACTORS_CACHE_SKETCH_H
#define AIN_ACTORS_CACHE_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _ain_sketch_t ain_sketch_t;

#define AIN_SKETCH_MAX_WIDTH ((size_t)1 << 22)

/* A sketch sized for about `expected_items` distinct hot items: each row
 * is the next power of two at or above that, at least 1024 and at most
 * AIN_SKETCH_MAX_WIDTH counters (2 bytes per column in all). Caller owns
 * it. */
ain_sketch_t *ain_sketch_new(size_t expected_items);
void ain_sketch_destroy(ain_sketch_t **self_p);

/* Records one access to the item with this hash; may halve every counter
 * (aging), which costs one pass over the table. */
void ain_sketch_add(ain_sketch_t *self, uint64_t hash);

/* The estimated recent access count of the item, 0..15. */
unsigned ain_sketch_estimate(const ain_sketch_t *self, uint64_t hash);

/* Counters per row (a power of two). */
size_t ain_sketch_width(const ain_sketch_t *self);

int ain_sketch_test(bool verbose);

#endif
