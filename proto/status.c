/* status.c: names and HTTP mapping of the status vocabulary.
 *
 * One table, indexed by status, holds both the name and the HTTP code, so a
 * new status cannot get one without the other.
 */
#include "proto/status.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int http;
} s_status_row_t;

static const s_status_row_t s_rows[AIN_STATUS_COUNT] = {
    [AIN_STATUS_OK] = {"OK", 200},
    [AIN_STATUS_ERROR] = {"ERROR", 500},
    [AIN_STATUS_AGAIN] = {"AGAIN", 503},
    [AIN_STATUS_BUSY] = {"BUSY", 503},
    [AIN_STATUS_DECLINED] = {"DECLINED", 429},
    [AIN_STATUS_NOT_FOUND] = {"NOT_FOUND", 404},
    [AIN_STATUS_INVALID] = {"INVALID", 400},
    [AIN_STATUS_DENIED] = {"DENIED", 403},
    [AIN_STATUS_TIMEOUT] = {"TIMEOUT", 504},
    [AIN_STATUS_UNAVAILABLE] = {"UNAVAILABLE", 503},
    [AIN_STATUS_UNAUTHENTICATED] = {"UNAUTHENTICATED", 401},
    [AIN_STATUS_CONFLICT] = {"CONFLICT", 409},
    [AIN_STATUS_TOO_LARGE] = {"TOO_LARGE", 413},
};

bool ain_status_valid(int status)
{
    return status >= 0 && status < AIN_STATUS_COUNT;
}

const char *ain_status_name(int status)
{
    return ain_status_valid(status) ? s_rows[status].name : "UNKNOWN";
}

int ain_status_http(int status)
{
    return ain_status_valid(status) ? s_rows[status].http : 500;
}

int ain_status_test(bool verbose)
{
    for (int s = 0; s < AIN_STATUS_COUNT; s++) {
        if (!s_rows[s].name || s_rows[s].http < 200) {
            fprintf(stderr, "status %d has no table row\n", s);
            return -1;
        }
    }
    if (strcmp(ain_status_name(AIN_STATUS_BUSY), "BUSY") != 0 ||
        ain_status_http(AIN_STATUS_INVALID) != 400 || ain_status_http(-1) != 500 ||
        strcmp(ain_status_name(999), "UNKNOWN") != 0 || ain_status_valid(AIN_STATUS_COUNT))
        return -1;
    if (verbose)
        printf("status: %d statuses mapped\n", AIN_STATUS_COUNT);
    return 0;
}
