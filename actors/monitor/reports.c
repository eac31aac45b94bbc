/* reports.c: latest report per process, bounded (see reports.h). */
#include "actors/monitor/reports.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/body.h"
#include "runtime/alloc.h"

typedef struct {
    char key[160]; /* host/role/instance */
    uint8_t *report;
    size_t len;
    int64_t at_ms;
} s_entry_t;

struct _ain_reports_t {
    s_entry_t *entries;
    size_t count, capacity;
};

ain_reports_t *ain_reports_new(size_t capacity)
{
    ain_reports_t *self = AIN_NEW(ain_reports_t);
    self->capacity = capacity ? capacity : 1;
    self->entries = ain_calloc(self->capacity, sizeof(s_entry_t));
    return self;
}

void ain_reports_destroy(ain_reports_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ain_reports_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free(self->entries[i].report);
    free(self->entries);
    free(self);
    *self_p = NULL;
}

/* Builds the key from the report's identity; -1 if it has none. */
static int s_key(const void *report, size_t len, char *key, size_t size)
{
    ain_body_t body;
    const char *host = NULL, *role = NULL;
    size_t hlen = 0, rlen = 0;
    uint64_t instance = 0;
    int rc = -1;
    if (ain_body_parse(&body, report, len) == AIN_STATUS_OK &&
        ain_mp_get_str(body.root, "host", &host, &hlen) == 1 &&
        ain_mp_get_str(body.root, "service", &role, &rlen) == 1 &&
        ain_mp_get_u64(body.root, "instance", &instance) == 1 && ain_mp_get(body.root, "metrics") &&
        ain_mp_get(body.root, "metrics")->type == MSGPACK_OBJECT_MAP) {
        int n = snprintf(key, size, "%.*s/%.*s/%016llx", (int)hlen, host, (int)rlen, role,
                         (unsigned long long)instance);
        rc = n > 0 && (size_t)n < size ? 0 : -1;
    }
    ain_body_release(&body);
    return rc;
}

static s_entry_t *s_find(ain_reports_t *self, const char *key)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->entries[i].key, key) == 0)
            return &self->entries[i];
    return NULL;
}

static s_entry_t *s_oldest(ain_reports_t *self)
{
    s_entry_t *oldest = &self->entries[0];
    for (size_t i = 1; i < self->count; i++)
        if (self->entries[i].at_ms < oldest->at_ms)
            oldest = &self->entries[i];
    return oldest;
}

int ain_reports_put(ain_reports_t *self, const void *report, size_t len, int64_t now_ms)
{
    char key[sizeof((s_entry_t *)0)->key];
    if (s_key(report, len, key, sizeof key) < 0)
        return -1;
    s_entry_t *e = s_find(self, key);
    if (!e && self->count < self->capacity) {
        /* A slot past count may still hold the pointer of an expired entry, freed then. */
        e = &self->entries[self->count++];
        e->report = NULL;
    } else if (!e) {
        e = s_oldest(self);
    }
    free(e->report);
    strcpy(e->key, key);
    e->report = ain_malloc(len);
    memcpy(e->report, report, len);
    e->len = len;
    e->at_ms = now_ms;
    return 0;
}

size_t ain_reports_expire(ain_reports_t *self, int64_t now_ms, int64_t max_age_ms)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < self->count; i++) {
        if (now_ms - self->entries[i].at_ms > max_age_ms) {
            free(self->entries[i].report);
            dropped++;
        } else {
            self->entries[kept++] = self->entries[i];
        }
    }
    self->count = kept;
    return dropped;
}

size_t ain_reports_size(const ain_reports_t *self)
{
    return self->count;
}

static int s_by_key(const void *a, const void *b)
{
    return strcmp(((const s_entry_t *)a)->key, ((const s_entry_t *)b)->key);
}

void ain_reports_pack(const ain_reports_t *self, msgpack_packer *pk, int64_t now_ms,
                      int64_t stale_ms)
{
    qsort(self->entries, self->count, sizeof(s_entry_t), s_by_key);
    msgpack_pack_array(pk, self->count);
    for (size_t i = 0; i < self->count; i++) {
        const s_entry_t *e = &self->entries[i];
        msgpack_pack_map(pk, 3);
        ain_mp_pack_kv_i64(pk, "age_ms", now_ms - e->at_ms);
        ain_mp_pack_str(pk, "stale");
        if (now_ms - e->at_ms > stale_ms)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        ain_mp_pack_str(pk, "report");
        pk->callback(pk->data, (const char *)e->report, e->len); /* already msgpack */
    }
}

/* ---------------------------------------------------------------- selftest */

static size_t s_report(msgpack_sbuffer *sb, const char *host, const char *role, uint64_t inst)
{
    msgpack_packer pk;
    sb->size = 0;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ain_mp_pack_kv_str(&pk, "host", host);
    ain_mp_pack_kv_str(&pk, "service", role);
    ain_mp_pack_kv_u64(&pk, "instance", inst);
    ain_mp_pack_str(&pk, "metrics");
    msgpack_pack_map(&pk, 1);
    ain_mp_pack_kv_u64(&pk, "requests", 1);
    return sb->size;
}

int ain_reports_test(bool verbose)
{
    ain_reports_t *r = ain_reports_new(2);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = 0;
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h1", "echo", 1), 100) != 0;
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h1", "echo", 1), 200) != 0; /* replaces */
    rc |= ain_reports_size(r) != 1;
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h1", "broker", 2), 150) != 0;
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h2", "edge", 3), 300) != 0; /* evicts */
    rc |= ain_reports_size(r) != 2;
    rc |= ain_reports_put(r, "\x81\xa1k\xc3", 4, 400) != -1; /* not a report */
    rc |= ain_reports_expire(r, 1000, 750) != 1 || ain_reports_size(r) != 1;
    /* A process that comes after one expired takes its slot (no double free). */
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h3", "edge", 4), 900) != 0;
    rc |= ain_reports_expire(r, 1000, 200) != 1 || ain_reports_size(r) != 1;
    rc |= ain_reports_put(r, sb.data, s_report(&sb, "h3", "edge", 4), 950) != 0;
    msgpack_packer pk;
    sb.size = 0;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ain_reports_pack(r, &pk, 1000, 500);
    ain_body_t body;
    rc |= ain_body_parse(&body, sb.data, sb.size) != AIN_STATUS_OK ||
          body.root->type != MSGPACK_OBJECT_ARRAY || body.root->via.array.size != 1;
    ain_body_release(&body);
    msgpack_sbuffer_destroy(&sb);
    ain_reports_destroy(&r);
    if (rc)
        return -1;
    if (verbose)
        printf("reports: bounded, replaced, expired\n");
    return 0;
}
