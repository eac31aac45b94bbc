/* metrics.c: fixed-capacity metrics registry. Entries never move once
 * registered, so handles stay valid while other threads register more. */
#include "runtime/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"

typedef struct {
    char name[AIN_METRIC_NAME_MAX];
    ain_metric_t metric;
} s_entry_t;

struct _ain_metrics_t {
    pthread_mutex_t lock;
    atomic_int count;
    s_entry_t entries[AIN_METRICS_MAX];
    ain_metric_t overflow; /* where refused registrations land */
    ain_metric_t *refused;
};

ain_metrics_t *ain_metrics_new(void)
{
    ain_metrics_t *self = AIN_NEW(ain_metrics_t);
    pthread_mutex_init(&self->lock, NULL);
    self->refused = ain_metrics_counter(self, "metrics.refused");
    return self;
}

void ain_metrics_destroy(ain_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->lock);
    free(*self_p);
    *self_p = NULL;
}

static bool s_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= AIN_METRIC_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'))
            return false;
    return true;
}

static ain_metric_t *s_register(ain_metrics_t *self, const char *name)
{
    ain_metric_t *found = NULL;
    pthread_mutex_lock(&self->lock);
    int count = atomic_load(&self->count);
    for (int i = 0; i < count && !found; i++)
        if (strcmp(self->entries[i].name, name) == 0)
            found = &self->entries[i].metric;
    if (!found && s_name_ok(name) && count < AIN_METRICS_MAX) {
        s_entry_t *e = &self->entries[count];
        strcpy(e->name, name);
        atomic_init(&e->metric.value, 0);
        atomic_store(&self->count, count + 1); /* publish after the entry is written */
        found = &e->metric;
    }
    pthread_mutex_unlock(&self->lock);
    if (!found) {
        if (self->refused)
            ain_metric_inc(self->refused);
        found = &self->overflow;
    }
    return found;
}

ain_metric_t *ain_metrics_counter(ain_metrics_t *self, const char *name)
{
    return s_register(self, name);
}

ain_metric_t *ain_metrics_gauge(ain_metrics_t *self, const char *name)
{
    return s_register(self, name);
}

int ain_metrics_size(const ain_metrics_t *self)
{
    return atomic_load(&self->count);
}

int64_t ain_metrics_value(const ain_metrics_t *self, const char *name)
{
    int count = atomic_load(&self->count);
    for (int i = 0; i < count; i++)
        if (strcmp(self->entries[i].name, name) == 0)
            return ain_metric_get(&self->entries[i].metric);
    return -1;
}

void ain_metrics_pack(const ain_metrics_t *self, msgpack_packer *pk)
{
    int count = atomic_load(&self->count);
    msgpack_pack_map(pk, (size_t)count);
    for (int i = 0; i < count; i++) {
        size_t n = strlen(self->entries[i].name);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, self->entries[i].name, n);
        msgpack_pack_int64(pk, ain_metric_get(&self->entries[i].metric));
    }
}

int ain_metrics_test(bool verbose)
{
    ain_metrics_t *m = ain_metrics_new();
    ain_metric_t *a = ain_metrics_counter(m, "requests");
    ain_metric_add(a, 2);
    ain_metric_inc(ain_metrics_counter(m, "requests"));
    ain_metric_set(ain_metrics_gauge(m, "queue.depth"), 7);
    int rc = ain_metrics_value(m, "requests") != 3 || ain_metrics_value(m, "queue.depth") != 7 ||
             ain_metrics_value(m, "nope") != -1;
    /* Bad names and overflow land in the overflow slot and are counted. */
    ain_metric_t *bad = ain_metrics_counter(m, "Bad Name");
    rc |= bad == a || ain_metrics_value(m, "metrics.refused") != 1;
    char name[32];
    for (int i = 0; i < AIN_METRICS_MAX + 10; i++) {
        snprintf(name, sizeof name, "m%d", i);
        ain_metrics_counter(m, name);
    }
    rc |= ain_metrics_size(m) != AIN_METRICS_MAX;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ain_metrics_pack(m, &pk);
    rc |= sb.size < 10;
    msgpack_sbuffer_destroy(&sb);
    ain_metrics_destroy(&m);
    if (rc)
        return -1;
    if (verbose)
        printf("metrics: registry bounded at %d\n", AIN_METRICS_MAX);
    return 0;
}
