/* msgtype.h: the message type table (declared in proto/msgtypes.def).
 *
 * A message type is a numeric id with a name, the service that answers it
 * and flags. Nothing here touches sockets; the broker, the actor skeleton
 * and the edge all validate ids against this one table.
 */
#ifndef AIN_PROTO_MSGTYPE_H
#define AIN_PROTO_MSGTYPE_H

#include <stdbool.h>
#include <stdint.h>

enum {
    AIN_MSGF_IDEMPOTENT = 1 << 0, /* safe to execute twice: may be re-dispatched once */
    AIN_MSGF_EVENT = 1 << 1,      /* a bus event, never a request */
    AIN_MSGF_OPERATOR = 1 << 2,   /* operators only: with CURVE, the broker takes it only from
                                     an admin key (broker/README.md) */
};

typedef enum {
#define AIN_MSG(ID, NAME, SERVICE, FLAGS, SUMMARY) AIN_MSG_##NAME = ID,
#include "proto/msgtypes.def"
#undef AIN_MSG
} ain_msg_id_t;

typedef struct {
    uint16_t id;
    const char *name;    /* "PING" */
    const char *service; /* "*", "bus" or a service name */
    unsigned flags;
    const char *summary;
} ain_msgtype_t;

/* The row for a type id, or NULL if the id is unknown. Borrowed, static. */
const ain_msgtype_t *ain_msgtype_lookup(unsigned id);

/* The row whose name equals `name` (case-sensitive), or NULL. */
const ain_msgtype_t *ain_msgtype_by_name(const char *name);

/* True if `service` answers requests of this type: the type is not an
 * event, and its service is "*" or exactly `service`. */
bool ain_msgtype_served_by(const ain_msgtype_t *type, const char *service);

/* Calls fn for every row, in id order. */
void ain_msgtype_each(void (*fn)(const ain_msgtype_t *type, void *arg), void *arg);

int ain_msgtype_test(bool verbose);

#endif
