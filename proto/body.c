/* body.c: validated body parsing and typed map getters. */
#include "proto/body.h"

#include <stdio.h>
#include <string.h>

#include "proto/mpread.h"

ain_status_t ain_body_parse(ain_body_t *body, const void *data, size_t len)
{
    static const msgpack_object s_empty_map = {.type = MSGPACK_OBJECT_MAP};
    msgpack_unpacked_init(&body->unpacked);
    body->root = NULL;
    if (len == 0) {
        body->root = &s_empty_map;
        return AIN_STATUS_OK;
    }
    if (!ain_mp_check(data, len, AIN_MP_MAX_DEPTH, AIN_MP_MAX_ITEMS))
        return AIN_STATUS_INVALID;
    size_t off = 0;
    if (msgpack_unpack_next(&body->unpacked, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len)
        return AIN_STATUS_INVALID;
    body->root = &body->unpacked.data;
    return AIN_STATUS_OK;
}

void ain_body_release(ain_body_t *body)
{
    msgpack_unpacked_destroy(&body->unpacked);
    body->root = NULL;
}

const msgpack_object *ain_mp_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* Shared prologue of the typed getters: 0 if absent or nil. */
static const msgpack_object *s_present(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = ain_mp_get(map, key);
    return v && v->type != MSGPACK_OBJECT_NIL ? v : NULL;
}

int ain_mp_get_u64(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *v = s_present(map, key);
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = v->via.u64;
    return 1;
}

int ain_mp_get_i64(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *v = s_present(map, key);
    if (!v)
        return 0;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = v->via.i64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        *out = (int64_t)v->via.u64;
    else
        return -1;
    return 1;
}

int ain_mp_get_str(const msgpack_object *map, const char *key, const char **ptr, size_t *len)
{
    const msgpack_object *v = s_present(map, key);
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_STR)
        return -1;
    *ptr = v->via.str.ptr;
    *len = v->via.str.size;
    return 1;
}

int ain_mp_get_text(const msgpack_object *map, const char *key, char *out, size_t size)
{
    const char *p = NULL;
    size_t n = 0;
    out[0] = '\0';
    int rc = ain_mp_get_str(map, key, &p, &n);
    if (rc <= 0)
        return rc;
    if (n >= size)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

int ain_mp_get_bin(const msgpack_object *map, const char *key, const uint8_t **ptr, size_t *len)
{
    const msgpack_object *v = s_present(map, key);
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_BIN)
        return -1;
    *ptr = (const uint8_t *)v->via.bin.ptr;
    *len = v->via.bin.size;
    return 1;
}

int ain_mp_get_bool(const msgpack_object *map, const char *key, bool *out)
{
    const msgpack_object *v = s_present(map, key);
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return -1;
    *out = v->via.boolean;
    return 1;
}

void ain_mp_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void ain_mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *value)
{
    ain_mp_pack_str(pk, key);
    ain_mp_pack_str(pk, value);
}

void ain_mp_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t value)
{
    ain_mp_pack_str(pk, key);
    msgpack_pack_uint64(pk, value);
}

void ain_mp_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t value)
{
    ain_mp_pack_str(pk, key);
    msgpack_pack_int64(pk, value);
}

int ain_body_test(bool verbose)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ain_mp_pack_kv_u64(&pk, "delay_ms", 250);
    ain_mp_pack_kv_str(&pk, "name", "echo");
    ain_mp_pack_kv_i64(&pk, "neg", -5);
    ain_mp_pack_str(&pk, "nothing");
    msgpack_pack_nil(&pk);

    ain_body_t body;
    uint64_t u = 0;
    int64_t i = 0;
    const char *s;
    size_t n;
    int rc = ain_body_parse(&body, sb.data, sb.size) != AIN_STATUS_OK;
    rc |= ain_mp_get_u64(body.root, "delay_ms", &u) != 1 || u != 250;
    rc |= ain_mp_get_str(body.root, "name", &s, &n) != 1 || n != 4 || memcmp(s, "echo", 4);
    rc |= ain_mp_get_i64(body.root, "neg", &i) != 1 || i != -5;
    rc |= ain_mp_get_u64(body.root, "neg", &u) != -1;    /* wrong type */
    rc |= ain_mp_get_u64(body.root, "nothing", &u) != 0; /* nil = absent */
    rc |= ain_mp_get_u64(body.root, "missing", &u) != 0;
    bool b;
    rc |= ain_mp_get_bool(body.root, "name", &b) != -1;
    ain_body_release(&body);
    rc |= ain_body_parse(&body, "\xdd\x10\x00\x00\x00", 5) != AIN_STATUS_INVALID;
    ain_body_release(&body);
    rc |= ain_body_parse(&body, "", 0) != AIN_STATUS_OK || body.root->type != MSGPACK_OBJECT_MAP;
    ain_body_release(&body);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return -1;
    if (verbose)
        printf("body: typed getters\n");
    return 0;
}
