/* bus.h: publishing to and subscribing from the event bus.
 *
 * The broker runs the bus as an XSUB/XPUB pair (broker/README.md):
 * publishers connect a PUB to its bus-in endpoint, subscribers a SUB to its
 * bus-out endpoint, and subscriptions travel upstream, so a host only
 * receives topics somebody there subscribed to. A bus message is two
 * frames, [topic][envelope], with an event type (proto/msgtypes.def) in the
 * envelope.
 *
 * The bus is fire-and-forget: a publisher whose socket is full drops the
 * event and counts it (never blocks an actor); what must survive loss is
 * kept elsewhere (the user event log, later) and replayed from there.
 */
#ifndef AIN_RUNTIME_BUS_H
#define AIN_RUNTIME_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "proto/envelope.h"
#include "runtime/proc.h"

/* The high-water mark of every pipe subscriptions travel through (bus.c says why). */
#define AIN_BUS_SUBS_HWM 1000000

typedef struct _ain_bus_pub_t ain_bus_pub_t;
typedef struct _ain_bus_sub_t ain_bus_sub_t;

/* A received bus message; env.body points into `frame`. */
typedef struct {
    zmq_msg_t topic;
    zmq_msg_t frame;
    ain_envelope_t env;
} ain_bus_msg_t;

void ain_bus_msg_close(ain_bus_msg_t *msg);

/* A publisher connected to the process's bus-in endpoint. */
ain_bus_pub_t *ain_bus_pub_new(const ain_proc_t *proc);
void ain_bus_pub_destroy(ain_bus_pub_t **self_p);

/* Publishes `env` under `topic` (proto/topic.h). Returns 0, or -1 if it
 * was dropped (socket full or not connected yet): counted, never blocks. */
int ain_bus_publish(ain_bus_pub_t *self, const char *topic, const ain_envelope_t *env);

uint64_t ain_bus_pub_sent(const ain_bus_pub_t *self);
uint64_t ain_bus_pub_dropped(const ain_bus_pub_t *self);

/* A subscriber connected to the process's bus-out endpoint; subscribed to
 * nothing until ain_bus_subscribe. */
ain_bus_sub_t *ain_bus_sub_new(const ain_proc_t *proc);
void ain_bus_sub_destroy(ain_bus_sub_t **self_p);
void *ain_bus_sub_socket(const ain_bus_sub_t *self);

/* Adds or removes a topic prefix. Returns 0 or -1. */
int ain_bus_subscribe(ain_bus_sub_t *self, const char *prefix);
int ain_bus_unsubscribe(ain_bus_sub_t *self, const char *prefix);

/* Reads one message without blocking. Returns 1 with `msg` filled (close
 * it), 0 if a malformed one was dropped (counted), -1 if none waits. */
int ain_bus_recv(ain_bus_sub_t *self, ain_bus_msg_t *msg);

uint64_t ain_bus_sub_invalid(const ain_bus_sub_t *self);

#endif
