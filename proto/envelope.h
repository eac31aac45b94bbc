/* envelope.h: the message envelope every request, reply and event carries.
 *
 * On the wire an envelope is one msgpack array of exactly eight elements:
 *
 *   [version, type, corr, user, deadline_ms, trace, status, body]
 *
 *   version      uint   AIN_PROTO_VERSION
 *   type         uint   message type id (proto/msgtypes.def), <= 65535
 *   corr         uint   correlation id chosen by the requester, echoed back
 *   user         uint   authenticated user id, 0 = none (stamped by the edge)
 *   deadline_ms  int    absolute deadline, Unix epoch milliseconds; required
 *                       (> 0) on requests, 0 on replies and events. Hosts
 *                       are expected to keep clocks in sync (NTP).
 *   trace        uint   trace id, kept along a request's whole path
 *   status       uint   proto/status.h; AIN_STATUS_OK on requests
 *   body         bin    type-specific payload (usually a msgpack map)
 *
 * A fixed positional layout keeps decoding allocation-free: the broker reads
 * it for every request. Decoding is strict: anything else is refused with a
 * reason, never guessed at.
 */
#ifndef AIN_PROTO_ENVELOPE_H
#define AIN_PROTO_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/status.h"

#define AIN_PROTO_VERSION 1

/* Upper bound on an encoded envelope; callers may pass a smaller one. */
#define AIN_ENVELOPE_MAX_BYTES (16u * 1024 * 1024)

typedef struct {
    uint16_t type;
    uint64_t corr;
    uint64_t user;
    int64_t deadline_ms;
    uint64_t trace;
    ain_status_t status;
    const uint8_t *body; /* borrowed: from the decoded input, or the caller's */
    size_t body_len;
} ain_envelope_t;

/* Appends the encoded envelope to `out` (which the caller owns). */
void ain_envelope_pack(const ain_envelope_t *env, msgpack_sbuffer *out);

/* Decodes `data` (borrowed; env->body points into it). Returns
 * AIN_STATUS_OK, AIN_STATUS_TOO_LARGE (len > max_bytes) or
 * AIN_STATUS_INVALID, with a static reason in *why when not OK. Checks
 * shape, element types, version, a known type id and a known status; never
 * allocates. It does not check that a request has a deadline: that is
 * ain_envelope_check_request's job. */
ain_status_t ain_envelope_decode(const void *data, size_t len, size_t max_bytes,
                                 ain_envelope_t *env, const char **why);

/* Checks what a request must have beyond a well-formed envelope: a type
 * that is a request (not an event), a deadline, status OK. Returns
 * AIN_STATUS_OK or AIN_STATUS_INVALID with a reason. */
ain_status_t ain_envelope_check_request(const ain_envelope_t *env, const char **why);

/* Fills `reply` as the answer to `request`: same type, corr, user and
 * trace, no deadline, the given status and body (borrowed). */
void ain_envelope_reply_to(const ain_envelope_t *request, ain_status_t status, const void *body,
                           size_t body_len, ain_envelope_t *reply);

int ain_envelope_test(bool verbose);

#endif
