/* body.h: parsing message bodies (msgpack maps) safely.
 *
 * ain_body_parse() runs the bounded validator (mpread.h) and only then
 * hands the bytes to msgpack-c, so a hostile body cannot make it reserve
 * gigabytes. The getters read fields of a map with strict types: a field of
 * the wrong type is an error, never a silent zero.
 */
#ifndef AIN_PROTO_BODY_H
#define AIN_PROTO_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/status.h"

typedef struct {
    msgpack_unpacked unpacked;
    const msgpack_object *root; /* valid until ain_body_release */
} ain_body_t;

/* Parses one msgpack value from `data` (borrowed only during the call).
 * An empty body parses as an empty map. Returns AIN_STATUS_OK or
 * AIN_STATUS_INVALID. Call ain_body_release afterwards in every case, and
 * never on a body that was not passed here first (it would hold garbage):
 * parse before any early exit that releases. */
ain_status_t ain_body_parse(ain_body_t *body, const void *data, size_t len);

/* Frees what parsing allocated; safe on a body that failed to parse. */
void ain_body_release(ain_body_t *body);

/* The value stored under `key` in `map`, or NULL if `map` is not a map or
 * lacks the key. Borrowed from the body. */
const msgpack_object *ain_mp_get(const msgpack_object *map, const char *key);

/* Typed getters. Return 1 if found with the right type (and *out set),
 * 0 if the key is absent (or nil), -1 if present with the wrong type. */
int ain_mp_get_u64(const msgpack_object *map, const char *key, uint64_t *out);
int ain_mp_get_i64(const msgpack_object *map, const char *key, int64_t *out);
int ain_mp_get_str(const msgpack_object *map, const char *key, const char **ptr, size_t *len);
int ain_mp_get_bin(const msgpack_object *map, const char *key, const uint8_t **ptr, size_t *len);
int ain_mp_get_bool(const msgpack_object *map, const char *key, bool *out);
/* A string copied into out (NUL-terminated): 1 copied, 0 absent or nil (out ""), -1 not a
 * string, `size` bytes or longer, or holding a control character (a bounded line of text from
 * outside: a name, an email, a code). */
int ain_mp_get_text(const msgpack_object *map, const char *key, char *out, size_t size);

/* Packs a string; a shorthand for the packer's two calls. */
void ain_mp_pack_str(msgpack_packer *pk, const char *s);

/* Packs "key": value pairs, the common shapes of reply bodies. */
void ain_mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *value);
void ain_mp_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t value);
void ain_mp_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t value);

int ain_body_test(bool verbose);

#endif
