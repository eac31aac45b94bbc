/* ratelimit.h: the rate-limit actor (service "ratelimit"): provider quotas
 * and the user API limit, exact across every process sharing one Redis.
 *
 * RATE_CHECK decides (GCRA rates and expiring leases, in one Lua script per
 * batch of decisions); RATE_RELEASE gives a lease back; RATE_USAGE and
 * RATE_RESET are the operations; RATE_POLICIES lists what is in force.
 * See actors/ratelimit/README.md.
 */
#ifndef AIN_ACTORS_RATELIMIT_H
#define AIN_ACTORS_RATELIMIT_H

#include "runtime/actor.h"

extern const ain_actor_def_t ain_ratelimit_actor;

#endif
