/* sdnotify.h: the service manager's notification protocol (systemd's sd_notify), without
 * libsystemd.
 *
 * A process started by a unit of Type=notify tells the manager it is ready (READY=1), that it
 * is stopping (STOPPING=1), and, with WatchdogSec=, that it is still alive (WATCHDOG=1), each
 * as one datagram on the unix socket named by $NOTIFY_SOCKET (a path, or '@' for the abstract
 * namespace). Without $NOTIFY_SOCKET every call does nothing: the same binary runs anywhere.
 */
#ifndef AIN_RUNTIME_SDNOTIFY_H
#define AIN_RUNTIME_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 if sent, 0 if there is no
 * manager to tell, -1 if sending failed (the caller logs; never fatal). Does not block. */
int ain_sd_notify(const char *state);

/* How often to send WATCHDOG=1, in ms: half of $WATCHDOG_USEC when it is set for this process
 * ($WATCHDOG_PID unset or ours), else 0 (no watchdog). */
int64_t ain_sd_watchdog_ms(void);

int ain_sdnotify_test(bool verbose);

#endif
