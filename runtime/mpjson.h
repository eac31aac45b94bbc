/* mpjson.h: msgpack values as JSON (jansson), for the edge's answers and
 * ainbox-admin --json; and JSON as msgpack, for actors that hold JSON
 * (a provider's answers, jobs' payloads) and answer in msgpack.
 *
 * Maps become objects (string keys; integer keys are written in decimal;
 * other keys are skipped), arrays arrays, binary data base64 strings,
 * extension values null, unsigned integers above INT64_MAX decimal strings
 * (JSON libraries hold signed 64-bit integers; clamping would lie).
 * Depth is bounded by the validated input.
 */
#ifndef AIN_RUNTIME_MPJSON_H
#define AIN_RUNTIME_MPJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <msgpack.h>

/* A new JSON value for `o` (caller owns it: json_decref). Never NULL. */
json_t *ain_mpjson_from_object(const msgpack_object *o);

/* Parses a msgpack body (validated first) into JSON. Returns a new value,
 * or NULL if the body is not valid msgpack. An empty body is {}. */
json_t *ain_mpjson_from_body(const void *data, size_t len);

/* The other way: packs a JSON value as msgpack (objects as maps, integers as
 * ints, reals as floats, null as nil). Depth is bounded by the JSON text's
 * own parse (jansson's). */
void ain_mpjson_pack(msgpack_packer *pk, json_t *value);

int ain_mpjson_test(bool verbose);

#endif
