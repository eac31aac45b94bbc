/* eventid.h: ids for user events, "<milliseconds>-<sequence>".
 *
 * Strictly increasing per generator even if the wall clock steps back (the
 * last millisecond is kept until the clock passes it), and shaped like
 * Redis stream ids. Events get their ids from the log in Redis; these are
 * for events published while Redis is down (events.c). Pure logic.
 */
#ifndef AIN_ACTORS_EVENTS_EVENTID_H
#define AIN_ACTORS_EVENTS_EVENTID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t last_ms;
    uint64_t seq;
} ain_eventid_t;

#define AIN_EVENTID_MAX 48

/* Writes the next id for wall time `now_ms` into buf (NUL-terminated). */
void ain_eventid_next(ain_eventid_t *gen, int64_t now_ms, char buf[AIN_EVENTID_MAX]);

/* Compares two ids: <0, 0, >0; malformed ids sort first. */
int ain_eventid_compare(const char *a, const char *b);

int ain_eventid_test(bool verbose);

#endif
