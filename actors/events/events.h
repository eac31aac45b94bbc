/* events.h: the events actor (service "events"): the one writer of user
 * events. EVENT_PUBLISH {data: JSON object text with a "type"} for the
 * envelope's user is appended to the user's log (a capped Redis stream,
 * whose entry id becomes the event's id) and then goes out on the bus under
 * u/<user>/, where every edge holding that user's streams picks it up.
 * EVENT_PUBLISH_BATCH {events: [{user, data}]} (envelope user 0: trusted
 * services) does the same for many users' events with one Redis call.
 * EVENT_REPLAY {after} answers what followed an id, for SSE resume. See
 * README.md. */
#ifndef AIN_ACTORS_EVENTS_H
#define AIN_ACTORS_EVENTS_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_events_actor;

#endif
