/* reports.h: the monitor's table of the latest metrics report from each
 * process, bounded.
 *
 * Keyed by (host, role, instance). Holds at most `capacity` processes; a
 * new process beyond that evicts the one heard from longest ago. Reports
 * older than the expiry are dropped by ain_reports_expire. Pure logic, no
 * sockets: the monitor actor feeds it from the bus.
 */
#ifndef AIN_ACTORS_MONITOR_REPORTS_H
#define AIN_ACTORS_MONITOR_REPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

typedef struct _ain_reports_t ain_reports_t;

ain_reports_t *ain_reports_new(size_t capacity);
void ain_reports_destroy(ain_reports_t **self_p);

/* Stores `report` (a METRICS_REPORT body: {service, host, pid, instance,
 * uptime_ms, metrics}, copied) received at `now_ms`. Returns 0, or -1 if
 * the body is not such a report (nothing stored). */
int ain_reports_put(ain_reports_t *self, const void *report, size_t len, int64_t now_ms);

/* Drops reports older than `max_age_ms`. Returns how many. */
size_t ain_reports_expire(ain_reports_t *self, int64_t now_ms, int64_t max_age_ms);

size_t ain_reports_size(const ain_reports_t *self);

/* Packs an array of {age_ms, stale, report} (stale: older than
 * `stale_ms`), oldest role first within each host. */
void ain_reports_pack(const ain_reports_t *self, msgpack_packer *pk, int64_t now_ms,
                      int64_t stale_ms);

int ain_reports_test(bool verbose);

#endif
