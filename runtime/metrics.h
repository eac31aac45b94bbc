/* metrics.h: a bounded registry of named counters and gauges.
 *
 * Each actor (and the broker and the edge) owns one registry. Metrics are
 * registered once, by name, and updated through the returned handle with
 * relaxed atomics, so the edge's many threads may share one registry and
 * TSan stays quiet. The registry holds at most AIN_METRICS_MAX entries;
 * beyond that, registration returns a shared overflow slot and counts the
 * refusal, so a bug cannot grow it without bound. The whole registry packs
 * into a msgpack map {name: value} for the bus and the STATS reply.
 */
#ifndef AIN_RUNTIME_METRICS_H
#define AIN_RUNTIME_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>

#define AIN_METRICS_MAX     256
#define AIN_METRIC_NAME_MAX 64

typedef struct {
    atomic_int_fast64_t value;
} ain_metric_t;

typedef struct _ain_metrics_t ain_metrics_t;

ain_metrics_t *ain_metrics_new(void);
void ain_metrics_destroy(ain_metrics_t **self_p);

/* Registers a counter (only grows) or gauge (set to a level) named `name`
 * ("requests", "queue.depth": lowercase, digits, '.', '_'), or returns the
 * existing one of that name. The handle lives as long as the registry.
 * Thread-safe; may take a lock, so register at start-up, not per event. */
ain_metric_t *ain_metrics_counter(ain_metrics_t *self, const char *name);
ain_metric_t *ain_metrics_gauge(ain_metrics_t *self, const char *name);

static inline void ain_metric_add(ain_metric_t *m, int64_t n)
{
    atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

static inline void ain_metric_inc(ain_metric_t *m)
{
    ain_metric_add(m, 1);
}

static inline void ain_metric_set(ain_metric_t *m, int64_t v)
{
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

static inline int64_t ain_metric_get(const ain_metric_t *m)
{
    return atomic_load_explicit(&m->value, memory_order_relaxed);
}

/* Number of metrics registered. */
int ain_metrics_size(const ain_metrics_t *self);

/* The value of metric `name`, or -1 if there is none. */
int64_t ain_metrics_value(const ain_metrics_t *self, const char *name);

/* Packs the registry as a msgpack map {name: int}. */
void ain_metrics_pack(const ain_metrics_t *self, msgpack_packer *pk);

int ain_metrics_test(bool verbose);

#endif
