/* topic.h: event bus topics.
 *
 * A bus message is [topic][envelope]. Subscriptions match topic prefixes,
 * so every topic ends with '/': "u/42/" cannot match a subscriber of
 * "u/4". Families:
 *   u/<user>/          events for one user's streams (USER_EVENT)
 *   m/<host>/<role>/   a process's metrics (METRICS_REPORT)
 *   h/                 the broker's heartbeat on the bus (BUS_BEAT)
 * A new family gets its prefix here, nowhere else.
 */
#ifndef AIN_PROTO_TOPIC_H
#define AIN_PROTO_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AIN_TOPIC_USER    "u/"
#define AIN_TOPIC_METRICS "m/"
#define AIN_TOPIC_BEAT    "h/"
#define AIN_TOPIC_MAX     128

/* Writes "u/<user>/" with a NUL into buf. Returns its length, or -1 if
 * `size` is too small. */
int ain_topic_user(char *buf, size_t size, uint64_t user);

/* Writes "m/<host>/<role>/". Returns its length, or -1 if it does not fit
 * or host/role contain '/'. */
int ain_topic_metrics(char *buf, size_t size, const char *host, const char *role);

/* Reads the user id from a "u/<user>/" topic (not NUL-terminated).
 * Returns 0, or -1 if it is not one. */
int ain_topic_parse_user(const void *topic, size_t len, uint64_t *user);

int ain_topic_test(bool verbose);

#endif
