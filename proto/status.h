/* status.h: the one result vocabulary, shared by code and the wire.
 *
 * A status travels in every reply envelope and is what handlers, the broker
 * and the edge speak. Values are part of the wire protocol: never renumber,
 * only append. ain_status_http() is the single place that maps a status to
 * an HTTP code.
 */
#ifndef AIN_PROTO_STATUS_H
#define AIN_PROTO_STATUS_H

#include <stdbool.h>

typedef enum {
    AIN_STATUS_OK = 0,               /* done */
    AIN_STATUS_ERROR = 1,            /* our fault; details are in the log */
    AIN_STATUS_AGAIN = 2,            /* transient; retry later */
    AIN_STATUS_BUSY = 3,             /* refused by back-pressure (full queue) */
    AIN_STATUS_DECLINED = 4,         /* refused by policy (rate limit) */
    AIN_STATUS_NOT_FOUND = 5,        /* no such object or service */
    AIN_STATUS_INVALID = 6,          /* malformed or unacceptable input */
    AIN_STATUS_DENIED = 7,           /* authenticated, but not allowed */
    AIN_STATUS_TIMEOUT = 8,          /* deadline passed before an answer */
    AIN_STATUS_UNAVAILABLE = 9,      /* no live worker, or it died mid-request */
    AIN_STATUS_UNAUTHENTICATED = 10, /* who is asking is unknown */
    AIN_STATUS_CONFLICT = 11,        /* state changed underneath the request */
    AIN_STATUS_TOO_LARGE = 12,       /* a size limit was exceeded */
} ain_status_t;

#define AIN_STATUS_COUNT 13

/* Name of a status ("OK", "BUSY", ...); "UNKNOWN" for values outside the
 * table. Returns a static string. */
const char *ain_status_name(int status);

/* True if the value is a status this build knows. */
bool ain_status_valid(int status);

/* The HTTP status code that answers a request ending with this status. */
int ain_status_http(int status);

int ain_status_test(bool verbose);

#endif
