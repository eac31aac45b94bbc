/* eventid.c: monotonic event ids (see eventid.h). */
#include "actors/events/eventid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ain_eventid_next(ain_eventid_t *gen, int64_t now_ms, char buf[AIN_EVENTID_MAX])
{
    if (now_ms > gen->last_ms) {
        gen->last_ms = now_ms;
        gen->seq = 0;
    } else {
        gen->seq++;
    }
    snprintf(buf, AIN_EVENTID_MAX, "%" PRId64 "-%" PRIu64, gen->last_ms, gen->seq);
}

/* Splits "ms-seq"; returns 0 or -1. */
static int s_parse(const char *id, uint64_t *ms, uint64_t *seq)
{
    char *end;
    *ms = strtoull(id, &end, 10);
    if (end == id || *end != '-')
        return -1;
    const char *rest = end + 1;
    *seq = strtoull(rest, &end, 10);
    return end == rest || *end != '\0' ? -1 : 0;
}

int ain_eventid_compare(const char *a, const char *b)
{
    uint64_t ams = 0, aseq = 0, bms = 0, bseq = 0; /* GCC -O3 cannot see s_parse sets them */
    int va = s_parse(a, &ams, &aseq) == 0, vb = s_parse(b, &bms, &bseq) == 0;
    if (!va || !vb)
        return va - vb;
    if (ams != bms)
        return ams < bms ? -1 : 1;
    return aseq < bseq ? -1 : aseq > bseq ? 1 : 0;
}

int ain_eventid_test(bool verbose)
{
    ain_eventid_t gen = {0, 0};
    char a[AIN_EVENTID_MAX], b[AIN_EVENTID_MAX], c[AIN_EVENTID_MAX];
    ain_eventid_next(&gen, 1000, a);
    ain_eventid_next(&gen, 1000, b);
    ain_eventid_next(&gen, 900, c); /* the clock stepped back */
    if (strcmp(a, "1000-0") || strcmp(b, "1000-1") || strcmp(c, "1000-2"))
        return -1;
    if (ain_eventid_compare(a, b) >= 0 || ain_eventid_compare(c, b) <= 0 ||
        ain_eventid_compare("999-5", "1000-0") >= 0 || ain_eventid_compare(a, a) != 0 ||
        ain_eventid_compare("x", a) >= 0)
        return -1;
    if (verbose)
        printf("eventid: monotonic ids\n");
    return 0;
}
