/* local.h: GCRA state in this process's memory.
 *
 * Two uses in the rate-limit actor: the deny cache (what Redis said about a
 * key over its limit, so a caller already refused costs no Redis call until
 * its next unit is due) and the fallback for the user API limit while Redis
 * is down (a per-process share of the limit). Each table maps a key to its
 * theoretical arrival time (TAT, µs) and holds at most `max` keys; entries
 * whose TAT has passed carry no information and are swept.
 */
#ifndef AIN_ACTORS_RATELIMIT_LOCAL_H
#define AIN_ACTORS_RATELIMIT_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _ain_rl_local_t ain_rl_local_t;

ain_rl_local_t *ain_rl_local_new(size_t max);
void ain_rl_local_destroy(ain_rl_local_t **self_p);

/* A GCRA decision for `cost` units of a bucket with emission interval T
 * and tolerance `tau` (µs) at time `now` (µs): 1 admitted (the TAT moves
 * on), 0 refused (*retry_us = wait until it would be admitted), -1 refused
 * because the table is full of live keys. *tat is the key's TAT after. */
int ain_rl_local_take(ain_rl_local_t *self, const char *key, int64_t now, int64_t t_us,
                      int64_t tau_us, int64_t cost, int64_t *retry_us, int64_t *tat);

/* Records that `key`'s TAT is at least `tat` (never moves it back). */
void ain_rl_local_note(ain_rl_local_t *self, const char *key, int64_t tat);

/* True if `cost` units of `key` would surely be refused at `now`, with
 * *retry_us the wait; false if this table cannot tell. */
bool ain_rl_local_refuses(ain_rl_local_t *self, const char *key, int64_t now, int64_t t_us,
                          int64_t tau_us, int64_t cost, int64_t *retry_us);

/* Drops every key whose TAT is at or before `now`. */
void ain_rl_local_sweep(ain_rl_local_t *self, int64_t now);
void ain_rl_local_clear(ain_rl_local_t *self);
size_t ain_rl_local_size(const ain_rl_local_t *self);

int ain_rl_local_test(bool verbose);

#endif
