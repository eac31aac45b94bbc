/* proc.h: what every role in a process shares, read-only once built.
 *
 * A process (the bundle, or one `ainbox broker|edge|actor` process) has one
 * ain_proc_t: the ZeroMQ context, the configuration, its host name and a
 * random instance id, its start time, and the endpoints its roles connect
 * to. In the bundle these are inproc:// endpoints unique to that bundle, so
 * two bundles can live in one test process; elsewhere they come from the
 * configuration. Nothing in it changes after start-up.
 */
#ifndef AIN_RUNTIME_PROC_H
#define AIN_RUNTIME_PROC_H

#include <stdint.h>

#include "runtime/config.h"
#include "runtime/log.h"

typedef struct _ain_proc_t ain_proc_t;

/* Creates the process context over `cfg` (borrowed: must outlive it), with
 * connect endpoints taken from the configuration. The ZeroMQ context is
 * CZMQ's (zsys), so zactor pipes and our raw sockets can share inproc://.
 * Caller owns the result. */
ain_proc_t *ain_proc_new(const ain_config_t *cfg);

/* Destroys the context (not the ZeroMQ context: zsys owns that). */
void ain_proc_destroy(ain_proc_t **self_p);

/* Points the roles at other endpoints (the bundle's inproc ones). Strings
 * are copied. Call before any role starts. */
void ain_proc_set_endpoints(ain_proc_t *self, const char *broker, const char *bus_in,
                            const char *bus_out);

void *ain_proc_zmq(const ain_proc_t *self);
const ain_config_t *ain_proc_config(const ain_proc_t *self);
const char *ain_proc_host(const ain_proc_t *self);
uint64_t ain_proc_instance(const ain_proc_t *self);
int64_t ain_proc_uptime_ms(const ain_proc_t *self);
const char *ain_proc_broker(const ain_proc_t *self);
const char *ain_proc_bus_in(const ain_proc_t *self);
const char *ain_proc_bus_out(const ain_proc_t *self);

/* A new logger for `component` at the configured LOG_LEVEL. */
ain_log_t *ain_proc_logger(const ain_proc_t *self, const char *component);

/* A random 64-bit value from the kernel's generator (never 0). */
uint64_t ain_random_u64(void);

/* Resident set size of this process in bytes, or 0 if unknown. */
int64_t ain_proc_rss_bytes(void);

#endif
