/* envelope.c: encode (msgpack-c packer) and strict decode (mpread). */
#include "proto/envelope.h"

#include <stdio.h>
#include <string.h>

#include "proto/mpread.h"
#include "proto/msgtype.h"

enum { S_FIELDS = 8 };

void ain_envelope_pack(const ain_envelope_t *env, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, S_FIELDS);
    msgpack_pack_uint8(&pk, AIN_PROTO_VERSION);
    msgpack_pack_uint16(&pk, env->type);
    msgpack_pack_uint64(&pk, env->corr);
    msgpack_pack_uint64(&pk, env->user);
    msgpack_pack_int64(&pk, env->deadline_ms);
    msgpack_pack_uint64(&pk, env->trace);
    msgpack_pack_uint8(&pk, (uint8_t)env->status);
    msgpack_pack_bin(&pk, env->body_len);
    if (env->body_len)
        msgpack_pack_bin_body(&pk, env->body, env->body_len);
}

/* Reads one unsigned integer field no larger than `max`. */
static int s_uint(ain_mpread_t *r, uint64_t max, uint64_t *out)
{
    ain_mp_token_t t;
    if (ain_mpread_next(r, &t) < 0 || t.kind != AIN_MP_UINT || t.v.u > max)
        return -1;
    *out = t.v.u;
    return 0;
}

static ain_status_t s_fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return AIN_STATUS_INVALID;
}

ain_status_t ain_envelope_decode(const void *data, size_t len, size_t max_bytes,
                                 ain_envelope_t *env, const char **why)
{
    if (len > max_bytes || len > AIN_ENVELOPE_MAX_BYTES) {
        if (why)
            *why = "envelope too large";
        return AIN_STATUS_TOO_LARGE;
    }
    ain_mpread_t r;
    ain_mp_token_t t;
    uint64_t version, type, status, deadline;
    ain_mpread_init(&r, data, len);
    if (ain_mpread_next(&r, &t) < 0 || t.kind != AIN_MP_ARRAY || t.len != S_FIELDS)
        return s_fail(why, "not an array of 8 fields");
    if (s_uint(&r, UINT8_MAX, &version) < 0)
        return s_fail(why, "bad version field");
    if (version != AIN_PROTO_VERSION)
        return s_fail(why, "unsupported protocol version");
    if (s_uint(&r, UINT16_MAX, &type) < 0)
        return s_fail(why, "bad type field");
    if (!ain_msgtype_lookup((unsigned)type))
        return s_fail(why, "unknown message type");
    if (s_uint(&r, UINT64_MAX, &env->corr) < 0)
        return s_fail(why, "bad corr field");
    if (s_uint(&r, UINT64_MAX, &env->user) < 0)
        return s_fail(why, "bad user field");
    if (s_uint(&r, INT64_MAX, &deadline) < 0)
        return s_fail(why, "bad deadline field");
    if (s_uint(&r, UINT64_MAX, &env->trace) < 0)
        return s_fail(why, "bad trace field");
    if (s_uint(&r, UINT8_MAX, &status) < 0 || !ain_status_valid((int)status))
        return s_fail(why, "bad status field");
    if (ain_mpread_next(&r, &t) < 0 || t.kind != AIN_MP_BIN)
        return s_fail(why, "body is not bin");
    if (ain_mpread_left(&r) != 0)
        return s_fail(why, "trailing bytes after envelope");
    env->type = (uint16_t)type;
    env->deadline_ms = (int64_t)deadline;
    env->status = (ain_status_t)status;
    env->body = t.ptr;
    env->body_len = t.len;
    return AIN_STATUS_OK;
}

ain_status_t ain_envelope_check_request(const ain_envelope_t *env, const char **why)
{
    const ain_msgtype_t *type = ain_msgtype_lookup(env->type);
    if (!type || (type->flags & AIN_MSGF_EVENT))
        return s_fail(why, "type is not a request");
    if (env->deadline_ms <= 0)
        return s_fail(why, "request without deadline");
    if (env->status != AIN_STATUS_OK)
        return s_fail(why, "request with a status");
    return AIN_STATUS_OK;
}

void ain_envelope_reply_to(const ain_envelope_t *request, ain_status_t status, const void *body,
                           size_t body_len, ain_envelope_t *reply)
{
    reply->type = request->type;
    reply->corr = request->corr;
    reply->user = request->user;
    reply->deadline_ms = 0;
    reply->trace = request->trace;
    reply->status = status;
    reply->body = body;
    reply->body_len = body_len;
}

/* ---------------------------------------------------------------- selftest */

static int s_roundtrip(void)
{
    const char body[] = "\x81\xa1k\xc3";
    ain_envelope_t in = {AIN_MSG_ECHO,          77, 42, 1700000000123LL, 0xfeedULL, AIN_STATUS_OK,
                         (const uint8_t *)body, 4};
    ain_envelope_t out;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ain_envelope_pack(&in, &sb);
    const char *why = NULL;
    int rc = ain_envelope_decode(sb.data, sb.size, 1024, &out, &why) != AIN_STATUS_OK ||
             out.type != in.type || out.corr != 77 || out.user != 42 ||
             out.deadline_ms != in.deadline_ms || out.trace != 0xfeed ||
             out.status != AIN_STATUS_OK || out.body_len != 4 || memcmp(out.body, body, 4) != 0 ||
             ain_envelope_check_request(&out, &why) != AIN_STATUS_OK;
    /* Every strict prefix is refused, never accepted or crashed on. */
    for (size_t cut = 0; cut < sb.size && !rc; cut++)
        rc |= ain_envelope_decode(sb.data, cut, 1024, &out, &why) == AIN_STATUS_OK;
    rc |= ain_envelope_decode(sb.data, sb.size, sb.size - 1, &out, &why) != AIN_STATUS_TOO_LARGE;
    msgpack_sbuffer_destroy(&sb);
    return rc ? -1 : 0;
}

/* Encodes an array whose fields are given as msgpack by the caller. */
static ain_status_t s_decode_hex(const char *hex)
{
    uint8_t buf[128];
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &buf[i]);
    ain_envelope_t env;
    const char *why;
    return ain_envelope_decode(buf, n, sizeof buf, &env, &why);
}

int ain_envelope_test(bool verbose)
{
    if (s_roundtrip() < 0)
        return -1;
    struct {
        const char *hex;
        ain_status_t want;
    } cases[] = {
        {"98014001020304"
         "00c400",
         AIN_STATUS_OK}, /* ECHO, empty body */
        {"98024001020304"
         "00c400",
         AIN_STATUS_INVALID}, /* version 2 */
        {"9801cd270f01020304"
         "00c400",
         AIN_STATUS_INVALID}, /* type 9999 unknown */
        {"9801400102ff0304"
         "00c400",
         AIN_STATUS_INVALID}, /* negative deadline */
        {"98014001020304"
         "63c400",
         AIN_STATUS_INVALID}, /* status 99 */
        {"98014001020304"
         "00a0",
         AIN_STATUS_INVALID}, /* body is a str */
        {"98014001020304"
         "00c400c0",
         AIN_STATUS_INVALID}, /* trailing byte */
        {"97014001020304"
         "00",
         AIN_STATUS_INVALID},               /* seven fields */
        {"dd10000000", AIN_STATUS_INVALID}, /* hostile array32 */
        {"9801a14001020304"
         "00c400",
         AIN_STATUS_INVALID}, /* type is a str */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (s_decode_hex(cases[i].hex) != cases[i].want) {
            fprintf(stderr, "envelope: case %zu (%s) wrong\n", i, cases[i].hex);
            return -1;
        }
    }
    ain_envelope_t req = {AIN_MSG_USER_EVENT, 1, 0, 5, 0, AIN_STATUS_OK, NULL, 0};
    const char *why;
    if (ain_envelope_check_request(&req, &why) == AIN_STATUS_OK)
        return -1; /* events are not requests */
    req.type = AIN_MSG_PING;
    req.deadline_ms = 0;
    if (ain_envelope_check_request(&req, &why) == AIN_STATUS_OK)
        return -1; /* requests need a deadline */
    if (verbose)
        printf("envelope: round trip and %zu hostile cases\n", sizeof cases / sizeof cases[0]);
    return 0;
}
