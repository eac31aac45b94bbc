/* mpread.h: a bounded, allocation-free msgpack reader and validator.
 *
 * Why it exists beside msgpack-c: msgpack-c 4.0 trusts the element count in
 * an array or map header and reserves memory for it before reading a single
 * element (5 hostile bytes make it reserve 4 GiB). Everything from outside
 * the process therefore passes ain_mp_check() first, which walks the bytes
 * without allocating and refuses counts that the remaining bytes cannot
 * hold, excessive nesting and excessive element totals. The envelope codec
 * also reads its fixed header with this reader directly, so the hot path
 * allocates nothing. Encoding is left to msgpack-c's packer.
 */
#ifndef AIN_PROTO_MPREAD_H
#define AIN_PROTO_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AIN_MP_NIL,
    AIN_MP_BOOL,
    AIN_MP_UINT,  /* non-negative integer, any encoding */
    AIN_MP_INT,   /* negative integer */
    AIN_MP_FLOAT, /* float32 or float64 */
    AIN_MP_STR,
    AIN_MP_BIN,
    AIN_MP_EXT,
    AIN_MP_ARRAY,
    AIN_MP_MAP,
} ain_mp_kind_t;

typedef struct {
    ain_mp_kind_t kind;
    union {
        bool b;
        uint64_t u;
        int64_t i;
        double f;
    } v;
    const uint8_t *ptr; /* STR/BIN/EXT payload, borrowed from the input */
    uint32_t len;       /* STR/BIN/EXT length, ARRAY/MAP element count */
    int8_t ext_type;    /* EXT only */
} ain_mp_token_t;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} ain_mpread_t;

/* Default limits for ain_mp_check: values nested deeper, or holding more
 * elements in all, are refused. */
#define AIN_MP_MAX_DEPTH 32
#define AIN_MP_MAX_ITEMS 100000

/* Starts reading `len` bytes at `data` (borrowed; must outlive the reader). */
void ain_mpread_init(ain_mpread_t *r, const void *data, size_t len);

/* Reads one token (a scalar, or the header of a string, array or map).
 * Returns 0, or -1 if the bytes are truncated, use the reserved byte 0xc1,
 * or announce a container that the remaining bytes cannot hold. Never
 * allocates. */
int ain_mpread_next(ain_mpread_t *r, ain_mp_token_t *t);

/* Skips one complete value, nested values included, at most `max_depth`
 * containers deep. Returns 0 or -1. */
int ain_mpread_skip(ain_mpread_t *r, int max_depth);

/* Bytes not read yet. */
size_t ain_mpread_left(const ain_mpread_t *r);

/* True if `data` is exactly one well-formed msgpack value, nested at most
 * `max_depth` deep with at most `max_items` values in all. This is the
 * guard to call before handing outside bytes to msgpack-c. */
bool ain_mp_check(const void *data, size_t len, int max_depth, long max_items);

int ain_mpread_test(bool verbose);

#endif
