/* local.c: GCRA state in this process's memory (see local.h).
 */
#include "actors/ratelimit/local.h"

#include <czmq.h>

#include "runtime/alloc.h"

struct _ain_rl_local_t {
    zhashx_t *tat; /* key -> int64_t TAT, owned */
    size_t max;
};

static void s_free_value(void **item)
{
    free(*item);
    *item = NULL;
}

ain_rl_local_t *ain_rl_local_new(size_t max)
{
    ain_rl_local_t *self = AIN_NEW(ain_rl_local_t);
    self->tat = zhashx_new();
    zhashx_set_destructor(self->tat, s_free_value);
    self->max = max;
    return self;
}

void ain_rl_local_destroy(ain_rl_local_t **self_p)
{
    if (!*self_p)
        return;
    zhashx_destroy(&(*self_p)->tat);
    free(*self_p);
    *self_p = NULL;
}

/* The slot of `key`, created (at `now`) if absent and there is room. */
static int64_t *s_slot(ain_rl_local_t *self, const char *key, int64_t now)
{
    int64_t *slot = zhashx_lookup(self->tat, key);
    if (slot)
        return slot;
    if (zhashx_size(self->tat) >= self->max) {
        ain_rl_local_sweep(self, now);
        if (zhashx_size(self->tat) >= self->max)
            return NULL;
    }
    slot = AIN_NEW(int64_t);
    *slot = now;
    zhashx_insert(self->tat, key, slot);
    return slot;
}

int ain_rl_local_take(ain_rl_local_t *self, const char *key, int64_t now, int64_t t_us,
                      int64_t tau_us, int64_t cost, int64_t *retry_us, int64_t *tat)
{
    *retry_us = 0;
    *tat = now;
    int64_t *slot = s_slot(self, key, now);
    if (!slot)
        return -1;
    *tat = *slot > now ? *slot : now;
    int64_t next = *tat + cost * t_us;
    if (next - tau_us > now) {
        *retry_us = next - tau_us - now;
        return 0;
    }
    *slot = *tat = next;
    return 1;
}

void ain_rl_local_note(ain_rl_local_t *self, const char *key, int64_t tat)
{
    int64_t *slot = s_slot(self, key, tat);
    if (slot && *slot < tat)
        *slot = tat;
}

bool ain_rl_local_refuses(ain_rl_local_t *self, const char *key, int64_t now, int64_t t_us,
                          int64_t tau_us, int64_t cost, int64_t *retry_us)
{
    int64_t *slot = zhashx_lookup(self->tat, key);
    if (!slot || *slot <= now)
        return false;
    int64_t due = *slot + cost * t_us - tau_us;
    if (due <= now)
        return false;
    *retry_us = due - now;
    return true;
}

void ain_rl_local_sweep(ain_rl_local_t *self, int64_t now)
{
    zlistx_t *dead = zlistx_new();
    zlistx_set_destructor(dead, s_free_value);
    for (int64_t *tat = zhashx_first(self->tat); tat; tat = zhashx_next(self->tat))
        if (*tat <= now)
            zlistx_add_end(dead, ain_strdup(zhashx_cursor(self->tat)));
    for (const char *key = zlistx_first(dead); key; key = zlistx_next(dead))
        zhashx_delete(self->tat, key);
    zlistx_destroy(&dead);
}

void ain_rl_local_clear(ain_rl_local_t *self)
{
    zhashx_purge(self->tat);
}

size_t ain_rl_local_size(const ain_rl_local_t *self)
{
    return zhashx_size(self->tat);
}

/* ------------------------------------------------------------ selftest */

static uint64_t s_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The bound the policies rely on, on random schedules: with
 * T = ceil(W / (L - b)) and tolerance b * T, no closed window of length W
 * admits more than L units, whatever the arrivals and costs. One million
 * decisions over 200 random policies. (With T one microsecond short of
 * that, it finds a window over the limit.) Returns 0 or -1. */
static int s_property(bool verbose)
{
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    enum { S_POLICIES = 200, S_ARRIVALS = 5000 };
    int64_t *at = malloc(S_ARRIVALS * sizeof *at), *units = malloc(S_ARRIVALS * sizeof *units);
    int rc = 0;
    for (int p = 0; p < S_POLICIES && rc == 0; p++) {
        int64_t limit = 2 + (int64_t)(s_next(&rng) % 5000);
        int64_t window = 1000 + (int64_t)(s_next(&rng) % 10000000); /* µs */
        int64_t burst = 1 + (int64_t)(s_next(&rng) % (uint64_t)(limit - 1));
        int64_t t = (window + (limit - burst) - 1) / (limit - burst);
        ain_rl_local_t *l = ain_rl_local_new(4);
        int64_t now = 0, retry, tat;
        int n = 0;
        /* Arrivals a little faster than the rate on average, in bursts. */
        for (int i = 0; i < S_ARRIVALS; i++) {
            now += (int64_t)(s_next(&rng) % (uint64_t)(2 * t + 1)) / (i % 7 == 0 ? 1 : 4);
            int64_t cost = 1 + (int64_t)(s_next(&rng) % (uint64_t)(burst < 8 ? burst : 8));
            if (ain_rl_local_take(l, "k", now, t, burst * t, cost, &retry, &tat) == 1) {
                at[n] = now;
                units[n++] = cost;
            }
        }
        ain_rl_local_destroy(&l);
        int64_t in_window = 0, worst = 0;
        for (int i = 0, j = 0; i < n; i++) {
            in_window += units[i];
            while (at[j] < at[i] - window)
                in_window -= units[j++];
            if (in_window > worst)
                worst = in_window;
        }
        if (worst > limit) {
            fprintf(stderr, "policy %lld/%lld us burst %lld admitted %lld in a window\n",
                    (long long)limit, (long long)window, (long long)burst, (long long)worst);
            rc = -1;
        } else if (verbose && p < 5) {
            printf("  %5lld units / %8lld us, burst %5lld: worst window %lld\n", (long long)limit,
                   (long long)window, (long long)burst, (long long)worst);
        }
    }
    free(at);
    free(units);
    return rc;
}

int ain_rl_local_test(bool verbose)
{
    if (s_property(verbose) < 0)
        return -1;
    int rc = -1;
    ain_rl_local_t *l = ain_rl_local_new(3);
    int64_t retry, tat;
    /* T = 10, burst 5 (tau 50): five at once, then one per 10 µs. */
    for (int i = 0; i < 5; i++)
        if (ain_rl_local_take(l, "k", 1000, 10, 50, 1, &retry, &tat) != 1)
            goto done;
    if (ain_rl_local_take(l, "k", 1000, 10, 50, 1, &retry, &tat) != 0 || retry != 10)
        goto done;
    if (ain_rl_local_take(l, "k", 1010, 10, 50, 1, &retry, &tat) != 1)
        goto done;
    /* A cost larger than what is free waits for all of it. */
    if (ain_rl_local_take(l, "k", 1010, 10, 50, 3, &retry, &tat) != 0 || retry != 30)
        goto done;
    /* The deny cache answers like the bucket for any cost. */
    ain_rl_local_t *deny = ain_rl_local_new(2);
    ain_rl_local_note(deny, "k", 2000);
    ain_rl_local_note(deny, "k", 1500); /* never moves back */
    bool ok = ain_rl_local_refuses(deny, "k", 1900, 10, 50, 1, &retry) && retry == 60 &&
              !ain_rl_local_refuses(deny, "k", 1960, 10, 50, 1, &retry) &&
              ain_rl_local_refuses(deny, "k", 1960, 10, 50, 2, &retry) && retry == 10 &&
              !ain_rl_local_refuses(deny, "other", 0, 10, 50, 1, &retry);
    ain_rl_local_sweep(deny, 2000);
    ok = ok && ain_rl_local_size(deny) == 0;
    ain_rl_local_destroy(&deny);
    if (!ok)
        goto done;
    /* Bounded: a full table of live keys refuses; expired keys make room. */
    if (ain_rl_local_take(l, "a", 1010, 10, 50, 5, &retry, &tat) != 1 ||
        ain_rl_local_take(l, "b", 1010, 10, 50, 5, &retry, &tat) != 1 ||
        ain_rl_local_take(l, "c", 1010, 10, 50, 1, &retry, &tat) != -1 ||
        ain_rl_local_take(l, "c", 2000, 10, 50, 1, &retry, &tat) != 1 || ain_rl_local_size(l) != 1)
        goto done;
    rc = 0;
done:
    ain_rl_local_destroy(&l);
    if (rc < 0)
        fprintf(stderr, "ain_rl_local_test failed\n");
    return rc;
}
