/* mpread.c: bounded msgpack token reader (see mpread.h for why).
 *
 * Format reference: the msgpack specification (github.com/msgpack/msgpack,
 * spec.md). All multi-byte numbers are big-endian.
 */
#include "proto/mpread.h"

#include <stdio.h>
#include <string.h>

#include <msgpack.h>

void ain_mpread_init(ain_mpread_t *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
}

size_t ain_mpread_left(const ain_mpread_t *r)
{
    return (size_t)(r->end - r->p);
}

/* Reads an n-byte big-endian unsigned number; -1 if truncated. */
static int s_be(ain_mpread_t *r, int n, uint64_t *out)
{
    if (ain_mpread_left(r) < (size_t)n)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | r->p[i];
    r->p += n;
    *out = v;
    return 0;
}

/* A payload of `len` bytes (string, binary, extension). */
static int s_payload(ain_mpread_t *r, ain_mp_token_t *t, ain_mp_kind_t kind, uint64_t len)
{
    if (len > ain_mpread_left(r))
        return -1;
    t->kind = kind;
    t->ptr = r->p;
    t->len = (uint32_t)len;
    r->p += len;
    return 0;
}

/* A container header: each element needs at least one byte (two per map
 * entry), so a count the remaining bytes cannot hold is a lie. */
static int s_container(ain_mpread_t *r, ain_mp_token_t *t, ain_mp_kind_t kind, uint64_t count)
{
    uint64_t min_bytes = kind == AIN_MP_MAP ? count * 2 : count;
    if (min_bytes > ain_mpread_left(r))
        return -1;
    t->kind = kind;
    t->len = (uint32_t)count;
    return 0;
}

static int s_ext(ain_mpread_t *r, ain_mp_token_t *t, uint64_t len)
{
    uint64_t type;
    if (s_be(r, 1, &type) < 0)
        return -1;
    t->ext_type = (int8_t)(uint8_t)type;
    return s_payload(r, t, AIN_MP_EXT, len);
}

static int s_signed(ain_mp_token_t *t, int64_t v)
{
    if (v >= 0) {
        t->kind = AIN_MP_UINT;
        t->v.u = (uint64_t)v;
    } else {
        t->kind = AIN_MP_INT;
        t->v.i = v;
    }
    return 0;
}

/* Tokens with a one-byte type tag in 0xc0..0xdf. */
static int s_tagged(ain_mpread_t *r, ain_mp_token_t *t, uint8_t tag)
{
    uint64_t n;
    switch (tag) {
    case 0xc0:
        t->kind = AIN_MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        t->kind = AIN_MP_BOOL;
        t->v.b = tag == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6: /* bin 8/16/32 */
        return s_be(r, 1 << (tag - 0xc4), &n) < 0 ? -1 : s_payload(r, t, AIN_MP_BIN, n);
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32 */
        return s_be(r, 1 << (tag - 0xc7), &n) < 0 ? -1 : s_ext(r, t, n);
    case 0xca: { /* float 32 */
        float f;
        uint32_t bits;
        if (s_be(r, 4, &n) < 0)
            return -1;
        bits = (uint32_t)n;
        memcpy(&f, &bits, sizeof f);
        t->kind = AIN_MP_FLOAT;
        t->v.f = f;
        return 0;
    }
    case 0xcb: /* float 64 */
        if (s_be(r, 8, &n) < 0)
            return -1;
        t->kind = AIN_MP_FLOAT;
        memcpy(&t->v.f, &n, sizeof t->v.f);
        return 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: /* uint 8/16/32/64 */
        if (s_be(r, 1 << (tag - 0xcc), &n) < 0)
            return -1;
        t->kind = AIN_MP_UINT;
        t->v.u = n;
        return 0;
    case 0xd0:
        return s_be(r, 1, &n) < 0 ? -1 : s_signed(t, (int8_t)n);
    case 0xd1:
        return s_be(r, 2, &n) < 0 ? -1 : s_signed(t, (int16_t)n);
    case 0xd2:
        return s_be(r, 4, &n) < 0 ? -1 : s_signed(t, (int32_t)n);
    case 0xd3:
        return s_be(r, 8, &n) < 0 ? -1 : s_signed(t, (int64_t)n);
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext 1..16 */
        return s_ext(r, t, 1u << (tag - 0xd4));
    case 0xd9:
    case 0xda:
    case 0xdb: /* str 8/16/32 */
        return s_be(r, 1 << (tag - 0xd9), &n) < 0 ? -1 : s_payload(r, t, AIN_MP_STR, n);
    case 0xdc:
    case 0xdd: /* array 16/32 */
        return s_be(r, 2 << (tag - 0xdc), &n) < 0 ? -1 : s_container(r, t, AIN_MP_ARRAY, n);
    case 0xde:
    case 0xdf: /* map 16/32 */
        return s_be(r, 2 << (tag - 0xde), &n) < 0 ? -1 : s_container(r, t, AIN_MP_MAP, n);
    default: /* 0xc1 is reserved and never valid */
        return -1;
    }
}

int ain_mpread_next(ain_mpread_t *r, ain_mp_token_t *t)
{
    if (r->p >= r->end)
        return -1;
    uint8_t b = *r->p++;
    t->ptr = NULL;
    t->len = 0;
    if (b <= 0x7f) { /* positive fixint */
        t->kind = AIN_MP_UINT;
        t->v.u = b;
        return 0;
    }
    if (b >= 0xe0) /* negative fixint */
        return s_signed(t, (int8_t)b);
    if (b <= 0x8f)
        return s_container(r, t, AIN_MP_MAP, b & 0x0f);
    if (b <= 0x9f)
        return s_container(r, t, AIN_MP_ARRAY, b & 0x0f);
    if (b <= 0xbf)
        return s_payload(r, t, AIN_MP_STR, b & 0x1f);
    return s_tagged(r, t, b);
}

/* Walks one value iteratively: `pending[d]` counts the values still to read
 * at depth d, so nesting costs no C stack. `items` counts down the budget. */
static int s_walk(ain_mpread_t *r, int max_depth, long *items)
{
    uint64_t pending[AIN_MP_MAX_DEPTH + 1];
    int depth = 0;
    if (max_depth > AIN_MP_MAX_DEPTH)
        max_depth = AIN_MP_MAX_DEPTH;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        ain_mp_token_t t;
        if (ain_mpread_next(r, &t) < 0 || --*items < 0)
            return -1;
        if (t.kind == AIN_MP_ARRAY || t.kind == AIN_MP_MAP) {
            if (depth + 1 > max_depth)
                return -1;
            pending[++depth] = t.kind == AIN_MP_MAP ? 2 * (uint64_t)t.len : t.len;
        }
    }
    return 0;
}

int ain_mpread_skip(ain_mpread_t *r, int max_depth)
{
    long items = AIN_MP_MAX_ITEMS;
    return s_walk(r, max_depth, &items);
}

bool ain_mp_check(const void *data, size_t len, int max_depth, long max_items)
{
    ain_mpread_t r;
    ain_mpread_init(&r, data, len);
    return s_walk(&r, max_depth, &max_items) == 0 && ain_mpread_left(&r) == 0;
}

/* ---------------------------------------------------------------- selftest */

static bool s_check_hex(const char *hex, bool expect)
{
    uint8_t buf[64];
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &buf[i]);
    bool got = ain_mp_check(buf, n, 8, 1000);
    if (got != expect)
        fprintf(stderr, "mpread: %s expected %s\n", hex, expect ? "valid" : "invalid");
    return got == expect;
}

int ain_mpread_test(bool verbose)
{
    /* Values packed by msgpack-c itself must read back. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, -123456789012LL);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_bin_with_body(&pk, "xyz", 3);

    ain_mpread_t r;
    ain_mp_token_t t;
    int rc = 0;
    ain_mpread_init(&r, sb.data, sb.size);
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_MAP || t.len != 2;
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_STR || t.len != 1 || t.ptr[0] != 'n';
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_INT || t.v.i != -123456789012LL;
    rc |= ain_mpread_skip(&r, 4) != 0; /* key "a" */
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_ARRAY || t.len != 3;
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_UINT || t.v.u != UINT64_MAX;
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_FLOAT || t.v.f != 2.5;
    rc |= ain_mpread_next(&r, &t) || t.kind != AIN_MP_BIN || t.len != 3 ||
          memcmp(t.ptr, "xyz", 3) != 0;
    rc |= ain_mpread_left(&r) != 0;
    rc |= !ain_mp_check(sb.data, sb.size, 8, 100);
    rc |= ain_mp_check(sb.data, sb.size, 1, 100);     /* too deep */
    rc |= ain_mp_check(sb.data, sb.size, 8, 5);       /* too many items */
    rc |= ain_mp_check(sb.data, sb.size - 1, 8, 100); /* truncated */
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        fprintf(stderr, "mpread: round trip failed\n");
        return -1;
    }

    bool ok = true;
    ok &= s_check_hex("dd10000000", false);           /* array32 of 2^28: the 4 GiB trap */
    ok &= s_check_hex("df0000ffff00", false);         /* map32 with too few bytes */
    ok &= s_check_hex("c1", false);                   /* reserved byte */
    ok &= s_check_hex("c0c0", false);                 /* trailing bytes */
    ok &= s_check_hex("c6ffffffff00", false);         /* bin32 longer than input */
    ok &= s_check_hex("919191919191919191c0", false); /* nine levels deep */
    ok &= s_check_hex("9191919191919191c0", true);    /* eight is allowed */
    ok &= s_check_hex("d40102", true);                /* fixext1 */
    ok &= s_check_hex("", false);
    ok &= s_check_hex("81a16bc3", true); /* {"k": true} */
    if (!ok)
        return -1;
    if (verbose)
        printf("mpread: hostile headers refused\n");
    return 0;
}
