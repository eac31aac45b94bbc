/* mpjson.c: msgpack to JSON (see mpjson.h). */
#include "runtime/mpjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proto/body.h"
#include "runtime/alloc.h"

static json_t *s_base64(const uint8_t *p, size_t n)
{
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = ain_malloc(4 * ((n + 2) / 3) + 1), *w = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *w++ = table[v >> 18 & 63];
        *w++ = table[v >> 12 & 63];
        *w++ = i + 1 < n ? table[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? table[v & 63] : '=';
    }
    *w = '\0';
    json_t *s = json_string(out);
    free(out);
    return s;
}

static json_t *s_map(const msgpack_object_map *map)
{
    json_t *obj = json_object();
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        char key[32];
        const char *name = NULL;
        char *owned = NULL;
        if (k->type == MSGPACK_OBJECT_STR)
            name = owned = ain_strndup(k->via.str.ptr, k->via.str.size);
        else if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            snprintf(key, sizeof key, "%" PRIu64, k->via.u64), name = key;
        else if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            snprintf(key, sizeof key, "%" PRId64, k->via.i64), name = key;
        if (name)
            json_object_set_new(obj, name, ain_mpjson_from_object(&map->ptr[i].val));
        free(owned);
    }
    return obj;
}

json_t *ain_mpjson_from_object(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) { /* beyond JSON's signed integers: exact as text */
            char digits[24];
            snprintf(digits, sizeof digits, "%" PRIu64, o->via.u64);
            return json_string(digits);
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return s_base64((const uint8_t *)o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *arr = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(arr, ain_mpjson_from_object(&o->via.array.ptr[i]));
        return arr;
    }
    case MSGPACK_OBJECT_MAP:
        return s_map(&o->via.map);
    default:
        return json_null();
    }
}

json_t *ain_mpjson_from_body(const void *data, size_t len)
{
    ain_body_t body;
    json_t *out = NULL;
    if (ain_body_parse(&body, data, len) == AIN_STATUS_OK)
        out = ain_mpjson_from_object(body.root);
    ain_body_release(&body);
    return out;
}

void ain_mpjson_pack(msgpack_packer *pk, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        msgpack_pack_map(pk, (uint32_t)json_object_size(v));
        json_object_foreach(v, key, item)
        {
            ain_mp_pack_str(pk, key);
            ain_mpjson_pack(pk, item);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        msgpack_pack_array(pk, (uint32_t)json_array_size(v));
        json_array_foreach(v, i, item) ain_mpjson_pack(pk, item);
        break;
    }
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(v));
        msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

int ain_mpjson_test(bool verbose)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    ain_mp_pack_kv_str(&pk, "name", "echo");
    ain_mp_pack_kv_i64(&pk, "n", -3);
    ain_mp_pack_str(&pk, "bin");
    msgpack_pack_bin_with_body(&pk, "hi!", 3);
    ain_mp_pack_str(&pk, "list");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    json_t *j = ain_mpjson_from_body(sb.data, sb.size);
    char *text = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    int rc =
        !text || strcmp(text, "{\"bin\":\"aGkh\",\"list\":[true,null],\"n\":-3,\"name\":\"echo\"}");
    if (rc)
        fprintf(stderr, "mpjson: got %s\n", text ? text : "NULL");
    free(text);
    json_decref(j);
    rc |= ain_mpjson_from_body("\xc1", 1) != NULL;
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return -1;
    if (verbose)
        printf("mpjson: msgpack to JSON\n");
    return 0;
}
