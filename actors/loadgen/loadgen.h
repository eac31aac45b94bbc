/* loadgen.h: the load-generating actor (service "loadgen"), for benchmarks
 * only. LOADGEN_RUN {users, first_user, rate, seconds, mode} publishes, for
 * each user, `rate` events per second for `seconds`, spread evenly, each a
 * JSON object {"type":"bench","ts":<CLOCK_REALTIME us>,...}, and answers
 * when done with what was sent and what was not. Mode "events" asks the
 * events actor (EVENT_PUBLISH_BATCH per tick: the real path, Redis log
 * then bus), "events1" the same with one EVENT_PUBLISH per event; mode
 * "bus" publishes USER_EVENT on the bus itself (no log, no resume). Not in
 * AINBOX_ACTORS by default. See README.md. */
#ifndef AIN_ACTORS_LOADGEN_H
#define AIN_ACTORS_LOADGEN_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_loadgen_actor;

#endif
