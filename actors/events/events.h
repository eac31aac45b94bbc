/* events.h: the events actor (service "events"): the one writer of user
 * events. EVENT_PUBLISH {data: JSON object text with a "type"} for the
 * envelope's user gets an id and goes out on the bus under u/<user>/,
 * where every edge holding that user's streams picks it up. (The
 * persistent per-user log that makes SSE resume possible arrives with the
 * edge issue.) */
#ifndef AIN_ACTORS_EVENTS_H
#define AIN_ACTORS_EVENTS_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_events_actor;

#endif
