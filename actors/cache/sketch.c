/* sketch.c: 4-bit count-min sketch with aging (see sketch.h).
 *
 * Sixteen counters are packed in each 64-bit word, row after row, so that
 * halving is one shift and mask per word. Row indexes come from the
 * caller's hash by one multiply per row with a distinct odd seed, folding
 * the well-mixed high half into the low bits the mask keeps (the scheme
 * Caffeine's FrequencySketch uses).
 */
#include "actors/cache/sketch.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime/alloc.h"

#define S_ROWS      4
#define S_MAX_COUNT 15u
#define S_MIN_WIDTH ((size_t)1 << 10)
#define S_SAMPLE    10 /* halve after S_SAMPLE x width increments */

static const uint64_t s_seeds[S_ROWS] = {0xc3a5c85c97cb3127ULL, 0xb492b66fbe98f273ULL,
                                         0x9ae16a3b2f90404fULL, 0xcbf29ce484222325ULL};

struct _ain_sketch_t {
    uint64_t *table; /* S_ROWS x width nibbles */
    size_t width;    /* power of two */
    size_t size;     /* increments since the last halving (halved with it) */
    size_t sample;   /* S_SAMPLE x width */
};

ain_sketch_t *ain_sketch_new(size_t expected_items)
{
    ain_sketch_t *self = AIN_NEW(ain_sketch_t);
    self->width = S_MIN_WIDTH;
    while (self->width < expected_items && self->width < AIN_SKETCH_MAX_WIDTH)
        self->width <<= 1;
    self->table = ain_calloc(S_ROWS * self->width / 16, sizeof(uint64_t));
    self->sample = S_SAMPLE * self->width;
    return self;
}

void ain_sketch_destroy(ain_sketch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->table);
    free(*self_p);
    *self_p = NULL;
}

/* The counter's position in the whole table for `row`. */
static size_t s_index(const ain_sketch_t *self, uint64_t hash, int row)
{
    uint64_t h = (hash + s_seeds[row]) * s_seeds[row];
    h += h >> 32;
    return (size_t)row * self->width + (size_t)(h & (self->width - 1));
}

static unsigned s_get(const ain_sketch_t *self, size_t at)
{
    return (unsigned)(self->table[at >> 4] >> ((at & 15) << 2)) & 0xfu;
}

/* Halves every counter: the sketch forgets half of what it saw. */
static void s_age(ain_sketch_t *self)
{
    size_t words = S_ROWS * self->width / 16;
    for (size_t i = 0; i < words; i++)
        self->table[i] = (self->table[i] >> 1) & 0x7777777777777777ULL;
    self->size /= 2;
}

void ain_sketch_add(ain_sketch_t *self, uint64_t hash)
{
    size_t at[S_ROWS];
    unsigned min = S_MAX_COUNT;
    for (int r = 0; r < S_ROWS; r++) {
        at[r] = s_index(self, hash, r);
        unsigned c = s_get(self, at[r]);
        min = c < min ? c : min;
    }
    if (min == S_MAX_COUNT)
        return; /* saturated: nothing to add, and nothing to age for */
    for (int r = 0; r < S_ROWS; r++)
        if (s_get(self, at[r]) == min)
            self->table[at[r] >> 4] += 1ULL << ((at[r] & 15) << 2);
    if (++self->size >= self->sample)
        s_age(self);
}

unsigned ain_sketch_estimate(const ain_sketch_t *self, uint64_t hash)
{
    unsigned min = S_MAX_COUNT;
    for (int r = 0; r < S_ROWS; r++) {
        unsigned c = s_get(self, s_index(self, hash, r));
        min = c < min ? c : min;
    }
    return min;
}

size_t ain_sketch_width(const ain_sketch_t *self)
{
    return self->width;
}

/* ---------------------------------------------------------------- selftest */

/* Distinct, well-mixed test hashes (splitmix64 of the item number). */
static uint64_t s_item(uint64_t n)
{
    uint64_t z = n * 0x9e3779b97f4a7c15ULL + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Sizing, exact small counts, saturation, and halving. */
static int s_test_counts(void)
{
    int rc = 0;
    ain_sketch_t *sk = ain_sketch_new(0);
    rc |= ain_sketch_width(sk) != 1024;
    rc |= ain_sketch_estimate(sk, s_item(1)) != 0;
    for (int i = 0; i < 5; i++)
        ain_sketch_add(sk, s_item(1));
    rc |= ain_sketch_estimate(sk, s_item(1)) != 5;
    for (int i = 0; i < 100; i++)
        ain_sketch_add(sk, s_item(2));
    rc |= ain_sketch_estimate(sk, s_item(2)) != 15;
    /* 5 + 15 increments so far; distinct items until the sample is reached */
    for (uint64_t n = 100; n < 100 + 10 * 1024 - 20; n++)
        ain_sketch_add(sk, s_item(n));
    /* item 2 shows the halving exactly; item 1 may have gained from collisions */
    rc |= ain_sketch_estimate(sk, s_item(2)) != 7 || ain_sketch_estimate(sk, s_item(1)) < 2;
    ain_sketch_destroy(&sk);
    ain_sketch_destroy(&sk); /* safe twice */
    sk = ain_sketch_new(5000);
    rc |= ain_sketch_width(sk) != 8192;
    ain_sketch_destroy(&sk);
    sk = ain_sketch_new(SIZE_MAX);
    rc |= ain_sketch_width(sk) != AIN_SKETCH_MAX_WIDTH;
    ain_sketch_destroy(&sk);
    return rc;
}

/* One-sided error: 1000 items with counts 0..7 (under one sample, so no
 * halving) are never underestimated, and rarely overestimated. */
static int s_test_error(bool verbose)
{
    ain_sketch_t *sk = ain_sketch_new(1024);
    for (uint64_t n = 0; n < 1000; n++)
        for (uint64_t k = 0; k < n % 8; k++)
            ain_sketch_add(sk, s_item(n));
    int rc = 0;
    size_t over = 0;
    for (uint64_t n = 0; n < 1000; n++) {
        unsigned est = ain_sketch_estimate(sk, s_item(n));
        rc |= est < n % 8;
        over += est - n % 8;
    }
    if (verbose)
        printf("sketch: mean overestimate %.3f over 1000 items in 1024 columns\n",
               (double)over / 1000);
    rc |= over > 1000 / 4;
    ain_sketch_destroy(&sk);
    return rc;
}

int ain_sketch_test(bool verbose)
{
    if (s_test_counts() != 0) {
        fprintf(stderr, "sketch: counts, saturation or halving wrong\n");
        return -1;
    }
    if (s_test_error(verbose) != 0) {
        fprintf(stderr, "sketch: estimates off\n");
        return -1;
    }
    if (verbose)
        printf("sketch: counts, saturates at 15, halves after 10 x width\n");
    return 0;
}
